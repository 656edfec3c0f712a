"""The escalation schedule: one row per (notice, partner, step), durable across restarts.

States: `scheduled` → `fired` (the scheduler wrote the step's deliveries) or `cancelled`
(the partner acknowledged first). Claiming locks due rows with SKIP LOCKED, like
`deliveries.claim_due`, so two processes never fire the same escalation.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import deliveries, escalations, partners


async def schedule(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(escalations), list(rows))


async def claim_due(conn: AsyncConnection, limit: int, now: float | None = None) -> list[dict[str, Any]]:
    """Lock up to `limit` due escalations for this transaction; the caller marks each one done."""
    now = time.time() if now is None else now
    query = (
        select(escalations)
        .where(escalations.c.state == "scheduled", escalations.c.due_at <= now)
        .order_by(escalations.c.due_at, escalations.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def finish(
    conn: AsyncConnection, escalation_id: int, state: str, detail: dict[str, Any], now: float | None = None
) -> None:
    await conn.execute(
        update(escalations)
        .where(escalations.c.id == escalation_id, escalations.c.state == "scheduled")
        .values(state=state, detail=detail, done_at=time.time() if now is None else now)
    )


async def cancel_scheduled(
    conn: AsyncConnection, notice_id: int, partner_id: str, detail: dict[str, Any], now: float | None = None
) -> list[int]:
    """Cancel the partner's pending escalations of a notice; returns the ids cancelled."""
    result = await conn.execute(
        update(escalations)
        .where(
            escalations.c.notice_id == notice_id,
            escalations.c.partner_id == partner_id,
            escalations.c.state == "scheduled",
        )
        .values(state="cancelled", detail=detail, done_at=time.time() if now is None else now)
        .returning(escalations.c.id)
    )
    return [int(r[0]) for r in result]


async def exists(conn: AsyncConnection, notice_id: int, partner_id: str) -> bool:
    query = select(escalations.c.id).where(escalations.c.notice_id == notice_id, escalations.c.partner_id == partner_id)
    return (await conn.execute(query.limit(1))).first() is not None


async def partners_chased(conn: AsyncConnection, notice_id: int) -> list[dict[str, str]]:
    """The partners escalation steps were scheduled for on this notice, with their names, by id."""
    query = (
        select(partners.c.id, partners.c.name)
        .where(partners.c.id.in_(select(escalations.c.partner_id).where(escalations.c.notice_id == notice_id)))
        .order_by(partners.c.id)
    )
    return [{"id": row.id, "name": row.name} for row in await conn.execute(query)]


async def of_notices(conn: AsyncConnection, notice_ids: Sequence[int]) -> list[dict[str, Any]]:
    if not notice_ids:
        return []
    query = (
        select(escalations)
        .where(escalations.c.notice_id.in_(list(notice_ids)))
        .order_by(escalations.c.notice_id, escalations.c.step, escalations.c.partner_id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def channels_used(conn: AsyncConnection, notice_id: int, partner_id: str) -> dict[int, set[str]]:
    """Channels each contact of the partner was already sent this notice on (any step, any outcome)."""
    query = select(deliveries.c.contact_id, deliveries.c.channel).where(
        deliveries.c.notice_id == notice_id, deliveries.c.partner_id == partner_id, deliveries.c.purpose == "partner"
    )
    used: dict[int, set[str]] = defaultdict(set)
    for contact_id, channel in await conn.execute(query):
        used[int(contact_id)].add(channel)
    return used
