"""Partners ask questions by replying to a notice email; operators see them, answer in the partner's
language, and the answer reaches the asker by email. Real SMTP server; replies built with Python's
email package (ISO-2022-JP and UTF-8)."""

from __future__ import annotations

from email.header import Header
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from sqlalchemy import select

from service import appkeys
from service.ingest.mail import parse_mail, strip_quoted
from service.store.tables import deliveries, inbound_mail, questions
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.mail import ON_CALL, REPLY_ADDRESS, answer_mail, mail_to, publish_to, question_settings
from tests.helpers.wired import start

SATO = "hanako.sato@tokai-logistics.example.jp"  # tier 1 of 東海ロジスティクス (ja)
WONG = "james.wong@pacificfreight.example.com"  # tier 1 of Pacific Freight (en)
SUZUKI = "ichiro.suzuki@minato-shoji.example.jp"  # tier 1 of みなと商事, another partner
JA_QUESTION = "月末の締め処理（バッチ）への影響はありますか？\n影響がある場合、いつ頃わかりますか。"


@pytest.fixture
async def herald(aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake) -> Any:
    return await start(aiohttp_client, question_settings(sqlite_url, smtp_sink, twilio_fake))


def reply_to(notice: EmailMessage, sender: str, text: str, charset: str = "utf-8", **headers: str) -> bytes:
    """A partner's reply as their mail client writes it: the answer on top, the notice quoted below."""
    reply = EmailMessage()
    subject = f"Re: {notice['Subject']}"
    if charset == "iso-2022-jp":  # as Japanese mail clients write it: JIS words, 7-bit JIS body
        name, _, address = sender.rpartition(" ")
        sender = f"{Header(name, charset).encode(linesep=' ')} {address}" if name else sender
        subject = Header(subject, charset).encode(linesep=" ")
    reply["From"] = sender
    reply["To"] = headers.pop("to", str(notice["Reply-To"]))
    reply["Subject"] = subject
    reply["Message-ID"] = make_msgid(domain="partner.example")
    for header, value in headers.items():
        reply[header.replace("_", "-")] = value
    reply.set_content(text, charset=charset, cte="7bit" if charset == "iso-2022-jp" else None)
    return reply.as_bytes()


def quoted(notice: EmailMessage, attribution: str) -> str:
    body = notice.get_body(("plain",)).get_content()
    return attribution + "\n" + "\n".join(f"> {line}" for line in body.splitlines()[:12])


async def pipe(client: Any, raw: bytes) -> Any:
    return await client.post(
        "/v1/inbound/email", data=raw, headers={**auth("ingest"), "Content-Type": "message/rfc822"}
    )


