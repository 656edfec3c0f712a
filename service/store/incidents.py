"""Incidents and their notices."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.settings import SEVERITIES
from service.store.engine import inserted_id
from service.store.models import Incident, Notice
from service.store.tables import deliveries, incidents, notices


async def insert_incident(conn: AsyncConnection, values: dict[str, Any]) -> int:
    now = time.time()
    result = await conn.execute(insert(incidents).values({"created_at": now, "updated_at": now, **values}))
    return inserted_id(result)


async def update_incident(conn: AsyncConnection, incident_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(incidents).where(incidents.c.id == incident_id).values(updated_at=time.time(), **values))


async def get_incident(conn: AsyncConnection, incident_id: int, for_update: bool = False) -> dict[str, Any] | None:
    query = select(incidents).where(incidents.c.id == incident_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def read_incident(conn: AsyncConnection, incident_id: int) -> Incident | None:
    """The incident as a typed record (what the planner and the dispatcher work on)."""
    row = (await conn.execute(select(incidents).where(incidents.c.id == incident_id))).mappings().first()
    return Incident.from_row(row) if row else None


async def list_incidents(
    conn: AsyncConnection,
    *,
    status: Sequence[str] = (),
    severity: Sequence[str] = (),
    component: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    limit: int = 50,
    drill: bool = False,
) -> list[dict[str, Any]]:
    """Newest first; `before_id` is the cursor (the last id of the previous page). Real incidents,
    or with `drill` the drills' ones: the two never mix."""
    query = select(incidents).order_by(incidents.c.id.desc())
    query = query.where(incidents.c.drill.is_not(None) if drill else incidents.c.drill.is_(None))
    if status:
        query = query.where(incidents.c.status.in_(status))
    if severity:
        query = query.where(incidents.c.severity.in_(severity))
    if since is not None:
        query = query.where(incidents.c.created_at >= since)
    if until is not None:
        query = query.where(incidents.c.created_at < until)
    if before_id is not None:
        query = query.where(incidents.c.id < before_id)
    rows = [dict(r) for r in (await conn.execute(query.limit(limit if component is None else None))).mappings()]
    if component is not None:  # JSON containment differs by backend; filter the small page here
        rows = [r for r in rows if component in (r["components"] or [])][:limit]
    return rows


async def next_notice_version(conn: AsyncConnection, incident_id: int | None) -> int:
    if incident_id is None:
        return 1
    current = await conn.scalar(
        select(func.coalesce(func.max(notices.c.version), 0)).where(notices.c.incident_id == incident_id)
    )
    return int(current or 0) + 1


async def insert_notice(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(notices).values(created_at=time.time(), **values))
    return inserted_id(result)


async def update_notice(conn: AsyncConnection, notice_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(notices).where(notices.c.id == notice_id).values(**values))


async def get_notice(conn: AsyncConnection, notice_id: int, for_update: bool = False) -> dict[str, Any] | None:
    query = select(notices).where(notices.c.id == notice_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def read_notice(conn: AsyncConnection, notice_id: int) -> Notice | None:
    """The notice as a typed record (what the planner, the dispatcher and the composer work on)."""
    row = (await conn.execute(select(notices).where(notices.c.id == notice_id))).mappings().first()
    return Notice.from_row(row) if row else None


async def notices_of(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    query = select(notices).where(notices.c.incident_id == incident_id).order_by(notices.c.version)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def has_published_notice(conn: AsyncConnection, incident_id: int) -> bool:
    """Whether partners have heard of the incident (a later notice should then follow)."""
    query = select(exists().where(and_(notices.c.incident_id == incident_id, notices.c.state == "published")))
    return bool(await conn.scalar(query))


async def list_drafts(conn: AsyncConnection, limit: int = 100) -> list[dict[str, Any]]:
    query = select(notices).where(notices.c.state == "draft").order_by(notices.c.id).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def delivery_counts_by_notice(conn: AsyncConnection, notice_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    if not notice_ids:
        return {}
    query = (
        select(deliveries.c.notice_id, deliveries.c.status, func.count())
        .where(deliveries.c.notice_id.in_(notice_ids), deliveries.c.purpose == "partner")
        .group_by(deliveries.c.notice_id, deliveries.c.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for notice_id, status, count in await conn.execute(query):
        counts.setdefault(int(notice_id), {})[status] = int(count)
    return counts


async def open_incidents(conn: AsyncConnection, limit: int = 200) -> list[dict[str, Any]]:
    """Incidents not resolved yet, most severe first, then the newest."""
    severity_rank = case({s: i for i, s in enumerate(SEVERITIES)}, value=incidents.c.severity, else_=9)
    query = (
        select(incidents)
        .where(incidents.c.status != "resolved")
        .order_by(severity_rank, incidents.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def claim_scheduled(conn: AsyncConnection, limit: int, now: float) -> list[dict[str, Any]]:
    """Lock up to `limit` scheduled notices whose time has come, for this transaction (SKIP LOCKED)."""
    query = (
        select(notices)
        .where(notices.c.state == "scheduled", notices.c.send_at <= now)
        .order_by(notices.c.send_at, notices.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def last_published(conn: AsyncConnection, incident_ids: Sequence[int]) -> dict[int, float]:
    """When partners last heard about each incident."""
    if not incident_ids:
        return {}
    query = (
        select(notices.c.incident_id, func.max(notices.c.published_at))
        .where(notices.c.incident_id.in_(list(incident_ids)), notices.c.state == "published")
        .group_by(notices.c.incident_id)
    )
    return {int(i): float(at) for i, at in await conn.execute(query) if at is not None}


async def list_scheduled(conn: AsyncConnection, limit: int = 500) -> list[dict[str, Any]]:
    query = select(notices).where(notices.c.state == "scheduled").order_by(notices.c.send_at, notices.c.id)
    return [dict(r) for r in (await conn.execute(query.limit(limit))).mappings()]


async def scheduled_followers(conn: AsyncConnection, notice_id: int) -> list[dict[str, Any]]:
    query = (
        select(notices)
        .where(notices.c.follows_id == notice_id, notices.c.state == "scheduled")
        .order_by(notices.c.id)
        .with_for_update()
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
