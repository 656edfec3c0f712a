"""Suppressed addresses: where Herald must not send again until an admin clears the entry."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import suppressions


async def active(conn: AsyncConnection) -> frozenset[tuple[str, str]]:
    """Every (channel, address) currently suppressed: read once per plan, the list stays short."""
    query = select(suppressions.c.channel, suppressions.c.address).where(suppressions.c.cleared_at.is_(None))
    return frozenset((channel, address) for channel, address in await conn.execute(query))


async def find_active(conn: AsyncConnection, channel: str, address: str) -> dict[str, Any] | None:
    query = (
        select(suppressions)
        .where(suppressions.c.channel == channel, suppressions.c.address == address)
        .where(suppressions.c.cleared_at.is_(None))
        .order_by(suppressions.c.id)
        .limit(1)
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def suppress(
    conn: AsyncConnection,
    channel: str,
    address: str,
    reason: str,
    code: str | None,
    source: str,
    delivery_id: int | None,
    now: float | None = None,
) -> int | None:
    """Suppress the address; None when it was suppressed already (the first reason stands)."""
    if await find_active(conn, channel, address) is not None:
        return None
    result = await conn.execute(
        insert(suppressions).values(
            channel=channel,
            address=address,
            reason=reason,
            code=code,
            source=source,
            delivery_id=delivery_id,
            created_at=time.time() if now is None else now,
        )
    )
    return inserted_id(result)


async def list_suppressions(conn: AsyncConnection, include_cleared: bool = False) -> list[dict[str, Any]]:
    query = select(suppressions).order_by(suppressions.c.id.desc())
    if not include_cleared:
        query = query.where(suppressions.c.cleared_at.is_(None))
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_suppression(conn: AsyncConnection, suppression_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(suppressions).where(suppressions.c.id == suppression_id))).mappings().first()
    return dict(row) if row else None


async def clear(conn: AsyncConnection, suppression_id: int, actor: str | None, now: float | None = None) -> bool:
    result = await conn.execute(
        update(suppressions)
        .where(suppressions.c.id == suppression_id, suppressions.c.cleared_at.is_(None))
        .values(cleared_at=time.time() if now is None else now, cleared_by=actor)
    )
    return bool(result.rowcount)
