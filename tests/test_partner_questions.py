"""A contact asks a question from its own partner page: the same question as from the
acknowledgement page or by email (listed for operators, in the evidence report, reminded to the
on-call operators, answered by email), and the contact reads its questions and our answers on the
page. The page also draws each incident's timeline as that partner lived it. Real SMTP server and
twilio client: the page link is the one the contact was mailed."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from typing import Any

from sqlalchemy import select

from service import appkeys
from service.notices import iso
from service.store.tables import deliveries, incidents, questions
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.mail import ON_CALL, answer_mail, question_settings
from tests.helpers.partner_page import PAYMENTS_OUTAGE, SATO, SUZUKI, english_contacts_email, mailed_page
from tests.helpers.wired import all_settled, post_sample, rows, start

QUESTION = "月末のバッチ処理（30日 23時）は予定どおり実行できますか？"
ANSWER = {
    "ja": "月末バッチへの影響はございません。予定どおり実行いただけます。",
    "en": "The month-end batch is not affected.",
}
SVG = "{http://www.w3.org/2000/svg}"


async def herald_taking_questions(
    aiohttp_client: Any, db_url: str, smtp: SmtpSink, twilio: TwilioFake, **q: Any
) -> Any:
    client = await start(aiohttp_client, question_settings(db_url, smtp, twilio, **q))
    await post_sample(client)  # the order API: 東海ロジスティクス and みなと商事 among others
    await post_sample(client, **PAYMENTS_OUTAGE)  # payments: みなと商事, not 東海ロジスティクス
    await wait_until(lambda: all_settled(client), timeout=30)
    return client


async def notice_of(client: Any, address: str, title: str) -> tuple[int, int]:
    """(incident id, notice id) of the notice about `title` mailed to `address`."""
    query = (
        select(deliveries.c.incident_id, deliveries.c.notice_id, incidents.c.title)
        .join(incidents, incidents.c.id == deliveries.c.incident_id)
        .where(deliveries.c.address == address)
    )
    async with client.app[appkeys.STORE].read() as conn:
        found = [(i, n) for i, n, titled in await conn.execute(query) if title in str(titled)]
    assert found, f"no notice about {title} to {address}"
    return found[0]


async def ask(client: Any, page: str, incident_id: int, notice_id: int, text: str) -> Any:
    form = {"incident": str(incident_id), "notice": str(notice_id), "question": text}
    return await client.post(f"{page}/questions", data=form, allow_redirects=False)


async def question_rows(client: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        return [dict(r) for r in (await conn.execute(select(questions).order_by(questions.c.id))).mappings()]


async def test_a_question_from_the_partner_page_is_listed_reported_and_reminded_like_every_question(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_taking_questions(
        aiohttp_client, db_url, smtp_sink, twilio_fake, remind_after_minutes=0.01, remind_every_minutes=0
    )
    page = await mailed_page(smtp_sink, SATO)
    incident_id, notice_id = await notice_of(client, SATO, "受発注API")

    asked = await ask(client, page, incident_id, notice_id, f"  {QUESTION}\n")
    assert asked.status == 303 and asked.headers["Location"] == f"{page}?done=asked"
    shown = await (await client.get(asked.headers["Location"])).text()
    assert "ご質問を受け付けました。" in shown and QUESTION in shown and "回答を準備しております。" in shown

    listed = await client.get(f"/v1/incidents/{incident_id}/questions", headers=auth("operator"))
    [question] = (await listed.json())["items"]
    assert (question["source"], question["partner_id"], question["body"], question["language"]) == (
        "partner_page",
        "tokai-logistics",
        QUESTION,
        "ja",
    )
    report = await (await client.get(f"/v1/incidents/{incident_id}/report", headers=auth("operator"))).json()
    [entry] = report["questions"]
    assert entry["source"] == "partner_page" and entry["contact_name"] == "佐藤 花子" and entry["notice_version"] == 1
    html_report = await client.get(f"/v1/incidents/{incident_id}/report?format=html", headers=auth("operator"))
    printable = await html_report.text()
    assert QUESTION in printable and "Partner page / 取引先ページ" in printable  # where it was asked, in words

    def reminder() -> Any:
        return next((m.message for m in smtp_sink.messages if m.message["To"].addresses[0].addr_spec == ON_CALL), None)

    reminded = await wait_until(reminder, timeout=30)
    assert "未回答のご質問" in str(reminded["Subject"]) and QUESTION in reminded.get_body(("plain",)).get_content()


async def test_the_operators_answer_reaches_the_asker_by_email_and_shows_on_its_page(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_taking_questions(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    page = await mailed_page(smtp_sink, SATO)
    incident_id, notice_id = await notice_of(client, SATO, "受発注API")
    assert (await ask(client, page, incident_id, notice_id, QUESTION)).status == 303
    [question] = await question_rows(client)

    answered = await client.post(
        f"/v1/questions/{question['id']}/answer", json={"answer": ANSWER}, headers=auth("operator")
    )
    assert answered.status == 202, await answered.text()

    mail = await answer_mail(smtp_sink)
    assert mail["To"].addresses[0].addr_spec == SATO
    assert ANSWER["ja"] in mail.get_body(("plain",)).get_content()
    html = await (await client.get(page)).text()
    assert (
        QUESTION in html and ANSWER["ja"] in html and "弊社からの回答" in html and "回答を準備しております" not in html
    )
    # Only the asker reads it on their page: another contact of another partner does not.
    assert QUESTION not in await (await client.get(await mailed_page(smtp_sink, SUZUKI))).text()


async def test_a_question_about_another_partners_notice_or_with_a_forged_or_expired_link_is_refused(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_taking_questions(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    page = await mailed_page(smtp_sink, SATO)
    incident_id, notice_id = await notice_of(client, SATO, "受発注API")
    payments_incident, payments_notice = await notice_of(client, SUZUKI, "決済サービス")  # みなと商事's only

    not_ours = await ask(client, page, payments_incident, payments_notice, QUESTION)
    assert not_ours.status == 404 and "この通知は貴社宛てに送信されていません。" in await not_ours.text()
    assert "決済サービスの停止" not in await not_ours.text()
    for nonsense in (0, 10**30):  # no notice, and a number no database column holds
        assert (await ask(client, page, incident_id, nonsense, QUESTION)).status == 404
    assert (await client.post(f"{page}/ack/{10**30}", allow_redirects=False)).status == 404

    empty = await ask(client, page, incident_id, notice_id, "   ")
    html = await empty.text()
    assert empty.status == 422 and "ご質問をご記入ください。" in html
    assert re.search(r'class="field-error">\s*<label for="question-\d+">', html)  # marked beside the field
    most = client.app[appkeys.SETTINGS].questions.max_length
    too_long = await ask(client, page, incident_id, notice_id, "あ" * (most + 1))
    assert too_long.status == 422 and f"ご質問が長すぎます（{most}文字まで）。" in await too_long.text()
    assert "あ" * (most + 1) in await too_long.text()  # what was typed is kept, to be shortened

    forged = await ask(client, page[:-2] + ("AA" if not page.endswith("AA") else "BB"), incident_id, notice_id, "x")
    assert forged.status == 403
    sato_id = (await rows(client, deliveries.c.address == SATO))[0]["contact_id"]
    expired_token = client.app[appkeys.PAGE_SIGNER].token(sato_id, time.time() - 1)
    expired = await ask(client, f"/p/{expired_token}", incident_id, notice_id, QUESTION)
    assert expired.status == 410 and "有効期限" in await expired.text()
    assert await question_rows(client) == []


async def test_an_english_contact_is_refused_in_english_beside_the_field(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_taking_questions(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    english = await english_contacts_email(client)
    page = await mailed_page(smtp_sink, english["address"])
    empty = await ask(client, page, english["incident_id"], english["notice_id"], "")
    assert empty.status == 422 and "Please write your question." in await empty.text()
    asked = await ask(client, page, english["incident_id"], english["notice_id"], "Is EDI affected too?")
    assert asked.status == 303
    shown = await (await client.get(asked.headers["Location"])).text()
    assert "Thank you: we received your question." in shown and "We are preparing our answer." in shown


def svgs_of(html: str, incident_id: int) -> list[ET.Element]:
    """The incident card's timeline pictures (the wide one and the phone one)."""
    card = re.search(rf'<section class="card" id="incident-{incident_id}">.*?</section>', html, re.DOTALL)
    assert card, f"no incident {incident_id} on the page"
    found = re.findall(r"<svg .*?</svg>", card.group(0), re.DOTALL)
    return [ET.fromstring(svg) for svg in found]  # noqa: S314 - Herald's own output


