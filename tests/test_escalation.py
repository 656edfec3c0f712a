"""Escalation: an unacknowledged critical notice reaches further; an acknowledgement stops it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from service.escalation import fire_due, window_for
from service.settings import Settings
from service.store.tables import audit_log, deliveries, escalations
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import make_settings, wait_until
from tests.test_dispatch import SAMPLE, post_sample, rows, start, wired_settings

PARTNERS = ["minato-shoji", "tokai-logistics"]
SATO, SUZUKI = "hanako.sato@tokai-logistics.example.jp", "ichiro.suzuki@minato-shoji.example.jp"
ACK_LINK = re.compile(r"https://herald\.example\.com(/ack/[A-Za-z0-9._\-]+)")


def escalating(base: Settings, **escalation: Any) -> Settings:
    """Tier 1 hears of a critical incident by email only, so SMS is the channel escalation adds."""
    policy = {severity: dict(tiers) for severity, tiers in base.policy.items()}
    policy["critical"] = {"1": ["email"], "2": ["email"], "3": ["email"]}
    window = {"poll_interval": 0.05, **escalation}
    return base.model_copy(update={"policy": policy, "escalation": base.escalation.model_copy(update=window)})


async def publish_critical(client: Any, partners: list[str] = PARTNERS, **incident: Any) -> int:
    notice = {**SAMPLE["notice"], "audience": {"partners": partners, "tiers": [1]}}
    return (await post_sample(client, notice=notice, **incident))["notice_id"]


async def escalations_of(client: Any) -> dict[str, dict[str, Any]]:
    async with client.app["store"].read() as conn:
        return {r["partner_id"]: dict(r) for r in (await conn.execute(select(escalations))).mappings()}


async def states(client: Any) -> dict[str, str]:
    return {partner: row["state"] for partner, row in (await escalations_of(client)).items()}


async def audited(client: Any, action: str) -> list[dict[str, Any]]:
    async with client.app["store"].read() as conn:
        query = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def step(client: Any, number: int, partner: str | None = None) -> list[dict[str, Any]]:
    conditions = [deliveries.c.escalation_step == number]
    if partner is not None:
        conditions.append(deliveries.c.partner_id == partner)
    return await rows(client, *conditions)


async def all_left(client: Any) -> bool:
    found = await rows(client)
    return bool(found) and all(r["status"] == "sent" for r in found)


async def test_an_unacknowledged_critical_notice_escalates_to_the_next_channel_and_to_tier_2(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = escalating(wired_settings(sqlite_url, smtp_sink, twilio_fake), critical_minutes=0.01)
    client = await start(aiohttp_client, settings)
    notice_id = await publish_critical(client)
    assert {(r["address"], r["channel"]) for r in await step(client, 0)} == {(SATO, "email"), (SUZUKI, "email")}

    await wait_until(lambda: _all_fired(client), timeout=20)
    await wait_until(lambda: all_left(client), timeout=30)

    escalated = await step(client, 1)
    tier1 = {(r["partner_id"], r["channel"]) for r in escalated if r["tier"] == 1}
    assert tier1 == {("tokai-logistics", "sms"), ("minato-shoji", "sms")}
    tier2 = {r["address"] for r in escalated if r["tier"] == 2}
    assert tier2 == {
        "ken.ito@tokai-logistics.example.jp",
        "ops@tokai-logistics.example.jp",
        "naoko.takahashi@minato-shoji.example.jp",
    }
    assert all(r["message_id"].endswith(".1@herald.example.com>") for r in escalated)
    assert {r["To"] for r in twilio_fake.requests} == {r["address"] for r in escalated if r["channel"] == "sms"}
    fired = await audited(client, "escalation.fired")
    assert sorted(a["detail"]["partner_id"] for a in fired) == PARTNERS
    assert all(a["detail"]["notice_id"] == notice_id for a in fired)


async def test_a_tier1_acknowledgement_cancels_the_partners_escalation_and_a_link_scan_does_not(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = escalating(wired_settings(sqlite_url, smtp_sink, twilio_fake), critical_minutes=0.05)
    client = await start(aiohttp_client, settings)
    await publish_critical(client)
    sato_link = ACK_LINK.search(await _plain_mail_to(smtp_sink, SATO)).group(1)
    suzuki_link = ACK_LINK.search(await _plain_mail_to(smtp_sink, SUZUKI)).group(1)

    assert (await client.get(suzuki_link)).status == 200  # a scanner: no acknowledgement
    assert (await client.post(sato_link)).status == 200  # Sato presses the button

    await wait_until(lambda: _state_is(client, "minato-shoji", "fired"), timeout=20)
    assert (await states(client))["tokai-logistics"] == "cancelled"
    assert not await step(client, 1, "tokai-logistics")
    assert await step(client, 1, "minato-shoji")
    [cancelled] = await audited(client, "escalation.cancelled")
    assert cancelled["detail"]["partner_id"] == "tokai-logistics"


async def test_a_scheduled_escalation_survives_a_restart(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    wired = wired_settings(sqlite_url, smtp_sink, twilio_fake)
    before = await start(aiohttp_client, escalating(wired, critical_minutes=0.01, poll_interval=3600))
    await publish_critical(before, ["tokai-logistics"])
    await before.close()  # its scheduler scanned once, at start, before the notice existed
    assert (await _states_in(before.app["settings"]))["tokai-logistics"] == "scheduled"

    after = await aiohttp_client(_app(escalating(wired, critical_minutes=0.01)))

    await wait_until(lambda: _state_is(after, "tokai-logistics", "fired"), timeout=20)
    assert {r["channel"] for r in await step(after, 1, "tokai-logistics") if r["tier"] == 1} == {"sms"}


async def test_two_processes_never_fire_the_same_escalation(aiohttp_client: Any, db_url: str) -> None:
    settings = escalating(make_settings(db_url), critical_minutes=60, poll_interval=3600)
    first = await start(aiohttp_client, settings)
    second = await aiohttp_client(_app(settings))
    await publish_critical(first)
    later = (await escalations_of(first))["tokai-logistics"]["due_at"] + 1

    stores = (first.app["store"], second.app["store"])

    results = await asyncio.gather(*(fire_due(store, settings, now=later) for store in stores), return_exceptions=True)
    rescan = await asyncio.gather(*(fire_due(store, settings, now=later) for store in stores))

    # PostgreSQL: SKIP LOCKED, both scans succeed. SQLite has one writer: the scan that loses the
    # database lock fails whole ("database is locked"), wrote nothing, and its next scan finds nothing due.
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, OperationalError) for e in failed) and (not failed or first.app["store"].is_sqlite)
    escalated = await step(first, 1)
    assert sum(r for r in results if isinstance(r, int)) == len(escalated) > 0 and rescan == [0, 0]
    assert set((await states(first)).values()) == {"fired"}
    assert len(await audited(first, "escalation.fired")) == len(PARTNERS)


async def test_minor_notices_and_resolved_notices_are_not_chased(aiohttp_client: Any, sqlite_url: str) -> None:
    settings = escalating(make_settings(sqlite_url), critical_minutes=0.01)
    client = await start(aiohttp_client, settings)

    await publish_critical(client, severity="minor")

    assert not await escalations_of(client)
    assert window_for(settings, {"kind": "resolved", "severity": "critical"}) is None
    assert window_for(settings, {"kind": "initial", "severity": "critical"}) == 0.6


async def _all_fired(client: Any) -> bool:
    found = await states(client)
    return len(found) == len(PARTNERS) and set(found.values()) == {"fired"}


async def _state_is(client: Any, partner: str, state: str) -> bool:
    return (await states(client)).get(partner) == state


async def _states_in(settings: Settings) -> dict[str, str]:
    from service.store import Store

    store = Store(settings.database.url)
    try:
        async with store.read() as conn:
            return {r["partner_id"]: r["state"] for r in (await conn.execute(select(escalations))).mappings()}
    finally:
        await store.close()


async def _plain_mail_to(smtp: SmtpSink, address: str) -> str:
    def arrived() -> Any:
        return next((m.message for m in smtp.messages if m.message["To"].addresses[0].addr_spec == address), None)

    return (await wait_until(arrived, timeout=30)).get_body(("plain",)).get_content()


def _app(settings: Settings) -> Any:
    from service.app import create_app

    return create_app(settings)
