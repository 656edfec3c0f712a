"""A partner asks a question from the acknowledgement page, in headless Chromium: a plain form
that works without script, in the partner's language."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from service import appkeys
from service.store.tables import questions
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers.mail import link_in, mail_to, publish_to
from tests.helpers.wired import start, wired_settings

SATO = "hanako.sato@tokai-logistics.example.jp"


async def test_a_partner_asks_a_question_on_the_acknowledgement_page(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake, browser_page: Any
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await publish_to(client, "tokai-logistics", [1])
    link = link_in(await mail_to(smtp_sink, SATO))
    assert link is not None
    page = browser_page
    await page.goto(str(client.make_url(link)))
    assert await page.locator("h1").inner_text() == "受領のご確認"

    await page.get_by_role("button", name="受領を確認する").click()
    await page.wait_for_load_state()
    assert await page.locator("h1").inner_text() == "受領を確認しました"

    question = "月末のバッチ処理は予定どおり実行できますか？"
    await page.get_by_label("ご質問").fill(question)
    await page.get_by_role("button", name="質問を送信する").click()
    await page.wait_for_load_state()
    assert await page.locator("h1").inner_text() == "ご質問を受け付けました"
    assert await page.locator("script").count() == 0

    async with client.app[appkeys.STORE].read() as conn:
        [row] = [dict(r) for r in (await conn.execute(select(questions))).mappings()]
    assert (row["body"], row["source"], row["partner_id"], row["language"]) == (
        question,
        "ack_page",
        "tokai-logistics",
        "ja",
    )


async def test_a_question_with_a_forged_link_is_refused(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await publish_to(client, "tokai-logistics", [1])
    link = link_in(await mail_to(smtp_sink, SATO))
    assert link is not None
    forged = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    response = await client.post(f"{forged}/questions", data={"question": "偽のリンクからの質問"})
    assert response.status == 403
    empty = await client.post(f"{link}/questions", data={"question": "   "})
    assert empty.status == 422 and "ご質問が空です" in await empty.text()
    async with client.app[appkeys.STORE].read() as conn:
        assert (await conn.execute(select(questions))).first() is None
