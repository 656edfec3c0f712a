"""What every accepted value must satisfy, checked at the edge so nothing fails at send time.

- Text that can end up in a message has no lone surrogates (they cannot be encoded as UTF-8,
  so the email and the SMS would die on UnicodeEncodeError) and no control characters other than
  newline and tab (NUL breaks PostgreSQL, the rest breaks mail headers and SMS), and a bounded length.
  A `Line` (a name, a title) has no newline or tab either.
- Email addresses pass email-validator; phone numbers pass phonenumbers and are stored in E.164.
- Any decoded JSON body is bounded in depth, and its strings carry no NUL or lone surrogate,
  whatever field they are in (PostgreSQL's jsonb refuses both).
- Ids are integers a database column can hold.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from service.errors import InvalidInput, field_path, invalid_input

Model = TypeVar("Model", bound=BaseModel)

MAX_ID = 2**63 - 1  # BIGINT on both backends
MAX_JSON_DEPTH = 32
MAX_TEXT = 5000
MAX_LINE = 300
_ALLOWED_CONTROLS = frozenset("\n\t")


def text_problem(value: str, *, multiline: bool = True) -> str | None:
    """Why `value` cannot be sent as message text, or None when it can."""
    if value.isprintable():  # no Cc, Cs, Zl or Zp character: the usual case, checked in C
        return None
    for char in value:
        category = unicodedata.category(char)
        if category == "Cs":
            return f"contains a lone surrogate (U+{ord(char):04X}); send valid UTF-8 text"
        if category == "Cc" and not (multiline and char in _ALLOWED_CONTROLS):
            allowed = " (only newline and tab are allowed)" if multiline else ""
            return f"contains the control character U+{ord(char):04X}{allowed}"
        if not multiline and category in ("Zl", "Zp"):
            return f"must be one line (contains U+{ord(char):04X})"
    return None


def storable_problem(value: str) -> str | None:
    """Why a string cannot be stored at all (any field of any body), or None.

    Every string of every body passes here, so the usual case is decided in C: no NUL, and
    either plain ASCII or text that encodes as UTF-8 (which a lone surrogate does not)."""
    nul = value.find("\0")
    if nul < 0 and value.isascii():
        return None
    try:
        value.encode("utf-8")
        surrogate = -1
    except UnicodeEncodeError as exc:
        surrogate = exc.start
    if nul < 0 and surrogate < 0:
        return None
    if surrogate < 0 or 0 <= nul < surrogate:
        return "contains a NUL character (U+0000)"
    return f"contains a lone surrogate (U+{ord(value[surrogate]):04X}); send valid UTF-8 text"


def _message_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise PydanticCustomError("text_invalid", problem)
    return value


def _message_line(value: str) -> str:
    problem = text_problem(value, multiline=False)
    if problem:
        raise PydanticCustomError("text_invalid", problem)
    return value


def normalise_phone(value: str) -> str:
    """E.164; numbers without a leading + are read as Japanese national numbers."""
    return _valid_japanese_number(value) or _phone_number_checked_in_full(value)


# A Japanese number as directories write them, `+81 90-1234-5678` or `090-1234-5678`: digits with
# a single space or hyphen between some of them. phonenumbers reads one the same without those
# separators, and reads `+81` then a digit other than 0 (or a trunk 0, then a digit other than 0,
# not Japan's international prefix 010) as country code 81 and the digits after it: no country
# code starts with 8, and Japan's national prefixes for parsing all start with 0. Only a number
# phonenumbers finds valid is taken here; tests/test_text_rules.py holds both readings side by side.
_GROUPED_DIGITS = re.compile(r"\+?[0-9](?:[ -]?[0-9])*\Z")
_JAPANESE = re.compile(r"(?:\+81|0(?!10))([1-9][0-9]*)\Z")


def _valid_japanese_number(value: str) -> str | None:
    """The E.164 form of a valid Japanese number in one of the usual shapes, as the full check
    would give it, at a third of its cost; None for anything else, which the full check decides."""
    if _GROUPED_DIGITS.match(value) is None:
        return None
    japanese = _JAPANESE.match(value.replace(" ", "").replace("-", ""))
    if japanese is None:
        return None
    national = japanese.group(1)
    number = phonenumbers.PhoneNumber(country_code=81, national_number=int(national))
    return f"+81{national}" if phonenumbers.is_valid_number(number) else None


def _phone_number_checked_in_full(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None if value.strip().startswith("+") else "JP")
    except phonenumbers.NumberParseException:
        raise PydanticCustomError(
            "phone_invalid", "not a phone number (use +81 90-1234-5678 or 090-1234-5678)"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise PydanticCustomError("phone_invalid", "not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: str) -> str:
    """email-validator's normalised form. Its domain checks are most of its cost and a directory
    repeats domains, so a plain ASCII local part is checked here and the domain's verdict reused."""
    local, at, domain = value.rpartition("@")
    if at and len(value) <= 254 and len(local) <= 64 and _DOT_ATOM.match(local):
        normalised_domain = _normalised_domain(domain)
        if normalised_domain is not None:
            return f"{local}@{normalised_domain}"
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise PydanticCustomError(
            "email_invalid", "not a valid email address: {reason}", {"reason": str(exc)}
        ) from None


