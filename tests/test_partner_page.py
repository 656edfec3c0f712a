"""Each partner contact has a page of its own, linked from every notice: what the partner was told,
acknowledgements, its contacts, and (tier 1) a request to change them that an admin approves.
Real SMTP server and twilio client: the link is taken from the mail a contact received."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from service import appkeys
from service.store import partners as partner_store
from service.store.tables import (
    acknowledgements,
    audit_log,
    contact_change_requests,
    deliveries,
    inbound_events,
    metadata,
    receipts,
)
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth
from tests.helpers.partner_page import (
    ITO,
    PAGE_LINK,
    SATO,
    SUZUKI,
    english_contacts_email,
    herald_with_two_incidents,
    mailed_page,
)
from tests.helpers.wired import rows


async def snapshot(client: Any) -> dict[str, Any]:
    """Row counts of every table and every delivery's state: what a GET must leave alone."""
    async with client.app[appkeys.STORE].read() as conn:
        counts = {t.name: await conn.scalar(select(func.count()).select_from(t)) for t in metadata.sorted_tables}
        states = (await conn.execute(select(deliveries.c.id, deliveries.c.status, deliveries.c.updated_at))).all()
    return {"counts": counts, "deliveries": states}


async def test_every_notice_links_to_the_contacts_own_page_which_shows_only_its_partners_incidents_and_records_nothing(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_with_two_incidents(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    sato_page, suzuki_page = await mailed_page(smtp_sink, SATO), await mailed_page(smtp_sink, SUZUKI)
    assert all(
        "https://status.example.com" not in m.message.get_body(("plain",)).get_content() for m in smtp_sink.messages
    )
    assert all(PAGE_LINK.search(r["Body"]) or "/ack/" in r["Body"] for r in twilio_fake.requests)

    before = await snapshot(client)
    tokai = await client.get(sato_page)
    minato = await client.get(suzuki_page)
    assert await snapshot(client) == before  # opening the page records nothing
    assert tokai.status == minato.status == 200
    assert tokai.headers["Cache-Control"] == "no-store" and tokai.headers["Referrer-Policy"] == "no-referrer"

    tokai_html, minato_html = await tokai.text(), await minato.text()
    assert '<html lang="ja">' in tokai_html and "東海ロジスティクス株式会社 御中" in tokai_html
    assert "受発注APIの応答遅延・エラー" in tokai_html  # its incident, with the notice as sent
    assert "【障害発生のお知らせ】受発注APIの応答遅延・エラー（第1報）" in tokai_html
    assert "決済サービスの停止" not in tokai_html  # not one of its services
    assert "佐藤 花子" in tokai_html and "伊藤 健" in tokai_html and "鈴木 一郎" not in tokai_html
    assert "決済サービスの停止" in minato_html and "佐藤 花子" not in minato_html

    forged = await client.get(sato_page[:-2] + ("AA" if not sato_page.endswith("AA") else "BB"))
    assert forged.status == 403 and "決済" not in await forged.text()


async def test_an_english_contact_reads_its_page_in_english(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_with_two_incidents(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    english = await english_contacts_email(client)
    html = await (await client.get(await mailed_page(smtp_sink, english["address"]))).text()
    assert '<html lang="en">' in html and "Order API slow responses and errors" in html
    assert "Incidents now" in html and "Pacific Freight Ltd." in html


async def test_a_contact_acknowledges_from_its_page_and_a_tier1_contact_change_is_applied_after_admin_approval(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald_with_two_incidents(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    page = await mailed_page(smtp_sink, SATO)
    [notice] = {r["notice_id"] for r in await rows(client, deliveries.c.address == SATO)}

    confirmed = await client.post(f"{page}/ack/{notice}", allow_redirects=False)
    assert confirmed.status == 303 and confirmed.headers["Location"] == f"{page}?done=acknowledged"
    async with client.app[appkeys.STORE].read() as conn:
        assert await conn.scalar(select(func.count()).select_from(acknowledgements)) == 1
    assert "受領確認済み" in await (await client.get(page)).text()

    refused = await client.post(
        f"{page}/contact-requests", data={"contact": "sato", "name": "佐藤 花子", "phone": "abc"}
    )
    assert refused.status == 422 and "電話番号" in await refused.text()
    wanted = {
        "contact": "sato",
        "name": "佐藤 花子",
        "email": "h.sato@tokai-logistics.example.jp",
        "phone": "090-1234-5678",
        "language": "ja",
        "channels": "email,sms",
    }
    sent = await client.post(f"{page}/contact-requests", data=wanted, allow_redirects=False)
    assert sent.status == 303
    async with client.app[appkeys.STORE].read() as conn:
        unchanged = await partner_store.get_contact(conn, "tokai-logistics", "sato")
        assert unchanged is not None and unchanged["email"] == SATO  # not yet
        assert await conn.scalar(select(func.count()).select_from(contact_change_requests)) == 1

    pending = await (await client.get("/v1/contact-requests?state=pending", headers=auth("admin"))).json()
    [request] = pending["items"]
    assert request["change"]["email"] == "h.sato@tokai-logistics.example.jp" and request["change"]["channels"] == [
        "email",
        "sms",
    ]
    approved = await client.post(f"/v1/contact-requests/{request['id']}/approve", headers=auth("admin"))
    assert approved.status == 200 and (await approved.json())["state"] == "approved"
    async with client.app[appkeys.STORE].read() as conn:
        changed = await partner_store.get_contact(conn, "tokai-logistics", "sato")
        actions = list(
            (
                await conn.execute(select(audit_log.c.action).where(audit_log.c.action.like("contact_change.%")))
            ).scalars()
        )
    assert changed is not None
    assert (changed["email"], changed["phone"], changed["channels"]) == (
        "h.sato@tokai-logistics.example.jp",
        "+819012345678",
        ["email", "sms"],
    )
    assert actions == ["contact_change.requested", "contact_change.approved"]
    assert (await client.post(f"/v1/contact-requests/{request['id']}/approve", headers=auth("admin"))).status == 409

    tier2 = await client.post(f"{await mailed_page(smtp_sink, ITO)}/contact-requests", data=wanted)
    assert tier2.status == 403
    async with client.app[appkeys.STORE].read() as conn:
        assert await conn.scalar(select(func.count()).select_from(contact_change_requests)) == 1
        assert await conn.scalar(select(func.count()).select_from(inbound_events)) == 2  # the two incidents only
        assert await conn.scalar(select(func.count()).select_from(receipts)) == 1  # the acknowledgement
