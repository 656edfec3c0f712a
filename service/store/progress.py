"""A notice's delivery as the incident room watches it: progress by tier × channel, who has not
acknowledged, and what failed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import deliveries, partners

FAILED = ("failed", "dead", "undelivered", "bounced")
WAITING = ("pending", "sending")


def _count(condition: Any) -> Any:
    return func.sum(cast(case((condition, 1), else_=0), Integer))


async def progress(conn: AsyncConnection, notice_id: int) -> list[dict[str, Any]]:
    """Per (tier, channel): planned, waiting, sent, delivered, failed, acknowledged."""
    c = deliveries.c
    query = (
        select(
            c.tier,
            c.channel,
            func.count().label("planned"),
            _count(c.status.in_(WAITING)).label("waiting"),
            _count(c.sent_at.is_not(None)).label("sent"),
            _count(c.status.in_(("delivered", "acknowledged"))).label("delivered"),
            _count(c.status.in_(FAILED)).label("failed"),
            _count(c.status == "acknowledged").label("acknowledged"),
        )
        .where(c.notice_id == notice_id)
        .group_by(c.tier, c.channel)
        .order_by(c.tier, c.channel)
    )
    return [
        {k: int(v or 0) if k != "channel" else v for k, v in r.items()} for r in (await conn.execute(query)).mappings()
    ]


async def unacknowledged_tier1(
    conn: AsyncConnection, notice_id: int, limit: int = 100
) -> tuple[int, list[dict[str, Any]]]:
    """Partners whose tier-1 contacts got the notice and none has acknowledged it: (count, first few)."""
    c = deliveries.c
    acknowledged = func.max(case((c.status == "acknowledged", 1), else_=0))
    grouped = (
        select(c.partner_id, func.min(c.sent_at).label("first_sent_at"))
        .where(c.notice_id == notice_id, c.tier == 1)
        .group_by(c.partner_id)
        .having(acknowledged == 0)
        .subquery()
    )
    total = int(await conn.scalar(select(func.count()).select_from(grouped)) or 0)
    query = (
        select(grouped.c.partner_id, partners.c.name, grouped.c.first_sent_at)
        .select_from(grouped.outerjoin(partners, partners.c.id == grouped.c.partner_id))
        .order_by(grouped.c.partner_id)
        .limit(limit)
    )
    return total, [dict(r) for r in (await conn.execute(query)).mappings()]


async def failures(conn: AsyncConnection, incident_id: int, limit: int = 50) -> list[dict[str, Any]]:
    c = deliveries.c
    query = (
        select(deliveries, partners.c.name.label("partner_name"))
        .select_from(deliveries.outerjoin(partners, partners.c.id == c.partner_id))
        .where(and_(c.incident_id == incident_id, c.status.in_(FAILED)))
        .order_by(c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
