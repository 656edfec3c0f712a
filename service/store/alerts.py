"""Alert groups: the dedup and damping state of monitoring sources (one row per group or alert)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import alert_groups, inbound_events, incidents

_GROUP_WITH_INCIDENT = select(
    alert_groups,
    incidents.c.status.label("incident_status"),
    incidents.c.severity.label("incident_severity"),
    incidents.c.components.label("incident_components"),
).join(incidents, incidents.c.id == alert_groups.c.incident_id)


async def get_group(conn: AsyncConnection, key: str, for_update: bool = True) -> dict[str, Any] | None:
    """The group and, alongside, the status, severity and components of its current incident."""
    query = _GROUP_WITH_INCIDENT.where(alert_groups.c.key == key)
    if for_update:
        query = query.with_for_update(of=alert_groups)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def get_groups(conn: AsyncConnection, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Several groups at once (no lock): the read behind a batch's duplicate check."""
    query = _GROUP_WITH_INCIDENT.where(alert_groups.c.key.in_(sorted(set(keys))))
    return {row["key"]: dict(row) for row in (await conn.execute(query)).mappings()}


async def insert_group(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(alert_groups).values(updated_at=time.time(), **values))


async def update_group(conn: AsyncConnection, key: str, values: dict[str, Any]) -> None:
    await conn.execute(update(alert_groups).where(alert_groups.c.key == key).values(updated_at=time.time(), **values))


async def due_group_keys(conn: AsyncConnection, now: float, limit: int = 100) -> list[str]:
    """Groups whose held update (a damped resolve) is due, oldest first."""
    query = (
        select(alert_groups.c.key)
        .where(alert_groups.c.pending_due_at.is_not(None), alert_groups.c.pending_due_at <= now)
        .order_by(alert_groups.c.pending_due_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def insert_inbound_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """A webhook batch's raw bodies in one statement (records.record_inbound, batched)."""
    if rows:
        await conn.execute(insert(inbound_events), rows)
