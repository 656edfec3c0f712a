"""Escalation: under the default policy an unacknowledged critical notice is sent again as a
reminder, then to tier 2, then to our on-call operators; an acknowledgement stops the steps."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import select

from service import appkeys
from service.escalation import fire_due, steps_for
from service.operators import OPERATORS
from service.settings import EscalationStep, OnCallContact, Settings
from service.store.tables import audit_log, deliveries, escalations
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import post_sample, rows, start, wired_settings

PARTNERS = ["minato-shoji", "tokai-logistics"]
SATO, SUZUKI = "hanako.sato@tokai-logistics.example.jp", "ichiro.suzuki@minato-shoji.example.jp"
ON_CALL = "oncall@herald.example.com"
ACK_LINK = re.compile(r"https://herald\.example\.com(/ack/[A-Za-z0-9._\-]+)")
SECOND = 1 / 60


def escalating(base: Settings, *waits: float, **escalation: Any) -> Settings:
    """The default policy (tier 1 by SMS and email, tier 2 by email and SMS) and the default three
    steps, taken `waits` seconds after publication; one on-call operator."""
    plan = zip(waits or (0.6, 1.2, 1.8), ("reminder", "tier2", "operators"), strict=True)
    steps = [EscalationStep(after_minutes=seconds * SECOND, action=action) for seconds, action in plan]  # type: ignore[arg-type]
    values = {"poll_interval": 0.05, "steps": {"critical": steps}, **escalation}
    return base.model_copy(
        update={
            "escalation": base.escalation.model_copy(update=values),
            "on_call": [OnCallContact(name="当番", email=ON_CALL, language="ja", channels=["email"])],
        }
    )


async def publish_critical(client: Any, partners: list[str] = PARTNERS, **incident: Any) -> int:
    notice = {**SAMPLE["notice"], "audience": {"partners": partners}}
    return (await post_sample(client, notice=notice, **incident))["notice_id"]


async def escalation_rows(client: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        query = select(escalations).order_by(escalations.c.step, escalations.c.partner_id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def states(client: Any) -> dict[tuple[str, int], str]:
    return {(r["partner_id"], r["step"]): r["state"] for r in await escalation_rows(client)}


async def audited(client: Any, action: str) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        query = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def step(client: Any, number: int, partner: str | None = None) -> list[dict[str, Any]]:
    conditions = [deliveries.c.escalation_step == number]
    if partner is not None:
        conditions.append(deliveries.c.partner_id == partner)
    return await rows(client, *conditions)


async def settled(client: Any) -> bool:
    found = await rows(client)
    return bool(found) and all(r["status"] == "sent" for r in found)


async def test_an_unacknowledged_critical_notice_is_reminded_then_sent_to_tier_2_then_to_operators(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, escalating(wired_settings(db_url, smtp_sink, twilio_fake)))
    notice_id = await publish_critical(client)
    first = await step(client, 0)
    assert {(r["address"], r["channel"]) for r in first if r["tier"] == 1} >= {(SATO, "email"), (SUZUKI, "email")}

    await wait_until(lambda: _all_done(client, "fired"), timeout=20)
    await wait_until(lambda: settled(client), timeout=30)

    reminders = await step(client, 1)
    assert {r["tier"] for r in reminders} == {1} and {r["partner_id"] for r in reminders} == set(PARTNERS)
    # The default policy used both channels already: the reminder goes by SMS again.
    assert {r["channel"] for r in reminders} == {"sms"}
    bodies = [r["Body"] for r in twilio_fake.requests if r["To"] in {d["address"] for d in reminders}]
    assert bodies and all("【再送】" in body for body in bodies[-len(reminders) :]), bodies
    second = await step(client, 2)
    assert {r["tier"] for r in second} == {2} and {r["partner_id"] for r in second} == set(PARTNERS)
    tier2_mail = [m.message for m in smtp_sink.messages if m.message["Message-ID"] in {r["message_id"] for r in second}]
    assert tier2_mail and all(str(m["Subject"]).startswith("【再送】") for m in tier2_mail)
    assert "再送です" in tier2_mail[0].get_body(("plain",)).get_content()

    [told] = await rows(client, deliveries.c.partner_id == OPERATORS)
    assert told["address"] == ON_CALL and told["escalation_step"] == 0
    operator_mail = next(m.message for m in smtp_sink.messages if m.message["To"] == ON_CALL)
    assert "受領確認のない取引先" in str(operator_mail["Subject"])
    text = operator_mail.get_body(("plain",)).get_content()
    assert "東海ロジスティクス株式会社" in text and "株式会社みなと商事" in text

    done = await escalation_rows(client)
    assert [(r["step"], r["action"]) for r in done] == [(1, "reminder")] * 2 + [(2, "tier2")] * 2 + [(3, "operators")]
    by_step = {r["step"]: r["done_at"] for r in done}
    assert by_step[1] <= by_step[2] <= by_step[3]
    fired = await audited(client, "escalation.fired")
    assert [a["detail"]["step"] for a in fired] == [1, 1, 2, 2, 3]
    assert all(a["detail"]["notice_id"] == notice_id for a in fired)

    report = await (await client.get(f"/v1/incidents/{told['incident_id']}/report", headers=auth("operator"))).json()
    entry = report["notices"][0]
    assert [(e["step"], e["action"], e["state"]) for e in entry["escalations"]][-1] == (3, "operators", "fired")
    assert [m["address"] for m in report["operator_messages"]] == [ON_CALL]
    assert report["totals"]["deliveries"] == len(await rows(client)) - 1, "operator messages are not partner figures"


async def test_an_acknowledgement_stops_the_partners_remaining_steps_and_a_link_scan_does_not(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = escalating(wired_settings(sqlite_url, smtp_sink, twilio_fake), 3.0, 3.5, 4.0)
    client = await start(aiohttp_client, settings)
    await publish_critical(client)
    sato_link = ACK_LINK.search(await _plain_mail_to(smtp_sink, SATO)).group(1)
    suzuki_link = ACK_LINK.search(await _plain_mail_to(smtp_sink, SUZUKI)).group(1)

    assert (await client.get(suzuki_link)).status == 200  # a scanner: no acknowledgement
    assert (await client.post(sato_link)).status == 200  # Sato presses the button

    await wait_until(lambda: _state_is(client, (OPERATORS, 3), "fired"), timeout=20)
    found = await states(client)
    assert {found["tokai-logistics", n] for n in (1, 2)} == {"cancelled"}
    assert {found["minato-shoji", n] for n in (1, 2)} == {"fired"}
    assert not await step(client, 1, "tokai-logistics") and not await step(client, 2, "tokai-logistics")
    told = [e for e in await escalation_rows(client) if e["partner_id"] == OPERATORS]
    assert told[0]["detail"]["partners"] == ["minato-shoji"]


async def test_when_every_partner_acknowledged_the_operators_are_not_bothered(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = escalating(wired_settings(sqlite_url, smtp_sink, twilio_fake), 2.0, 2.5, 3.0)
    client = await start(aiohttp_client, settings)
    await publish_critical(client, ["tokai-logistics"])
    sato_link = ACK_LINK.search(await _plain_mail_to(smtp_sink, SATO)).group(1)
    assert (await client.post(sato_link)).status == 200

    await wait_until(lambda: _state_is(client, (OPERATORS, 3), "cancelled"), timeout=20)
    assert not await rows(client, deliveries.c.partner_id == OPERATORS)
    assert not await rows(client, deliveries.c.escalation_step > 0)


async def test_scheduled_steps_survive_a_restart(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    wired = wired_settings(sqlite_url, smtp_sink, twilio_fake)
    before = await start(aiohttp_client, escalating(wired, 0.6, 0.7, 0.8, poll_interval=3600))
    await publish_critical(before, ["tokai-logistics"])
    await before.close()  # its scheduler scanned once, at start, before the notice existed
    assert set((await _states_in(before.app[appkeys.SETTINGS])).values()) == {"scheduled"}

    after = await aiohttp_client(_app(escalating(wired, 0.6, 0.7, 0.8)))

    await wait_until(lambda: _state_is(after, (OPERATORS, 3), "fired"), timeout=20)
    assert {r["channel"] for r in await step(after, 1, "tokai-logistics")} == {"sms"}


async def test_two_processes_never_take_the_same_step(aiohttp_client: Any, db_url: str) -> None:
    settings = escalating(make_settings(db_url), 3600, 3600, 3600, poll_interval=3600)
    first = await start(aiohttp_client, settings)
    second = await aiohttp_client(_app(settings))
    await publish_critical(first)
    later = max(r["due_at"] for r in await escalation_rows(first)) + 1

    stores = (first.app[appkeys.STORE], second.app[appkeys.STORE])

    results = await asyncio.gather(*(fire_due(store, settings, now=later) for store in stores))
    rescan = await asyncio.gather(*(fire_due(store, settings, now=later) for store in stores))

    # PostgreSQL: SKIP LOCKED. SQLite: one writer at a time, the other waits and then finds nothing due.
    escalated = await rows(first, deliveries.c.escalation_step > 0)
    operators = await rows(first, deliveries.c.partner_id == OPERATORS)
    assert sum(results) == len(escalated) + len(operators) > 0 and rescan == [0, 0]
    assert set((await states(first)).values()) == {"fired"}
    assert len(await audited(first, "escalation.fired")) == 2 * len(PARTNERS) + 1


async def test_minor_notices_and_resolved_notices_are_not_chased(aiohttp_client: Any, sqlite_url: str) -> None:
    settings = escalating(make_settings(sqlite_url))
    client = await start(aiohttp_client, settings)

    await publish_critical(client, severity="minor")

    assert not await escalation_rows(client)
    assert steps_for(settings, {"kind": "resolved", "severity": "critical"}) == []
    assert [s.action for s in steps_for(settings, {"kind": "initial", "severity": "critical"})] == [
        "reminder",
        "tier2",
        "operators",
    ]


async def _all_done(client: Any, state: str) -> bool:
    found = await states(client)
    return len(found) == 2 * len(PARTNERS) + 1 and set(found.values()) == {state}


async def _state_is(client: Any, key: tuple[str, int], state: str) -> bool:
    return (await states(client)).get(key) == state


async def _states_in(settings: Settings) -> dict[tuple[str, int], str]:
    from service.store import Store

    store = Store(settings.database.url)
    try:
        async with store.read() as conn:
            found = (await conn.execute(select(escalations))).mappings()
            return {(r["partner_id"], r["step"]): r["state"] for r in found}
    finally:
        await store.close()


async def _plain_mail_to(smtp: SmtpSink, address: str) -> str:
    def arrived() -> Any:
        return next((m.message for m in smtp.messages if m.message["To"].addresses[0].addr_spec == address), None)

    return (await wait_until(arrived, timeout=30)).get_body(("plain",)).get_content()


def _app(settings: Settings) -> Any:
    from service.app import create_app

    return create_app(settings)
