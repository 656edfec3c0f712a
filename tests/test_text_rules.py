"""Property: any text Herald accepts can be rendered and encoded, by email and SMS, in both languages.

Text that could not be (a lone surrogate, a control character) is refused when accepted, never
discovered by a delivery that dies on UnicodeEncodeError after its last retry.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import unicodedata
from typing import Any

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from channels.email import build_email
from service import compose
from service.errors import InvalidInput
from service.notices import NoticeFields
from service.segments import sms_segments
from service.store.models import Delivery, Notice, Recipient
from service.validation import normalise_email, normalise_phone, parse_model, storable_problem, text_problem
from tests.helpers import make_settings

SETTINGS = make_settings("sqlite+aiosqlite:///unused.db")
notice_ids = itertools.count(1)

# Anything: every plane, lone surrogates, controls, line and paragraph separators, Japanese.
ANY_CHAR = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.sampled_from("\x00\t\n\r\x1b\x7f\x85\u2028\u2029\ufeff\u200d"),
    st.sampled_from("障害復旧のお知らせ、ｶﾀｶﾅ①"),
)
# Text a person could mean: any printable character of any script, newlines and tabs.
MEANT_CHAR = st.one_of(
    st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]),
    st.sampled_from("障害復旧のお知らせ、ｶﾀｶﾅ①\n\t"),
)
# Half the examples are text a person could mean (mostly accepted), half anything at all.
TEXT = st.one_of(st.text(alphabet=MEANT_CHAR, min_size=1, max_size=60), st.text(alphabet=ANY_CHAR, max_size=60))


def delivery(channel: str, lang: str, notice_id: int) -> Delivery:
    return Delivery(
        id=notice_id,
        notice_id=notice_id,
        incident_id=None,
        partner_id="minato-shoji",
        contact_id=1,
        tier=1,
        channel=channel,
        address="ichiro.suzuki@example.jp" if channel == "email" else "+819012345678",
        language=lang,
        priority=0,
        status="sending",
        attempts=1,
        next_attempt_at=0.0,
        message_id=f"<herald.n{notice_id}.c1.{channel}.0@herald.example.com>",
        escalation_step=0,
        created_at=0.0,
        updated_at=0.0,
        recipient=Recipient("鈴木 一郎", "みなと商事", 1),
    )


def send_everywhere(kind: str, fields: NoticeFields) -> None:
    """Render the notice for email and SMS in both languages and encode what would go on the wire."""
    notice = Notice(
        id=next(notice_ids),
        incident_id=None,
        version=1,
        kind=kind,
        state="published",
        severity="critical",
        status="investigating",
        fields=fields.model_dump(mode="json", exclude_none=True),
        audience={},
    )
    for lang in ("ja", "en"):
        mail, _ = compose.outbound(SETTINGS, delivery("email", lang, notice.id), notice, None)
        wire = build_email(mail, "Herald <incident@herald.example.com>")
        wire.decode("ascii")  # 7-bit on the wire
        parsed = email.message_from_bytes(wire, policy=email.policy.default)
        assert parsed["Subject"] and parsed.get_body(("plain",)).get_content()
        sms, _ = compose.outbound(SETTINGS, delivery("sms", lang, notice.id), notice, None)
        sms.text.encode("utf-8")  # what the Twilio client posts
        assert sms_segments(sms.text).segments >= 1


def accepted(payload: dict[str, Any]) -> NoticeFields | None:
    try:
        return parse_model(NoticeFields, payload)
    except InvalidInput:
        return None


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(subject=TEXT, body=TEXT, name=TEXT)
def test_an_accepted_custom_notice_can_be_sent_by_email_and_sms_in_both_languages(
    subject: str, body: str, name: str
) -> None:
    fields = accepted({"subject": subject, "body": body, "responsible": {"name": name}})
    if fields is None:
        return
    send_everywhere("custom", fields)


@PROPERTY
@given(title=TEXT, summary=TEXT, impact=TEXT, status=TEXT, english=TEXT)
def test_an_accepted_initial_notice_can_be_sent_by_email_and_sms_in_both_languages(
    title: str, summary: str, impact: str, status: str, english: str
) -> None:
    fields = accepted(
        {
            "title": {"ja": title, "en": english},
            "summary": summary,
            "impact": {"ja": impact, "en": english},
            "current_status": status,
            "outlook": english,
            "next_update_at": "2026-11-25T16:00:00+09:00",
            "responsible": {"name": title, "email": "incident-desk@example.com"},
        }
    )
    if fields is None:
        return
    send_everywhere("initial", fields)


@PROPERTY
@given(text=TEXT)
def test_text_that_cannot_be_encoded_is_refused_and_naming_the_field(text: str) -> None:
    broken = any("\ud800" <= c <= "\udfff" for c in text)
    try:
        parse_model(NoticeFields, {"body": text})
    except InvalidInput as exc:
        assert exc.field == "body"
        return
    assert not broken, "a lone surrogate was accepted"
    text.encode("utf-8")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("ok\n\tstill ok", None),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("NUL \x00", "control character U+0000"),
        ("carriage\rreturn", "control character U+000D"),
        ("escape \x1b[31m", "control character U+001B"),
    ],
)
def test_the_text_rule_names_what_is_wrong(text: str, problem: str | None) -> None:
    found = text_problem(text)
    assert (found is None) if problem is None else (problem in (found or ""))


def _text_problem_char_by_char(text: str, multiline: bool) -> bool:
    """The rule as the module's docstring states it, one character at a time."""
    refused = {"Cs", "Cc"} | (set() if multiline else {"Zl", "Zp"})
    allowed = "\n\t" if multiline else ""
    return any(unicodedata.category(c) in refused and c not in allowed for c in text)


