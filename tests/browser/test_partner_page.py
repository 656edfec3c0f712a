"""The partner page in a real browser (headless Chromium): Japanese and English, desktop and phone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.mail import answer_mail, question_settings
from tests.helpers.partner_page import (
    PAYMENTS_OUTAGE,
    SATO,
    english_contacts_email,
    herald_with_two_incidents,
    mailed_page,
)
from tests.helpers.wired import all_settled, post_sample, rows, start

PHONE = {"width": 390, "height": 844}
QUESTION = "月末のバッチ処理（30日 23時）は予定どおり実行できますか？"
ANSWER = "月末バッチへの影響はございません。予定どおり実行いただけます。"
# Screenshots land here so a person can look at them (HERALD_SCREENSHOTS=dir keeps them).
SHOTS = Path(os.environ.get("HERALD_SCREENSHOTS", "")) if os.environ.get("HERALD_SCREENSHOTS") else None


async def shoot(page: Any, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str((SHOTS or tmp_path) / f"{name}.png"), full_page=True)


async def fits_the_width(page: Any) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_a_japanese_contact_reads_and_acknowledges_on_a_desktop_and_on_a_phone(
    aiohttp_client: Any,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    twilio_fake: TwilioFake,
    browser_page: Any,
    tmp_path: Path,
) -> None:
    client = await herald_with_two_incidents(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    url = str(client.make_url(await mailed_page(smtp_sink, SATO)))
    page = browser_page

    await page.goto(url)
    assert await page.locator("html").get_attribute("lang") == "ja"
    assert await page.get_by_role("heading", name="現在発生中の障害").is_visible()
    incident = page.locator("section.card", has_text="受発注APIの応答遅延・エラー")
    await incident.get_by_text("本文を表示").click()
    assert await incident.get_by_text("受発注API経由の発注登録の約40%").first.is_visible()
    assert await page.get_by_text("決済サービスの停止").count() == 0
    await shoot(page, tmp_path, "partner-ja-desktop")

    await incident.get_by_role("button", name="受領を確認する").click()
    await page.wait_for_url("**?done=acknowledged")
    assert await page.get_by_role("status").inner_text() == "受領確認を記録しました。ありがとうございます。"
    assert await incident.get_by_text("受領確認済み").is_visible()

    await page.set_viewport_size(PHONE)
    await page.reload()
    assert await fits_the_width(page)  # nothing wider than the phone: no sideways scrolling
    button = page.get_by_role("button", name="変更を依頼する")
    await button.scroll_into_view_if_needed()
    assert await button.is_visible()
    await shoot(page, tmp_path, "partner-ja-phone")


async def test_an_english_contact_reads_its_page_and_requests_a_change_on_a_phone(
    aiohttp_client: Any,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    twilio_fake: TwilioFake,
    browser_page: Any,
    tmp_path: Path,
) -> None:
    client = await herald_with_two_incidents(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    english = await english_contacts_email(client)
    page = browser_page
    await page.set_viewport_size(PHONE)
    await page.goto(str(client.make_url(await mailed_page(smtp_sink, english["address"]))))
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.get_by_role("heading", name="Incidents now").is_visible()
    assert await page.get_by_text("Order API slow responses and errors").first.is_visible()
    assert await fits_the_width(page)
    await shoot(page, tmp_path, "partner-en-phone")

    await page.get_by_label("Phone (SMS)").fill("not a number")
    await page.get_by_label("Name").fill("James Wong")
    await page.get_by_role("button", name="Send the request").click()
    assert "We could not accept the request." in await page.get_by_role("alert").inner_text()
    await page.get_by_label("Phone (SMS)").fill("+1 415 555 0100")
    await page.get_by_role("button", name="Send the request").click()
    await page.wait_for_url("**?done=requested")
    assert "we received your request" in await page.get_by_role("status").inner_text()
    await page.set_viewport_size({"width": 1200, "height": 900})
    await shoot(page, tmp_path, "partner-en-desktop")


async def test_a_contact_asks_on_its_page_and_reads_the_answer_that_also_reaches_it_by_email(
    aiohttp_client: Any,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    twilio_fake: TwilioFake,
    browser_page: Any,
    tmp_path: Path,
) -> None:
    client = await start(aiohttp_client, question_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = (await post_sample(client))["incident_id"]
    await post_sample(client, **PAYMENTS_OUTAGE)  # to みなと商事, not to 佐藤さん's 東海ロジスティクス
    await wait_until(lambda: all_settled(client), timeout=30)
    link = await mailed_page(smtp_sink, SATO)
    page = browser_page
    await page.goto(str(client.make_url(link)))
    incident = page.locator("section.card", has_text="受発注APIの応答遅延・エラー")
    chart = incident.locator("figure.chart .chart-wide svg")
    assert await chart.is_visible() and await chart.locator("g.notice").count() == 1
    assert await page.locator("script").count() == 0

    await incident.get_by_label("ご質問", exact=True).fill(QUESTION)
    await incident.get_by_role("button", name="質問を送信する").click()
    await page.wait_for_url("**?done=asked")
    assert "ご質問を受け付けました" in await page.get_by_role("status").inner_text()
    asked = incident.locator("ul.questions li", has_text=QUESTION)
    assert await asked.get_by_text("回答を準備しております。").is_visible()
    await shoot(page, tmp_path, "partner-question-ja-desktop")

    [question] = await questions_about(client, incident_id)
    assert question["source"] == "partner_page" and question["body"] == QUESTION
    answered = await client.post(
        f"/v1/questions/{question['id']}/answer", json={"answer": {"ja": ANSWER}}, headers=auth("operator")
    )
    assert answered.status == 202, await answered.text()

    mail = await answer_mail(smtp_sink)
    assert mail["To"].addresses[0].addr_spec == SATO and ANSWER in mail.get_body(("plain",)).get_content()
    await page.reload()
    assert await asked.locator(".answer").get_by_text(ANSWER).is_visible()

    await page.set_viewport_size(PHONE)
    await page.reload()
    assert await fits_the_width(page)
    narrow = incident.locator("figure.chart .chart-narrow svg")
    assert await narrow.is_visible() and not await chart.is_visible()  # the phone's own drawing
    await shoot(page, tmp_path, "partner-question-ja-phone")
    await page.emulate_media(media="print")  # paper takes the wide drawing, without the form
    assert await chart.is_visible() and not await narrow.is_visible()
    assert not await incident.get_by_role("button", name="質問を送信する").is_visible()
    await page.emulate_media(media="screen")

    theirs = max(d["notice_id"] for d in await rows(client, deliveries.c.partner_id == "minato-shoji"))
    for token, notice, status in ((link, theirs, 404), (forged_token(link), question["notice_id"], 403)):
        refused = await page.request.post(
            str(client.make_url(f"{token}/questions")), form={"notice": str(notice), "question": "他社の通知について"}
        )
        assert refused.status == status
    assert [q["id"] for q in await questions_about(client, incident_id)] == [question["id"]]


def forged_token(link: str) -> str:
    return link[:-2] + ("AA" if not link.endswith("AA") else "BB")


async def questions_about(client: Any, incident_id: int) -> list[dict[str, Any]]:
    listed = await client.get(f"/v1/incidents/{incident_id}/questions", headers=auth("operator"))
    return list((await listed.json())["items"])
