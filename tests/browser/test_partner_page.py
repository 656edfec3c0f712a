"""The partner page in a real browser (headless Chromium): Japanese and English, desktop and phone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers.partner_page import SATO, herald_with_two_incidents, mailed_page
from tests.helpers.wired import rows

PHONE = {"width": 390, "height": 844}
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
    [english] = await rows(
        client, deliveries.c.partner_id == "pacific-freight", deliveries.c.channel == "email", deliveries.c.tier == 1
    )
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