@given(st.text(ANY_CHAR, max_size=40), st.booleans())
def test_the_text_rule_refuses_exactly_the_characters_it_names(text: str, multiline: bool) -> None:
    assert (text_problem(text, multiline=multiline) is not None) == _text_problem_char_by_char(text, multiline)


DOMAIN_CHAR = st.sampled_from("abcXYZ019-.")
LABEL = st.text(DOMAIN_CHAR, min_size=1, max_size=8)
TRICKY_DOMAINS = [
    "partner1.example.jp",
    "Tokai-Logi.CO.JP",
    "a.b",
    "mail.localhost",
    "x.test",
    "host.home.arpa",
    "ab--cd.example.com",
    "xn--bcher-kva.example",
    "-lead.example.com",
    "trail-.example.com",
    "x.123",
    "x..example.com",
    "nodot",
    f"{'a' * 63}.example.com",
    f"{'a' * 64}.example.com",
    ".".join(["abcdefghi"] * 25) + ".jp",  # 253 characters
    ".".join(["abcdefghi"] * 25) + ".com",  # 254
]


def _email_validator_verdict(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def _herald_verdict(address: str) -> str | None:
    try:
        return normalise_email(address)
    except PydanticCustomError:
        return None


@pytest.mark.parametrize("domain", TRICKY_DOMAINS)
def test_an_email_domain_is_judged_as_email_validator_judges_it(domain: str) -> None:
    assert _herald_verdict(f"ops@{domain}") == _email_validator_verdict(f"ops@{domain}")


@given(st.lists(LABEL, min_size=1, max_size=4).map(".".join))
def test_any_ascii_email_domain_is_judged_as_email_validator_judges_it(domain: str) -> None:
    assert _herald_verdict(f"ops@{domain}") == _email_validator_verdict(f"ops@{domain}")


def _phonenumbers_verdict(number: str) -> str | None:
    """phonenumbers' own reading, as Herald reads phone numbers (a national number is Japanese)."""
    try:
        parsed = phonenumbers.parse(number, None if number.strip().startswith("+") else "JP")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _herald_phone_verdict(number: str) -> str | None:
    try:
        return normalise_phone(number)
    except PydanticCustomError:
        return None


TRICKY_PHONES = [
    "+81 90-1234-5678",
    "090-1234-5678",
    "09012345678",
    "+819012345678",
    "+81-90-1234-5678",
    "+81 090-1234-5678",  # a trunk 0 after the country code
    "010-1234-5678",  # Japan's international prefix
    "01-0123-4567",  # 010 once the hyphen is gone
    "0120-123-456",
    "0570-012-345",
    "050-1234-5678",
    "03-1234-5678",
    "011-234-5678",
    "00-1234-5678",
    "0081-90-1234-5678",
    "+8 190-1234-5678",
    "+1 212-555-0100",
    " 090-1234-5678",
    "090-1234-5678 ",
    "090--1234-5678",
    "090 1234 5678",
    "+81 12",
    "+81 0",
    "0",
    "+81",
]


@pytest.mark.parametrize("number", TRICKY_PHONES)
def test_a_phone_number_is_judged_as_phonenumbers_judges_it(number: str) -> None:
    assert _herald_phone_verdict(number) == _phonenumbers_verdict(number)


def test_every_japanese_number_shape_is_judged_as_phonenumbers_judges_it() -> None:
    for national in (f"{prefix:03d}{rest}" for prefix in range(1000) for rest in ("1234567", "12345678", "123456789")):
        shapes = (national, f"{national[:3]}-{national[3:7]}-{national[7:]}", f"+81 {national[1:]}", f"+81{national}")
        for number in shapes:
            assert _herald_phone_verdict(number) == _phonenumbers_verdict(number), number


@given(st.text(alphabet="+0123456789 -", min_size=1, max_size=20))
def test_any_phone_number_of_digits_is_judged_as_phonenumbers_judges_it(number: str) -> None:
    assert _herald_phone_verdict(number) == _phonenumbers_verdict(number)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain ascii", None),
        ("受発注API 😀", None),
        ("a\0b\ud800", "contains a NUL character (U+0000)"),
        ("日本\udc01語\0", "contains a lone surrogate (U+DC01); send valid UTF-8 text"),
        ("日本語\0", "contains a NUL character (U+0000)"),
    ],
)
def test_a_string_that_cannot_be_stored_is_named_by_its_first_fault(value: str, problem: str | None) -> None:
    assert storable_problem(value) == problem