def marks(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == kind]


async def test_the_partner_page_timeline_shows_only_that_partners_notices_promises_and_acknowledgements(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, question_settings(db_url, smtp_sink, twilio_fake))
    incident_id = (await post_sample(client))["incident_id"]
    hour = time.time() + 3600
    v2 = {"current_status": {"ja": "原因を特定しました。", "en": "We found the cause."}}
    v3 = {"current_status": {"ja": "復旧作業中です。", "en": "Recovering."}}
    later = [  # v2 goes to みなと商事 only; v1 and v3 to every subscriber of the order API
        {"status": "identified", "next_update_at": iso(hour + 3600),
         "notice": {"audience": {"partners": ["minato-shoji"]}, "fields": v2}},
        {"status": "recovering", "next_update_at": iso(hour + 7200), "notice": {"fields": v3}},
    ]  # fmt: skip
    for body in later:
        posted = await client.post(f"/v1/incidents/{incident_id}/updates", json=body, headers=auth("operator"))
        assert posted.status == 202, await posted.text()
    await wait_until(lambda: all_settled(client), timeout=60)

    signer = client.app[appkeys.ACK_SIGNER]
    minato = [d for d in await rows(client, deliveries.c.partner_id == "minato-shoji") if d["status"] == "sent"]
    for delivery in minato:  # every みなと商事 contact confirms every notice
        assert (await client.post(f"/ack/{signer.token_for(delivery['id'], delivery['created_at'])}")).status == 200
    sato_page, suzuki_page = await mailed_page(smtp_sink, SATO), await mailed_page(smtp_sink, SUZUKI)
    first_to_sato = min(d["notice_id"] for d in await rows(client, deliveries.c.address == SATO))
    assert (await client.post(f"{sato_page}/ack/{first_to_sato}", allow_redirects=False)).status == 303

    tokai_svgs = svgs_of(await (await client.get(sato_page)).text(), incident_id)
    minato_svgs = svgs_of(await (await client.get(suzuki_page)).text(), incident_id)
    assert len(tokai_svgs) == len(minato_svgs) == 2  # one for screens, one for phones
    for svg in tokai_svgs:
        assert [g.get("data-version") for g in marks(svg, "notice")] == ["1", "3"]
        assert [(g.get("data-version"), g.get("data-state")) for g in marks(svg, "promise")] == [
            ("1", "on_time"),  # kept by v3, the next notice 東海ロジスティクス received
            ("3", "open"),
        ]
        assert {g.get("data-tier"): g.get("data-count") for g in marks(svg, "acks")} == {"1": "1"}  # 佐藤 only
        assert "みなと" not in ET.tostring(svg, encoding="unicode")
    contacts_of_minato = {(d["notice_id"], d["contact_id"], d["tier"]) for d in minato}
    expected: dict[str, int] = {}
    for _, _, tier in contacts_of_minato:
        expected[str(tier)] = expected.get(str(tier), 0) + 1
    for svg in minato_svgs:
        assert [g.get("data-version") for g in marks(svg, "notice")] == ["1", "2", "3"]
        assert len(marks(svg, "promise")) == 3
        assert {g.get("data-tier"): int(g.get("data-count") or 0) for g in marks(svg, "acks")} == expected
