"""A critical incident reaches every affected partner: real SMTP server, real twilio client."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from service import appkeys
from service.app import create_app
from service.store import deliveries as outbox
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import all_final, post_sample, rows, start, wired_settings


async def test_a_critical_incident_reaches_partners_by_email_and_sms(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    reply = await post_sample(client)
    plan = reply["deliveries"]
    assert plan["total"] > 0 and plan["by_channel"]["sms"] > 0 and plan["by_channel"]["email"] > 0
    await wait_until(lambda: all_final(client), timeout=30)
    sent = await rows(client)
    assert {r["status"] for r in sent} == {"sent"}
    assert len(smtp_sink.messages) == plan["by_channel"]["email"]
    assert len(twilio_fake.requests) == plan["by_channel"]["sms"]

    by_message_id = {r["message_id"]: r for r in sent}
    mail = smtp_sink.messages[0].message
    delivery = by_message_id[mail["Message-ID"]]
    assert mail["To"] == delivery["address"]
    assert "incident@herald.example.com" in mail["From"]
    assert mail["Reply-To"] == "incident-desk@example.com"
    assert delivery["provider_id"] and delivery["body_hash"]
    plain_part, html_part = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain_part is not None and html_part is not None
    plain, html = plain_part.get_content(), html_part.get_content()
    recipient = (await rows(client, deliveries.c.id == delivery["id"]))[0]
    async with client.app[appkeys.STORE].read() as conn:
        names = await outbox.recipients(conn, [recipient["contact_id"]])
    contact = names[recipient["contact_id"]]
    assert contact["name"] in plain and contact["partner_name"] in plain
    assert contact["name"] in html and "\ue000" not in plain + html
    if delivery["language"] == "ja":
        assert "受発注APIの応答遅延" in str(mail["Subject"])
        assert "受発注API経由の発注登録" in plain and "山田 太郎" in plain
        assert "受発注API経由の発注登録" in html
    else:
        assert "Order API slow responses" in str(mail["Subject"])
        assert "Taro Yamada" in plain and "Taro Yamada" in html

    request = twilio_fake.requests[0]
    sms = next(r for r in sent if r["channel"] == "sms" and r["address"] == request["To"])
    assert request["From"] == "+15005550006"
    assert request["StatusCallback"] == "https://herald.example.com/v1/receipts/twilio"
    assert sms["provider_id"].startswith("SM")
    assert "受発注API" in request["Body"] or "Order API" in request["Body"]


async def test_with_one_worker_critical_tier1_leaves_before_tier3(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, concurrency={"email": 1, "sms": 1}, enabled=False)
    client = await start(aiohttp_client, settings)
    await post_sample(client)
    await client.app[appkeys.DISPATCHER].start()
    await wait_until(lambda: all_final(client), timeout=60)
    tier_of = {r["address"]: r["tier"] for r in await rows(client, deliveries.c.channel == "email")}
    arrival = [tier_of[m.message["To"]] for m in smtp_sink.messages]
    assert arrival == sorted(arrival), "email left out of tier order"
    assert arrival[0] == 1 and 3 in arrival


async def test_a_transient_smtp_error_is_retried_then_succeeds(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    smtp_sink.fail_next(2, code=451, text="4.3.0 mailbox busy")
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)
    emails = await rows(client, deliveries.c.channel == "email")
    assert {r["status"] for r in emails} == {"sent"}
    assert sum(r["attempts"] for r in emails) == len(emails) + 2


async def test_a_permanent_smtp_error_fails_at_once_with_its_reason(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", on="RCPT")
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)
    [failed] = await rows(client, deliveries.c.status == "failed")
    assert failed["channel"] == "email" and failed["attempts"] == 1
    assert "550" in failed["last_error"] or failed["error_code"] == "550"
    assert "no such user" in failed["last_error"]


async def test_twilio_429_and_500_are_retried_then_succeed(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    twilio_fake.fail_next(1, status=429, code=20429)
    twilio_fake.fail_next(1, status=500, code=20500)
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)
    texts = await rows(client, deliveries.c.channel == "sms")
    assert {r["status"] for r in texts} == {"sent"}
    assert sum(r["attempts"] for r in texts) == len(texts) + 2


async def test_an_invalid_number_fails_at_once_and_is_not_retried(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    first_sms_number = await _first_planned_sms_number(client)
    twilio_fake.reject_numbers({first_sms_number}, code=21211)
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)
    failed = await rows(client, deliveries.c.status == "failed")
    assert failed and all(r["address"] == first_sms_number for r in failed)
    assert all(r["error_code"] == "21211" and r["attempts"] == 1 for r in failed)
    assert sum(1 for r in twilio_fake.requests if r["To"] == first_sms_number) == len(failed)


async def _first_planned_sms_number(client: Any) -> str:
    from service.store.audience import partners_with_contacts

    async with client.app[appkeys.STORE].read() as conn:
        partners = await partners_with_contacts(conn)
    for partner in partners:
        if set(partner.components) & set(SAMPLE["components"]):
            for contact in partner.contacts:
                if contact.tier == 1 and contact.phone and "sms" in (contact.channels or ["sms"]):
                    return contact.phone
    raise AssertionError("the example directory has no tier-1 SMS contact for the sample components")


async def test_a_dead_delivery_can_be_requeued_by_an_admin(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, max_attempts=2, enabled=False)
    client = await start(aiohttp_client, settings)
    notice = {**SAMPLE["notice"], "audience": {"partners": ["tokai-logistics"], "tiers": [1]}}
    planned = (await post_sample(client, severity="minor", notice=notice))["deliveries"]
    assert planned["by_channel"]["email"] >= 1
    smtp_sink.fail_next(2 * planned["by_channel"]["email"], code=421, text="4.7.0 try later")
    await client.app[appkeys.DISPATCHER].start()
    await wait_until(lambda: all_final(client), timeout=30)
    dead = await rows(client, deliveries.c.status == "dead")
    assert dead and "gave up after 2 attempts" in dead[0]["last_error"]
    assert (await client.post(f"/v1/deliveries/{dead[0]['id']}/retry", headers=auth("operator"))).status == 403
    response = await client.post(f"/v1/deliveries/{dead[0]['id']}/retry", headers=auth("admin"))
    assert response.status == 202
    await wait_until(lambda: all_final(client), timeout=30)
    assert (await outbox_row(client, dead[0]["id"]))["status"] == "sent"
    again = await client.post(f"/v1/deliveries/{dead[0]['id']}/retry", headers=auth("admin"))
    assert again.status == 409


async def outbox_row(client: Any, delivery_id: int) -> dict[str, Any]:
    async with client.app[appkeys.STORE].read() as conn:
        row = await outbox.get_delivery(conn, delivery_id)
    assert row is not None
    return row


async def test_a_restart_mid_dispatch_loses_nothing(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """A worker claims deliveries and dies; the next Herald sends them and everything else."""
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False)
    first = await start(aiohttp_client, settings)
    await post_sample(first)
    async with first.app[appkeys.STORE].begin() as conn:
        # The crashed worker's lease has run out by the time the next Herald starts; the live
        # workers keep the default lease, so no live claim can expire mid-send (no timing race).
        stranded = await outbox.claim_due(conn, ["email", "sms"], 5, "crashed-worker", lease_seconds=0)
    await first.close()

    second = await aiohttp_client(
        create_app(settings.model_copy(update={"dispatch": settings.dispatch.model_copy(update={"enabled": True})}))
    )
    await wait_until(lambda: all_final(second), timeout=30)
    final = await rows(second)
    assert {r["status"] for r in final} == {"sent"}
    assert {d.id for d in stranded} <= {r["id"] for r in final if r["attempts"] == 2}
    delivered_ids = [m.message["Message-ID"] for m in smtp_sink.messages] + [
        r["message_id"] for r in final if r["channel"] == "sms"
    ]
    assert len(smtp_sink.messages) == sum(1 for r in final if r["channel"] == "email")
    assert len(twilio_fake.requests) == sum(1 for r in final if r["channel"] == "sms")
    assert len(set(delivered_ids)) == len(final)


async def test_deliveries_are_written_before_the_reply(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False))
    reply = await post_sample(client)
    async with client.app[appkeys.STORE].read() as conn:
        planned = await conn.scalar(select(func.count()).select_from(deliveries))
    assert planned == reply["deliveries"]["total"] > 0
    assert not smtp_sink.messages and not twilio_fake.requests


@pytest.mark.parametrize("tiers, expected_tiers", [([1], {1}), ([2, 3], {2, 3})])
async def test_an_operator_can_address_a_broadcast_to_tiers(
    aiohttp_client: Any,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    twilio_fake: TwilioFake,
    tiers: list[int],
    expected_tiers: set[int],
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False))
    body = {
        "kind": "maintenance",
        "fields": {
            "summary": {"ja": "定期メンテナンスを実施します。", "en": "Scheduled maintenance."},
            "impact": {"ja": "受発注APIが停止します。", "en": "The Order API will be unavailable."},
            "window_start": "2026-12-05T01:00:00+09:00",
            "window_end": "2026-12-05T03:00:00+09:00",
            "responsible": {"name": {"ja": "運用センター", "en": "Operations Center"}, "email": "ops@example.com"},
        },
        "audience": {"all_partners": True, "tiers": tiers},
    }
    response = await client.post("/v1/broadcasts", json=body, headers=auth("operator"))
    assert response.status == 202, await response.text()
    planned = await rows(client)
    assert planned and {r["tier"] for r in planned} == expected_tiers
    assert (await response.json())["deliveries"]["total"] == len(planned)


async def test_a_broadcast_to_an_unknown_partner_is_422(client: Any) -> None:
    body = {
        "kind": "custom",
        "fields": {"subject": "x", "body": "y", "responsible": {"name": "ops"}},
        "audience": {"partners": ["no-such-partner"]},
    }
    response = await client.post("/v1/broadcasts", json=body, headers=auth("operator"))
    assert response.status == 422
    assert (await response.json())["field"] == "audience.partners"


async def test_a_broadcast_larger_than_one_planning_page_reaches_every_partner(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    from service.planner import PARTNERS_PER_PAGE
    from tests.helpers.bulk import seed_directory

    partners = PARTNERS_PER_PAGE * 2 + 500
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False)
    await seed_directory(settings, partners, emails=1, phones=1)
    client = await aiohttp_client(create_app(settings))
    body = {
        "kind": "custom",
        "severity": "critical",
        "fields": {"subject": "Herald drill", "body": "A drill.", "responsible": {"name": "ops"}},
    }
    response = await client.post("/v1/broadcasts", json=body, headers=auth("operator"))
    plan = (await response.json())["deliveries"]
    assert plan["total"] == 2 * partners and plan["partners"] == partners
    planned = await rows(client)
    assert len({r["message_id"] for r in planned}) == 2 * partners
    assert len({r["partner_id"] for r in planned}) == partners
