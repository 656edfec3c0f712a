"""Escalation: while a partner has not acknowledged a notice, Herald takes the severity's steps.

At publish time every partner with a planned tier-1 delivery gets one Escalation row per step of
`[escalation.steps] <severity>`, due `after_minutes` after publication; an `operators` step is one
row per notice (partner `OPERATORS`). The rows live in the database, so a restart forgets nothing,
and the scheduler claims due rows with SKIP LOCKED, so two processes never take the same step.

- `reminder`: the notice again to the partner's tier-1 contacts, worded as a reminder
  (【再送】/[Reminder]), on a channel each has not had it on yet, else by SMS again;
- `tier2`: the same to the partner's tier-2 contacts;
- `operators`: our on-call operators get the list of partners still unacknowledged.

An acknowledgement by any of the partner's tier-1 or tier-2 contacts cancels the partner's steps
still scheduled; the operators step is cancelled when, at its time, every partner has acknowledged.
Each step's deliveries carry its number (`escalation_step`) and their own stable Message-ID.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys, policy
from service.operators import OPERATORS, notify_operators
from service.periodic import Periodic
from service.settings import EscalationStep, Settings
from service.store import Store
from service.store import audience as audience_store
from service.store import deliveries as delivery_store
from service.store import escalations as escalation_store
from service.store import incidents as incident_store
from service.store.models import Contact, Partner
from service.store.receipts import acknowledged_partners
from service.store.records import audit

log = logging.getLogger("herald.escalation")

ACKNOWLEDGING_TIERS = (1, 2)
TIER_OF_ACTION = {"reminder": 1, "tier2": 2}


def steps_for(settings: Settings, notice: dict[str, Any]) -> list[EscalationStep]:
    """The steps taken while this notice is unacknowledged; none when it is never chased."""
    if notice["kind"] in settings.escalation.exempt_kinds:
        return []
    return settings.escalation.steps_for(notice["severity"])


async def schedule_for_notice(
    conn: AsyncConnection,
    settings: Settings,
    notice: dict[str, Any],
    planned: Sequence[dict[str, Any]],
    now: float,
) -> int:
    """Schedule the steps for each partner with a planned tier-1 delivery (in the publish
    transaction; called once per page of the plan). Returns the rows scheduled."""
    steps = steps_for(settings, notice)
    partners = sorted({row["partner_id"] for row in planned if row["tier"] == 1})
    if not steps or not partners:
        return 0
    rows = []
    for number, step in enumerate(steps, start=1):
        targets = partners
        if step.action == "operators":
            targets = [] if await escalation_store.exists(conn, notice["id"], OPERATORS) else [OPERATORS]
        rows += [
            {
                "notice_id": notice["id"],
                "partner_id": partner_id,
                "step": number,
                "action": step.action,
                "due_at": now + step.after_minutes * 60.0,
                "state": "scheduled",
                "created_at": now,
            }
            for partner_id in targets
        ]
    await escalation_store.schedule(conn, rows)
    return len(rows)


async def cancel_on_acknowledgement(conn: AsyncConnection, delivery: dict[str, Any], now: float) -> list[int]:
    """The partner's acknowledgement stops its steps still scheduled for that notice."""
    if delivery["tier"] not in ACKNOWLEDGING_TIERS:
        return []
    detail = {"acknowledged_by_delivery": delivery["id"], "contact_id": delivery["contact_id"]}
    notice_id, partner_id = delivery["notice_id"], delivery["partner_id"]
    cancelled = await escalation_store.cancel_scheduled(conn, notice_id, partner_id, detail, now)
    for escalation_id in cancelled:
        await audit(
            conn,
            "escalation.cancelled",
            "escalation",
            escalation_id,
            None,
            {"notice_id": notice_id, "partner_id": partner_id, **detail},
        )
        log.info(
            "escalation %s cancelled: notice %s acknowledged by delivery %s", escalation_id, notice_id, delivery["id"]
        )
    return cancelled


async def fire_due(store: Store, settings: Settings, now: float | None = None) -> int:
    """Claim due escalation steps and write their deliveries, all in one transaction.

    Returns the number of deliveries written; the caller wakes the dispatcher when it is not 0.
    """
    now = time.time() if now is None else now
    written = 0
    async with store.begin() as conn:
        for escalation in await escalation_store.claim_due(conn, settings.escalation.batch_size, now):
            written += await _fire(conn, settings, escalation, now)
    return written