async def incident_questions(client: Any, incident_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/incidents/{incident_id}/questions", headers=auth("operator"))
    assert response.status == 200
    return (await response.json())["items"]


async def partner_rows(client: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        return list((await conn.execute(select(deliveries).where(deliveries.c.purpose == "partner"))).mappings())


async def told(client: Any, smtp: SmtpSink, partner: str, address: str) -> tuple[int, EmailMessage]:
    await publish_to(client, partner, [1])
    async with client.app[appkeys.STORE].read() as conn:
        incident_id = (await conn.execute(select(deliveries.c.incident_id).limit(1))).scalar_one()
    return incident_id, await mail_to(smtp, address)


async def test_a_japanese_iso_2022_jp_reply_becomes_a_question_without_the_quoted_notice(
    herald: Any, smtp_sink: SmtpSink
) -> None:
    incident_id, notice = await told(herald, smtp_sink, "tokai-logistics", SATO)
    assert str(notice["Reply-To"]).startswith("reply+q") and str(notice["Reply-To"]).endswith("@herald.example.com")
    assert "本メールにご返信いただくか" in notice.get_body(("plain",)).get_content()  # the notice says it can be asked
    attribution = "2026年11月30日(月) 15:02 株式会社サンプル <incident@herald.example.com>:"
    raw = reply_to(notice, f"佐藤 花子 <{SATO}>", f"{JA_QUESTION}\n\n{quoted(notice, attribution)}", "iso-2022-jp")
    assert b"iso-2022-jp" in raw.lower() and b"\x1b$B" in raw  # really JIS-encoded on the wire

    response = await pipe(herald, raw)
    assert response.status == 202, await response.text()
    assert (await response.json())["outcome"] == "question"

    [question] = await incident_questions(herald, incident_id)
    assert question["body"] == JA_QUESTION
    assert (question["partner_id"], question["source"], question["language"]) == ("tokai-logistics", "email", "ja")
    assert question["contact_name"] == "佐藤 花子" and question["state"] == "open"


async def test_a_utf8_reply_is_matched_by_in_reply_to_when_the_token_is_gone(herald: Any, smtp_sink: SmtpSink) -> None:
    incident_id, notice = await told(herald, smtp_sink, "pacific-freight", WONG)
    text = "Will the EDI batch at 23:00 PT run as usual? — James"
    attribution = "On Mon, 30 Nov 2026 at 15:02, Sample Corporation <incident@herald.example.com>\nwrote:"
    raw = reply_to(
        notice, f"James Wong <{WONG}>", f"{text}\n\n{quoted(notice, attribution)}", to="incident-desk@example.com",
        In_Reply_To=str(notice["Message-ID"]),
    )  # fmt: skip
    response = await pipe(herald, raw)
    assert response.status == 202 and (await response.json())["outcome"] == "question"
    [question] = await incident_questions(herald, incident_id)
    assert question["body"] == text and question["language"] == "en"


async def test_a_forged_or_another_partners_token_is_refused_and_unmatched_mail_is_kept(
    herald: Any, smtp_sink: SmtpSink
) -> None:
    incident_id, notice = await told(herald, smtp_sink, "tokai-logistics", SATO)
    token_address = str(notice["Reply-To"])
    forged = token_address.replace("-", "-x", 1)
    refused = await pipe(herald, reply_to(notice, SATO, "forged?", to=forged))
    assert refused.status == 403 and (await refused.json())["error"] == "refused"

    other_partner = await pipe(herald, reply_to(notice, SUZUKI, "何が起きていますか？", to=token_address))
    assert other_partner.status == 403 and "another partner" in (await other_partner.json())["detail"]

    stray = reply_to(notice, "someone@unknown.example", "Hello, who is this?", to="reply@herald.example.com")
    unmatched = await pipe(herald, stray)
    assert unmatched.status == 202 and (await unmatched.json())["outcome"] == "unmatched"

    assert await incident_questions(herald, incident_id) == []
    listed = await herald.get("/v1/inbound/email?outcome=unmatched", headers=auth("operator"))
    [item] = (await listed.json())["items"]
    assert item["sender"] == "someone@unknown.example" and item["text"] == "Hello, who is this?"
    async with herald.app[appkeys.STORE].read() as conn:
        kept = [dict(r) for r in (await conn.execute(select(inbound_mail).order_by(inbound_mail.c.id))).mappings()]
    assert [m["outcome"] for m in kept] == ["refused", "refused", "unmatched"]
    assert all(m["raw"] for m in kept)  # never dropped: the whole message is kept


async def test_mail_that_is_no_message_is_a_clear_4xx(herald: Any) -> None:
    response = await pipe(herald, b"not a mail at all")
    assert response.status == 422 and (await response.json())["error"] == "not_a_mail"
    wrong_type = await herald.post("/v1/inbound/email", json={}, headers=auth("ingest"))
    assert wrong_type.status == 415


async def test_the_answer_reaches_the_asker_in_their_language_and_can_be_published_in_the_next_notice(
    herald: Any, smtp_sink: SmtpSink
) -> None:
    incident_id, notice = await told(herald, smtp_sink, "tokai-logistics", SATO)
    assert (await pipe(herald, reply_to(notice, SATO, JA_QUESTION, "iso-2022-jp"))).status == 202
    [question] = await incident_questions(herald, incident_id)

    english_only = await herald.post(
        f"/v1/questions/{question['id']}/answer", json={"answer": {"en": "No impact."}}, headers=auth("operator")
    )
    assert english_only.status == 422 and (await english_only.json())["field"] == "answer.ja"

    answer = {"ja": "月末バッチへの影響はございません。", "en": "The month-end batch is not affected."}
    as_asked = await herald.post(
        f"/v1/questions/{question['id']}/answer", json={"answer": answer, "publish": True}, headers=auth("operator")
    )  # the question as asked is Japanese only, but every partner will read the Q&A
    assert as_asked.status == 422 and (await as_asked.json())["field"] == "published_question.en"
    published_question = {"ja": "月末バッチへの影響はありますか？", "en": "Is the month-end batch affected?"}
    body = {"answer": answer, "publish": True, "published_question": published_question}
    response = await herald.post(f"/v1/questions/{question['id']}/answer", json=body, headers=auth("operator"))
    assert response.status == 202, await response.text()
    again = await herald.post(f"/v1/questions/{question['id']}/answer", json=body, headers=auth("operator"))
    assert again.status == 409

    mail = await answer_mail(smtp_sink)
    assert mail["To"].addresses[0].addr_spec == SATO
    text = mail.get_body(("plain",)).get_content()
    assert "月末バッチへの影響はございません。" in text and "月末の締め処理" in text
    assert str(mail["Reply-To"]) == str(notice["Reply-To"])  # a follow-up is matched like the first reply

    update = {
        "status": "identified",
        "notice": {"fields": {"current_status": {"ja": "原因を特定しました", "en": "We found the cause."}}},
    }
    posted = await herald.post(f"/v1/incidents/{incident_id}/updates", json=update, headers=auth("operator"))
    assert posted.status == 202
    report = await (await herald.get(f"/v1/incidents/{incident_id}/report", headers=auth("operator"))).json()
    latest = report["notices"][-1]
    assert "Q. 月末バッチへの影響はありますか？" in latest["rendered"]["ja"]["txt"]
    assert "A. The month-end batch is not affected." in latest["rendered"]["en"]["txt"]
    [entry] = report["questions"]
    assert entry["state"] == "answered" and entry["published_in_version"] == latest["version"]
    assert entry["body"] == JA_QUESTION and entry["answered_by"] == "operator"
    # The answer email is no partner delivery: the notice's figures do not count it.
    assert sum(report["totals"]["by_status"].values()) == report["totals"]["deliveries"]
    async with herald.app[appkeys.STORE].read() as conn:
        purposes = [r[0] for r in await conn.execute(select(deliveries.c.purpose))]
    assert purposes.count("answer") == 1 and report["totals"]["deliveries"] == purposes.count("partner")


async def test_an_unanswered_question_reminds_the_on_call_operators(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = question_settings(sqlite_url, smtp_sink, twilio_fake, remind_after_minutes=0.01, remind_every_minutes=0)
    herald = await start(aiohttp_client, settings)
    incident_id, notice = await told(herald, smtp_sink, "tokai-logistics", SATO)
    assert (await pipe(herald, reply_to(notice, SATO, JA_QUESTION, "iso-2022-jp"))).status == 202

    def reminders() -> list[Any]:
        return [m.message for m in smtp_sink.messages if "未回答のご質問" in str(m.message["Subject"])]

    [found] = await wait_until(reminders, timeout=30)
    assert found["To"].addresses[0].addr_spec == ON_CALL
    text = found.get_body(("plain",)).get_content()
    assert JA_QUESTION.splitlines()[0] in text and "佐藤 花子" in text and "/answer" in text
    async with herald.app[appkeys.STORE].read() as conn:
        [row] = [dict(r) for r in (await conn.execute(select(questions))).mappings()]
    assert row["reminders"] == 1 and row["remind_due_at"] is None  # remind once, as configured
    [listed] = await incident_questions(herald, incident_id)
    assert listed["reminders"] == 1

    # A message to our operators: listed as such, never counted as a delivery to partners.
    to_operators = await (await herald.get("/v1/deliveries?purpose=operator", headers=auth("admin"))).json()
    assert [(d["address"], d["tier"], d["purpose"]) for d in to_operators["items"]] == [(ON_CALL, 0, "operator")]
    summary = await (await herald.get(f"/v1/incidents/{incident_id}/summary", headers=auth("operator"))).json()
    assert "0" not in summary["by_tier"] and summary["total"] == len(await partner_rows(herald))
    report = await (await herald.get(f"/v1/incidents/{incident_id}/report", headers=auth("operator"))).json()
    assert [m["address"] for m in report["operator_messages"]] == [ON_CALL]


def test_quoted_text_is_stripped_in_the_forms_mail_clients_use() -> None:
    cases = {
        "Yes, please.\n\nOn Mon, 30 Nov 2026, Herald <a@b.example> wrote:\n> old": "Yes, please.",
        "はい。\n\n-----元のメッセージ-----\n差出人: Herald\n本文": "はい。",
        "OK\n\nFrom: Herald <a@b.example>\nSent: Monday\nSubject: x": "OK",
        "See below\n> quoted line\nmy inline answer\n-- \nJames": "See below\nmy inline answer",
        "了解です\n\n2026/11/30 15:02、Herald <a@b.example> のメッセージ:\n> 旧": "了解です",
    }
    for text, expected in cases.items():
        assert strip_quoted(text) == expected


def test_an_html_only_reply_is_read_as_text_without_its_blockquote() -> None:
    reply = EmailMessage()
    reply["From"] = SATO
    reply["To"] = REPLY_ADDRESS
    reply.set_content("<p>影響はありますか？</p><blockquote>引用された通知</blockquote>", subtype="html")
    mail = parse_mail(reply.as_bytes())
    assert mail.text == "影響はありますか？" and mail.language == "ja"
