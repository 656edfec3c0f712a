"""Messages to our own on-call operators (`[[on_call]]`): promise reminders, unacknowledged notices.

They travel like partner notices, so they are retried, logged and counted the same way: each is an
internal notice (state `internal`, not part of any incident's sequence of versions) with one
delivery per operator and channel. Their deliveries are told apart from partners' by
`partner_id = OPERATORS`, purpose `operator` and tier 0, with the operator's position in `[[on_call]]` as a negative
contact id, so they never collide with a directory contact.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import compose
from service.notices import OPERATOR_KINDS
from service.settings import OnCallContact, Settings
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store.records import audit

OPERATORS = "_operators"  # not a valid partner id (ids are slugs), so never a partner's
OPERATOR_TIER = 0
PURPOSE = "operator"  # deliveries.purpose of every message to our operators
ADDRESS = {"email": "email", "sms": "phone"}


def contact_id(index: int) -> int:
    return -(index + 1)


async def notify_operators(
    conn: AsyncConnection,
    settings: Settings,
    kind: str,
    fields: dict[str, Any],
    incident: dict[str, Any] | None,
    now: float | None = None,
) -> int:
    """Write one internal notice and its deliveries to every on-call operator; returns the deliveries."""
    assert kind in OPERATOR_KINDS, kind  # noqa: S101 - a programming error, not input
    now = time.time() if now is None else now
    notice = {
        "incident_id": None,
        "kind": kind,
        "version": 1,
        "corrects_id": None,
        "state": "internal",
        "severity": (incident or {}).get("severity") or "major",
        "status": (incident or {}).get("status"),
        "fields": {"incident_id": (incident or {}).get("id"), "title": (incident or {}).get("title"), **fields},
        "audience": {"operators": True},
        "next_update_at": None,
        "created_by": None,
        "published_at": now,
        "drill": (incident or {}).get("drill"),
    }
    notice["id"] = await incident_store.insert_notice(conn, notice)
    rows = [
        _delivery_row(settings, notice, incident, index, operator, channel, now)
        for index, operator in enumerate(settings.on_call)
        for channel in operator.channels
        if getattr(operator, ADDRESS[channel])
    ]
    await delivery_store.insert_deliveries(conn, rows)
    detail = {"deliveries": len(rows), **_plain(fields)}
    await audit(conn, f"operators.{kind.removeprefix('operator_')}", "notice", notice["id"], None, detail)
    return len(rows)


def _delivery_row(
    settings: Settings,
    notice: dict[str, Any],
    incident: dict[str, Any] | None,
    index: int,
    operator: OnCallContact,
    channel: str,
    now: float,
) -> dict[str, Any]:
    return {
        "notice_id": notice["id"],
        "incident_id": (incident or {}).get("id"),
        "partner_id": OPERATORS,
        "contact_id": contact_id(index),
        "tier": OPERATOR_TIER,
        "channel": channel,
        "address": getattr(operator, ADDRESS[channel]),
        "language": operator.language,
        "priority": 0,  # an operator reminder is about a promise already at risk
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "message_id": compose.message_id(settings, notice["id"], contact_id(index), channel),
        "escalation_step": 0,
        "drill": (incident or {}).get("drill"),
        "purpose": PURPOSE,  # never a partner delivery figure
        "created_at": now,
        "updated_at": now,
    }


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if isinstance(v, (int, float, str, list)) or v is None}
