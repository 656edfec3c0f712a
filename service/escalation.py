"""Escalation: when no tier-1 contact of a partner acknowledges a notice in time, reach further.

At publish time each partner whose tier-1 contacts are planned gets one Escalation row, due after
the severity's window (`[escalation] <severity>_minutes`). The row lives in the database, so a
restart does not forget it. An Acknowledgement from any tier-1 contact of that partner cancels
it. When it comes due, the scheduler sends the notice to every tier-1 contact on their next
preferred channel not used for this notice yet and, with `escalate_to_tier2`, to tier-2 contacts
the same way. The new deliveries carry `escalation_step=1` and their own stable Message-ID.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from service import planner
from service.periodic import Periodic
from service.settings import Settings
from service.store import Store
from service.store import audience as audience_store
from service.store import deliveries as delivery_store
from service.store import escalations as escalation_store
from service.store import incidents as incident_store
from service.store.receipts import tier1_acknowledged
from service.store.records import audit

log = logging.getLogger("herald.escalation")

STEP = 1


def window_for(settings: Settings, notice: dict[str, Any]) -> float | None:
    """Seconds to wait for a tier-1 acknowledgement of this notice; None when it is never chased."""
    if notice["kind"] in settings.escalation.exempt_kinds:
        return None
    return settings.escalation.window_seconds(notice["severity"])


async def schedule_for_notice(
    conn: AsyncConnection,
    settings: Settings,
    notice: dict[str, Any],
    planned: Sequence[dict[str, Any]],
    now: float,
) -> int:
    """Schedule one Escalation per partner with a planned tier-1 delivery (in the publish transaction)."""
    window = window_for(settings, notice)
    if window is None:
        return 0
    partners = sorted({row["partner_id"] for row in planned if row["tier"] == 1})
    await escalation_store.schedule(
        conn,
        [
            {
                "notice_id": notice["id"],
                "partner_id": partner_id,
                "step": STEP,
                "due_at": now + window,
                "state": "scheduled",
                "created_at": now,
            }
            for partner_id in partners
        ],
    )
    return len(partners)


async def cancel_on_acknowledgement(conn: AsyncConnection, delivery: dict[str, Any], now: float) -> list[int]:
    """A tier-1 Acknowledgement stops the partner's pending escalation of that notice."""
    if delivery["tier"] != 1:
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
    """Claim due escalations and write their deliveries, all in one transaction.

    Returns the number of deliveries written; the caller wakes the dispatcher when it is not 0.
    """
    now = time.time() if now is None else now
    written = 0
    async with store.begin() as conn:
        for escalation in await escalation_store.claim_due(conn, settings.escalation.batch_size, now):
            written += await _fire(conn, settings, escalation, now)
    return written


async def _fire(conn: AsyncConnection, settings: Settings, escalation: dict[str, Any], now: float) -> int:
    notice_id, partner_id = escalation["notice_id"], escalation["partner_id"]
    if await tier1_acknowledged(conn, notice_id, partner_id):
        await _cancel_late(conn, escalation, now)
        return 0
    rows = await _escalation_deliveries(conn, settings, escalation, now)
    await delivery_store.insert_deliveries(conn, rows)
    detail = {
        "deliveries": len(rows),
        "contacts": sorted({row["contact_id"] for row in rows}),
        "channels": sorted({row["channel"] for row in rows}),
    }
    await escalation_store.finish(conn, escalation["id"], "fired", detail, now)
    await audit(
        conn,
        "escalation.fired",
        "escalation",
        escalation["id"],
        None,
        {"notice_id": notice_id, "partner_id": partner_id, "step": escalation["step"], **detail},
    )
    log.info(
        "escalation %s fired: notice %s, partner %s, %d deliveries", escalation["id"], notice_id, partner_id, len(rows)
    )
    return len(rows)


async def _cancel_late(conn: AsyncConnection, escalation: dict[str, Any], now: float) -> None:
    detail = {"reason": "acknowledged before the escalation was claimed"}
    await escalation_store.finish(conn, escalation["id"], "cancelled", detail, now)
    await audit(
        conn,
        "escalation.cancelled",
        "escalation",
        escalation["id"],
        None,
        {"notice_id": escalation["notice_id"], "partner_id": escalation["partner_id"], **detail},
    )


async def _escalation_deliveries(
    conn: AsyncConnection, settings: Settings, escalation: dict[str, Any], now: float
) -> list[dict[str, Any]]:
    notice = await incident_store.get_notice(conn, escalation["notice_id"])
    found = await audience_store.partners_with_contacts(conn, [escalation["partner_id"]])
    if notice is None or not found:
        return []
    partner = found[0]
    used = await escalation_store.channels_used(conn, notice["id"], partner["id"])
    tiers = (1, 2) if settings.escalation.escalate_to_tier2 else (1,)
    rows = []
    for contact in partner["contacts"]:
        if contact["tier"] not in tiers:
            continue
        channel = next_channel(settings, partner, contact, notice["severity"], used.get(contact["id"], set()))
        if channel is not None:
            rows.append(planner.delivery_row(settings, notice, partner, contact, channel, now, escalation["step"]))
    return rows


def next_channel(
    settings: Settings, partner: dict[str, Any], contact: dict[str, Any], severity: str, used: set[str]
) -> str | None:
    """The contact's most preferred reachable channel this notice has not gone out on yet.

    Preferences are the contact's own list, else the policy's channels for the tier; escalation
    may go beyond the severity's policy, which is the point of escalating.
    """
    preferred = contact.get("channels") or planner.channels_for(settings, partner, severity, contact["tier"])
    for channel in preferred:
        if channel not in used and contact.get(planner.ADDRESS_FIELD.get(channel, channel)):
            return channel
    return None


class EscalationScheduler:
    """Fires due escalations once at start, then every `poll_interval` seconds."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings: Settings = app["settings"]
        self._periodic = Periodic("escalation-scheduler", self.run_once, self.settings.escalation.poll_interval)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> int:
        written = await fire_due(self.app["store"], self.settings)
        if written:
            self.app["dispatcher_wake"]()
        return written


async def escalation_ctx(app: web.Application) -> AsyncIterator[None]:
    scheduler = EscalationScheduler(app)
    app["escalation_scheduler"] = scheduler
    scheduler.start()
    yield
    await scheduler.stop()
