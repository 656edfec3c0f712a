"""Acknowledgement links: a partner confirms a notice; a link scanner's GET confirms nothing."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from service import appkeys
from service.acks import AckSigner, ExpiredToken, InvalidToken, ack_link
from service.store.models import Delivery
from service.store.tables import acknowledgements, deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import make_settings, wait_until
from tests.helpers.mail import link_in, mail_to, publish_to
from tests.helpers.wired import rows, start, wired_settings


async def acknowledgements_of(client: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        return [dict(r) for r in (await conn.execute(select(acknowledgements))).mappings()]


async def delivery_to(client: Any, address: str, channel: str = "email") -> dict[str, Any]:
    [row] = await rows(client, deliveries.c.address == address, deliveries.c.channel == channel)
    return row


@pytest.fixture
async def wired(aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake) -> Any:
    return await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))


async def test_a_link_scanners_get_acknowledges_nothing_and_the_partners_post_does(wired, smtp_sink) -> None:
    await publish_to(wired, "tokai-logistics", [1])
    link = link_in(await mail_to(smtp_sink, "hanako.sato@tokai-logistics.example.jp"))
    assert link is not None

    for _ in range(2):  # the gateway's scanner, then the person opening the mail
        page = await wired.get(link)
        assert page.status == 200
        html = await page.text()
        assert "受領のご確認" in html and "受発注API" in html and '<form method="post">' in html
    assert not await acknowledgements_of(wired)
    assert (await delivery_to(wired, "hanako.sato@tokai-logistics.example.jp"))["status"] == "sent"

    confirmed = await wired.post(link)

    assert confirmed.status == 200
    assert "受領を確認しました" in await confirmed.text()
    [ack] = await acknowledgements_of(wired)
    row = await delivery_to(wired, "hanako.sato@tokai-logistics.example.jp")
    assert ack["delivery_id"] == row["id"] and ack["partner_id"] == "tokai-logistics"
    assert row["status"] == "acknowledged" and row["acknowledged_at"] is not None


async def test_pressing_the_button_twice_records_one_acknowledgement(wired, smtp_sink) -> None:
    await publish_to(wired, "tokai-logistics", [1])
    link = link_in(await mail_to(smtp_sink, "hanako.sato@tokai-logistics.example.jp"))
    await wired.post(link)
    first = (await delivery_to(wired, "hanako.sato@tokai-logistics.example.jp"))["acknowledged_at"]

    again = await wired.post(link)
    later_visit = await wired.get(link)

    assert again.status == 200 and later_visit.status == 200
    assert "受領を確認しました" in await later_visit.text()
    assert len(await acknowledgements_of(wired)) == 1
    assert (await delivery_to(wired, "hanako.sato@tokai-logistics.example.jp"))["acknowledged_at"] == first


async def test_an_english_partner_sees_the_pages_in_english(wired, smtp_sink) -> None:
    await publish_to(wired, "pacific-freight", [1])
    link = link_in(await mail_to(smtp_sink, "james.wong@pacificfreight.example.com"))

    asked = await (await wired.get(link)).text()
    thanked = await (await wired.post(link)).text()

    assert 'lang="en"' in asked and "Confirm receipt" in asked and "Order API" in asked
    assert "Receipt confirmed" in thanked


async def test_tier_1_and_2_notices_carry_a_link_and_tier_3_notices_do_not(wired, smtp_sink) -> None:
    await publish_to(wired, "tokai-logistics", [1, 2, 3])

    tier1 = await mail_to(smtp_sink, "hanako.sato@tokai-logistics.example.jp")
    tier2 = await mail_to(smtp_sink, "ken.ito@tokai-logistics.example.jp")
    tier3 = await mail_to(smtp_sink, "misaki.kato@tokai-logistics.example.jp")

    assert link_in(tier1) and link_in(tier2) and link_in(tier1) != link_in(tier2)
    assert link_in(tier3) is None and "/ack/" not in tier3.get_body(("html",)).get_content()


async def test_forged_and_expired_links_are_refused_and_record_nothing(wired, smtp_sink) -> None:
    await publish_to(wired, "tokai-logistics", [1])
    link = link_in(await mail_to(smtp_sink, "hanako.sato@tokai-logistics.example.jp"))
    assert link is not None
    row = await delivery_to(wired, "hanako.sato@tokai-logistics.example.jp")
    other_id = link.replace(f"/ack/{row['id']}.", f"/ack/{row['id'] + 1}.")
    expired = "/ack/" + wired.app[appkeys.ACK_SIGNER].token(row["id"], time.time() - 1)

    forged_get = await wired.get(other_id, headers={"Accept-Language": "ja,en;q=0.8"})
    forged_post = await wired.post(other_id)
    expired_get = await wired.get(expired)
    expired_post = await wired.post(expired)
    garbage = await wired.post("/ack/not-a-token")

    assert [forged_get.status, forged_post.status, expired_get.status, expired_post.status, garbage.status] == [
        403,
        403,
        410,
        410,
        403,
    ]
    assert "リンクが無効です" in await forged_get.text()
    assert "有効期限" in await expired_get.text()  # the delivery's language, though the link is dead
    assert not await acknowledgements_of(wired)


async def test_operator_text_on_the_page_is_escaped_and_the_page_is_not_cached_or_framed(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, make_settings(sqlite_url))
    title = {"ja": "<script>alert(1)</script>受発注API障害", "en": "<script>alert(1)</script>Order API"}
    await publish_to(client, "tokai-logistics", [1], title=title)
    [email] = await wait_until(lambda: rows(client, deliveries.c.channel == "email", deliveries.c.status == "sent"))

    page = await client.get("/ack/" + client.app[appkeys.ACK_SIGNER].token_for(email["id"], email["created_at"]))

    html = await page.text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;受発注API障害" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.content_type == "text/html"


def test_links_outlive_a_restart_only_with_a_configured_secret(sqlite_url: str) -> None:
    configured = make_settings(sqlite_url, ack={"secret": "s3cret-for-links", "ttl_hours": 1})
    token = AckSigner.from_settings(configured).token(42, time.time() + 60)

    assert AckSigner.from_settings(configured).verify(token) == 42  # a restarted process
    with pytest.raises(InvalidToken):
        AckSigner.from_settings(make_settings(sqlite_url)).verify(token)  # no secret: a random one
    with pytest.raises(ExpiredToken):
        AckSigner.from_settings(configured).verify(token, now=time.time() + 120)


def test_the_link_expires_ttl_hours_after_the_delivery_was_planned(sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url,
        ack={"secret": "s3cret-for-links", "ttl_hours": 2},
        server={"public_base_url": "https://herald.example.com/"},
    )
    signer = AckSigner.from_settings(settings)
    link = ack_link(settings, signer)
    planned = Delivery(
        id=7, notice_id=1, incident_id=None, partner_id="tokai-logistics", contact_id=1, tier=1, channel="email",
        address="sato@example.jp", language="ja", priority=0, status="pending", attempts=0,
        next_attempt_at=1_000_000.0, message_id="<herald.n1.c1.email.0@example.com>", escalation_step=0,
        created_at=1_000_000.0, updated_at=1_000_000.0,
    )  # fmt: skip

    url = link(planned)

    assert url is not None and url.startswith("https://herald.example.com/ack/7.")
    assert link(planned) == url  # every retry renders the same text
    assert signer.verify(url.rsplit("/", 1)[1], now=1_000_000.0 + 7199) == 7
    with pytest.raises(ExpiredToken):
        signer.verify(url.rsplit("/", 1)[1], now=1_000_000.0 + 7201)
    assert link(replace(planned, tier=3)) is None
