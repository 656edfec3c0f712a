"""An operator opens an incident from the console, checks the preview, publishes, and watches a
partner's acknowledgement arrive in the incident room."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from service.store.tables import deliveries, sandbox_messages
from tests.browser.conftest import PHONE, HeraldServer, screenshot, sign_in

ACK_LINK = re.compile(r"http://127\.0\.0\.1:\d+/ack/[\w.\-]+")


def fill_initial_notice(page: Any, next_update: datetime) -> None:
    page.fill("[name='title.ja']", "受発注APIの応答遅延")
    page.fill("[name='title.en']", "Order API slow responses")
    page.select_option("#f-severity", "critical")
    page.fill("#f-components", "order-api")
    page.fill("[name='impact.ja']", "発注登録の一部がタイムアウトしています。")
    page.fill("[name='impact.en']", "Some order submissions time out.")
    page.fill("#f-next_update_at", next_update.strftime("%Y-%m-%dT%H:%M"))
    page.fill("[name='summary.ja']", "14時52分頃より受発注APIで応答遅延が発生しています。")
    page.fill("[name='summary.en']", "Since about 14:52 JST the Order API has been slow.")
    page.fill("[name='current_status.ja']", "原因を調査しています。")
    page.fill("[name='current_status.en']", "We are investigating the cause.")
    page.fill("[name='outlook.ja']", "復旧見込みは未定です。")
    page.fill("[name='outlook.en']", "We have no recovery estimate yet.")


def sandbox_ack_link(herald: HeraldServer, incident_id: int) -> str:
    """The acknowledgement link a tier-1 contact received, read from the sandbox channel."""

    async def find() -> str | None:
        async with herald.store.read() as conn:
            query = (
                select(sandbox_messages.c.body)
                .join(deliveries, deliveries.c.id == sandbox_messages.c.delivery_id)
                .where(deliveries.c.incident_id == incident_id, deliveries.c.tier == 1)
                .where(sandbox_messages.c.channel == "email")
                .order_by(sandbox_messages.c.id)
                .limit(1)
            )
            body = await conn.scalar(query)
        found = ACK_LINK.search(body or "")
        return found.group(0) if found else None

    link = herald.run(find())
    assert link, "a tier-1 email carries an acknowledgement link"
    return link


def test_an_operator_publishes_an_incident_and_sees_a_partner_acknowledge(herald: HeraldServer, new_page: Any) -> None:
    page = new_page(locale="ja-JP")
    sign_in(page, herald, "operator")
    page.click("text=障害を登録")
    zone = ZoneInfo(herald.settings.company.timezone)
    fill_initial_notice(page, datetime.now(zone) + timedelta(minutes=45))
    page.click("button[value=preview]")

    preview = page.locator("section.preview")
    preview.wait_for()
    assert "送信内容のプレビュー" in preview.locator("h2").inner_text()
    ja_sms = page.locator(".lang-preview[data-lang=ja] .sms-facts")
    assert ja_sms.get_attribute("data-encoding") == "UCS-2"
    assert int(ja_sms.get_attribute("data-segments") or 0) >= 1
    assert re.search(r"\d+通分", ja_sms.inner_text()), "the SMS segment count is shown"
    assert int(page.locator("[data-sms-segments]").get_attribute("data-sms-segments") or 0) >= 1
    en_subject = page.locator(".lang-preview[data-lang=en] .mail .subject").inner_text()
    assert "Order API slow responses" in en_subject
    screenshot(page, "compose-preview-ja")

    publish = page.locator("#publish")
    recipients = re.search(r"([\d,]+)名", publish.inner_text())
    assert recipients, publish.inner_text()
    dialogs: list[str] = []

    def confirm(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    publish.click()
    page.wait_for_url(re.compile(r".*/console/incidents/\d+\?flash=published"))
    assert dialogs and recipients.group(1) in dialogs[0], "the confirmation names the number of recipients"
    incident_id = int(re.search(r"/incidents/(\d+)", page.url).group(1))

    page.locator("[data-state=sent]").wait_for(timeout=30_000)
    unacknowledged = page.locator("ul.unacknowledged li[data-partner]")
    before = unacknowledged.count()
    assert before >= 1
    screenshot(page, "room-sent-ja")

    partner = new_page(locale="ja-JP", viewport=PHONE)
    partner.goto(sandbox_ack_link(herald, incident_id))
    partner.click("form button[type=submit]")
    partner.locator("h1").wait_for()
    assert "受領" in partner.locator("h1").inner_text()

    page.locator("[data-total=acknowledged]").filter(has_text="1").wait_for(timeout=15_000)
    assert unacknowledged.count() == before - 1
    screenshot(page, "room-acknowledged-ja")


def test_bad_input_is_shown_beside_its_field_in_japanese_and_nothing_is_written(
    herald: HeraldServer, new_page: Any
) -> None:
    page = new_page(locale="ja-JP", viewport=PHONE)
    sign_in(page, herald, "operator")
    page.goto(herald.url + "/console/compose")
    page.fill("[name='title.ja']", "テスト障害")
    page.fill("[name='summary.en']", "Only English here.")
    page.click("button[value=preview]")
    assert page.locator(".error-summary").inner_text() == "入力内容を確認してください。"
    assert page.locator("#e-impact").inner_text() == "入力してください。"
    assert page.locator("#e-next_update_at").inner_text() == "入力してください。"
    assert page.locator("#e-current_status").inner_text() == "入力してください。"
    assert page.locator("[name='impact.ja']").get_attribute("aria-invalid") == "true"
    assert page.locator("[name='summary.en']").input_value() == "Only English here.", "what was typed is kept"
    assert page.locator("#e-title").count() == 0
    screenshot(page, "compose-errors-ja-phone")

    async def incidents() -> int:
        from sqlalchemy import func

        from service.store.tables import incidents as table

        async with herald.store.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table)) or 0)

    assert herald.run(incidents()) == 0