# RFC 5322 dot-atom of ASCII atext: a local part email-validator keeps exactly as written.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


# An ASCII letter-digit-hyphen DNS label, not Punycode, not another two-letter-two-dash "R-LDH" label.
_PLAIN_LABEL = re.compile(r"(?!..--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_DOMAIN_MAX = 253


def _normalised_domain(domain: str) -> str | None:
    """The domain as email-validator normalises it, or None where it would refuse it.

    A directory gives most partners a domain of their own (`tokai-logi.co.jp`), and the checks
    that cost are per character, so the verdict is that of the domain's parent with a plain first
    label: a plain ASCII label changes nothing email-validator decides but its case and the length.
    """
    first, dot, parent = domain.partition(".")
    if dot and len(domain) <= _DOMAIN_MAX and _PLAIN_LABEL.match(first):
        normalised_parent = _normalised_domain_of(f"a.{parent}")
        return None if normalised_parent is None else first.lower() + normalised_parent[1:]
    return _normalised_domain_of(domain)


@lru_cache(maxsize=4096)
def _normalised_domain_of(domain: str) -> str | None:
    try:
        return validate_email(f"postmaster@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


# Multi-line message text (a summary, a body) and one-line text (a name, a title, a subject).
MessageText = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_message_text)]


def normalise_webhook_url(value: str) -> str:
    """A partner system's endpoint: http(s) with a host and no password in it (the channel itself
    refuses plain http unless [webhook] allow_http is on)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PydanticCustomError("webhook_url_invalid", "not an https:// URL")
    if parts.username or parts.password:
        raise PydanticCustomError("webhook_url_invalid", "a webhook URL may not carry a password")
    return value.strip()


Line = Annotated[str, StringConstraints(max_length=MAX_LINE), AfterValidator(_message_line)]
Phone = Annotated[str, StringConstraints(max_length=64), AfterValidator(normalise_phone)]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalise_email)]
WebhookUrl = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalise_webhook_url)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _within_our_era(value: datetime) -> datetime:
    """Times are stored as UNIX seconds and shown in UTC and local zones: keep them where both exist."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not 1970 <= utc.year <= 9998:
        raise PydanticCustomError("time_out_of_range", "must lie between 1970 and 9998 (UTC)")
    return value


# A moment with its time zone (`2026-11-25T16:00:00+09:00`), within the years every part can show.
Moment = Annotated[AwareDatetime, AfterValidator(_within_our_era)]


def check_json(document: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Bound the nesting of a decoded JSON document and refuse strings nothing can store.

    Iterative, so a hostile document cannot exhaust the stack here either.
    """
    pending: list[tuple[Any, tuple[Any, ...]]] = [(document, ())]
    while pending:
        value, loc = pending.pop()
        if len(loc) > max_depth:
            raise InvalidInput(f"the body nests deeper than {max_depth} levels", field_path(loc), code="too_deep")
        if isinstance(value, dict):
            for key, item in value.items():
                problem = storable_problem(key)
                if problem:
                    raise InvalidInput(f"a key {problem}", field_path(loc) or None)
                pending.append((item, (*loc, key)))
        elif isinstance(value, list):
            pending.extend((item, (*loc, index)) for index, item in enumerate(value))
        elif isinstance(value, str):
            problem = storable_problem(value)
            if problem:
                path = field_path(loc)
                raise InvalidInput(f"{path}: {problem}" if path else problem, path or None)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput("numbers must be finite", field_path(loc) or None)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
            raise InvalidInput(f"integers must lie within ±{MAX_ID}", field_path(loc) or None)


def parse_model(model: type[Model], payload: Any, prefix: str = "") -> Model:
    """Validate a decoded payload; InvalidInput names the first field at fault."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_input(exc, prefix) from exc