async def _fire(conn: AsyncConnection, settings: Settings, escalation: dict[str, Any], now: float) -> int:
    notice = await incident_store.get_notice(conn, escalation["notice_id"])
    if notice is None:
        await _finish(conn, escalation, "cancelled", {"reason": "the notice no longer exists"}, now)
        return 0
    acknowledged = await acknowledged_partners(conn, notice["id"], ACKNOWLEDGING_TIERS)
    if escalation["partner_id"] == OPERATORS:
        return await _tell_operators(conn, settings, escalation, notice, acknowledged, now)
    if escalation["partner_id"] in acknowledged:
        await _finish(conn, escalation, "cancelled", {"reason": "acknowledged before the step was taken"}, now)
        return 0
    rows = await _step_deliveries(conn, settings, escalation, notice, now)
    await delivery_store.insert_deliveries(conn, rows)
    detail = {
        "deliveries": len(rows),
        "contacts": sorted({row["contact_id"] for row in rows}),
        "channels": sorted({row["channel"] for row in rows}),
    }
    await _finish(conn, escalation, "fired", detail, now)
    return len(rows)


async def _tell_operators(
    conn: AsyncConnection,
    settings: Settings,
    escalation: dict[str, Any],
    notice: dict[str, Any],
    acknowledged: set[str],
    now: float,
) -> int:
    chased = await escalation_store.partners_chased(conn, notice["id"])
    waiting = [partner for partner in chased if partner["id"] not in acknowledged]
    if not waiting:
        await _finish(conn, escalation, "cancelled", {"reason": "every partner acknowledged"}, now)
        return 0
    incident = None
    if notice["incident_id"] is not None:
        incident = await incident_store.get_incident(conn, notice["incident_id"])
    fields = {
        "notice_id": notice["id"],
        "version": notice["version"],
        "partners": waiting,
        "minutes_waited": max(1, math.floor((now - (notice["published_at"] or now)) / 60)),
    }
    written = await notify_operators(conn, settings, "operator_unacknowledged", fields, incident, now)
    detail = {"deliveries": written, "partners": [partner["id"] for partner in waiting]}
    await _finish(conn, escalation, "fired", detail, now)
    return written


async def _finish(
    conn: AsyncConnection, escalation: dict[str, Any], state: str, detail: dict[str, Any], now: float
) -> None:
    await escalation_store.finish(conn, escalation["id"], state, detail, now)
    notice_id, partner_id = escalation["notice_id"], escalation["partner_id"]
    summary = {"notice_id": notice_id, "partner_id": partner_id, "step": escalation["step"], **detail}
    await audit(conn, f"escalation.{state}", "escalation", escalation["id"], None, summary)
    log.info("escalation %s %s: notice %s, partner %s, %s", escalation["id"], state, notice_id, partner_id, detail)


async def _step_deliveries(
    conn: AsyncConnection, settings: Settings, escalation: dict[str, Any], notice: dict[str, Any], now: float
) -> list[dict[str, Any]]:
    found = await audience_store.partners_with_contacts(conn, [escalation["partner_id"]])
    if not found:
        return []
    partner = found[0]
    used = await escalation_store.channels_used(conn, notice["id"], partner.id)
    tier = TIER_OF_ACTION.get(escalation["action"] or "reminder", 1)
    rows = []
    for contact in partner.contacts:
        if contact.tier != tier:
            continue
        channel = next_channel(settings, partner, contact, notice["severity"], used.get(contact.id, set()))
        if channel is not None:
            rows.append(policy.delivery_row(settings, notice, partner, contact, channel, now, escalation["step"]))
    return rows


def next_channel(settings: Settings, partner: Partner, contact: Contact, severity: str, used: set[str]) -> str | None:
    """The contact's most preferred reachable channel this notice has not gone out on yet; when
    every one has, SMS again (a phone rings where a second email would not), else email again.

    Preferences are the contact's own list, else the policy's channels for the tier; escalation
    may go beyond the severity's policy, which is the point of escalating.
    """
    preferred = contact.channels or policy.channels_for(settings, partner, severity, contact.tier)
    reachable = [c for c in [*preferred, "sms", "email"] if contact.address(c)]
    fresh = [c for c in reachable if c not in used]
    return next(iter(fresh or reachable), None)


class EscalationScheduler:
    """Takes due escalation steps once at start, then every `poll_interval` seconds."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings: Settings = app[appkeys.SETTINGS]
        self._periodic = Periodic("escalation-scheduler", self.run_once, self.settings.escalation.poll_interval)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> int:
        written = await fire_due(self.app[appkeys.STORE], self.settings)
        if written:
            self.app[appkeys.DISPATCHER_WAKE]()
        return written


async def escalation_ctx(app: web.Application) -> AsyncIterator[None]:
    scheduler = EscalationScheduler(app)
    app[appkeys.ESCALATION_SCHEDULER] = scheduler
    scheduler.start()
    yield
    await scheduler.stop()
