"""Promised next updates, one row per published notice that named one.

Open promises (`pending`, `due_soon`, `overdue`) carry `check_at`, the next time the checker must
look at them; claiming locks due rows with SKIP LOCKED, like `deliveries.claim_due`, so two
processes never remind twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import incidents, promises

OPEN = ("pending", "due_soon", "overdue")


async def insert_promise(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(promises).values(**values))
    return inserted_id(result)


async def open_of_incident(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    query = (
        select(promises)
        .where(promises.c.incident_id == incident_id, promises.c.state.in_(OPEN))
        .order_by(promises.c.id)
        .with_for_update()
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def open_of_notice(conn: AsyncConnection, notice_id: int) -> dict[str, Any] | None:
    query = select(promises).where(promises.c.notice_id == notice_id, promises.c.state.in_(OPEN)).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def of_incident(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    query = select(promises).where(promises.c.incident_id == incident_id).order_by(promises.c.id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def of_incidents(conn: AsyncConnection, incident_ids: Sequence[int]) -> list[dict[str, Any]]:
    if not incident_ids:
        return []
    query = select(promises).where(promises.c.incident_id.in_(list(incident_ids))).order_by(promises.c.id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def claim_due(conn: AsyncConnection, limit: int, now: float) -> list[dict[str, Any]]:
    """Lock up to `limit` open promises whose check time has come, for this transaction."""
    query = (
        select(promises)
        .where(promises.c.state.in_(OPEN), promises.c.check_at <= now)
        .order_by(promises.c.check_at, promises.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def update_promise(conn: AsyncConnection, promise_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(promises).where(promises.c.id == promise_id).values(**values))


async def count_overdue(conn: AsyncConnection, now: float, incident_ids: Sequence[int] | None = None) -> int:
    """Open promises whose time has passed (counted from the clock, not from the checker's last pass)."""
    real = select(incidents.c.id).where(incidents.c.drill.is_(None))
    query = select(func.count()).where(
        promises.c.state.in_(OPEN), promises.c.due_at < now, promises.c.incident_id.in_(real)
    )
    if incident_ids is not None:
        query = query.where(promises.c.incident_id.in_(list(incident_ids)))
    return int(await conn.scalar(query) or 0)
