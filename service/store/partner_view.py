"""What one partner's page reads: its incidents, the notices it was sent, its contacts' change requests.

Every query is scoped by the partner id the signed link names; nothing here reads another
partner's rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import (
    acknowledgements,
    contact_change_requests,
    contacts,
    deliveries,
    incidents,
    notices,
    questions,
)

NEVER_SENT = ("skipped", "merged")


async def incidents_for(
    conn: AsyncConnection, partner_id: str, components: Sequence[str], since: float
) -> list[dict[str, Any]]:
    """Incidents the partner was told about, or that touch a service it subscribes to, open now or
    started since `since`; newest first."""
    told = select(deliveries.c.incident_id).where(
        deliveries.c.partner_id == partner_id, deliveries.c.incident_id.is_not(None)
    )
    query = (
        select(incidents)
        .where(or_(incidents.c.created_at >= since, incidents.c.status != "resolved"))
        .order_by(incidents.c.created_at.desc())
    )
    told_ids = {int(r[0]) for r in await conn.execute(told.distinct())}
    everything = "*" in components
    found = []
    for row in (await conn.execute(query)).mappings():
        touches = everything or bool(set(row["components"] or []) & set(components))
        if row["id"] in told_ids or touches:
            found.append(dict(row))
    return found


async def notices_sent(conn: AsyncConnection, partner_id: str, incident_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Published notices of these incidents that went out to the partner, with when they first did."""
    if not incident_ids:
        return []
    sent = (
        select(deliveries.c.notice_id)
        .where(
            deliveries.c.partner_id == partner_id,
            deliveries.c.incident_id.in_(list(incident_ids)),
            deliveries.c.status.not_in(NEVER_SENT),
        )
        .distinct()
    )
    query = (
        select(notices)
        .where(notices.c.id.in_(sent), notices.c.state == "published")
        .order_by(notices.c.incident_id, notices.c.version)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def deliveries_of_contact(
    conn: AsyncConnection, contact_id: int, notice_ids: Sequence[int]
) -> list[dict[str, Any]]:
    if not notice_ids:
        return []
    query = (
        select(deliveries)
        .where(
            deliveries.c.contact_id == contact_id,
            deliveries.c.notice_id.in_(list(notice_ids)),
            deliveries.c.status.not_in(NEVER_SENT),
        )
        .order_by(deliveries.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def delivery_of_notice(
    conn: AsyncConnection, partner_id: str, notice_id: int, contact_id: int
) -> dict[str, Any] | None:
    """A delivery of the notice to the partner (the contact's own first), None when the notice never
    went to the partner."""
    query = (
        select(deliveries)
        .where(
            deliveries.c.partner_id == partner_id,
            deliveries.c.notice_id == notice_id,
            deliveries.c.purpose == "partner",
            deliveries.c.status.not_in(NEVER_SENT),
        )
        .order_by((deliveries.c.contact_id != contact_id), deliveries.c.id)
        .limit(1)
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def acknowledgements_of(
    conn: AsyncConnection, partner_id: str, notice_ids: Sequence[int]
) -> list[tuple[int, int, int, float]]:
    """(notice id, contact id, tier, when) of every acknowledgement by the partner's contacts."""
    if not notice_ids:
        return []
    query = (
        select(acknowledgements.c.notice_id, acknowledgements.c.contact_id, deliveries.c.tier, acknowledgements.c.at)
        .select_from(acknowledgements.join(deliveries, deliveries.c.id == acknowledgements.c.delivery_id))
        .where(acknowledgements.c.partner_id == partner_id, acknowledgements.c.notice_id.in_(list(notice_ids)))
        .order_by(acknowledgements.c.at)
    )
    return [(int(n), int(c), int(t), float(at)) for n, c, t, at in await conn.execute(query)]


async def questions_of_contact(
    conn: AsyncConnection, contact_id: int, incident_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """The contact's own questions about these incidents, oldest first, however they were asked."""
    if not incident_ids:
        return []
    query = (
        select(questions)
        .where(questions.c.contact_id == contact_id, questions.c.incident_id.in_(list(incident_ids)))
        .order_by(questions.c.asked_at, questions.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def contact_by_id(conn: AsyncConnection, contact_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings().first()
    return dict(row) if row else None


# --- contact change requests ---------------------------------------------------------------------


async def insert_request(
    conn: AsyncConnection, partner_id: str, requested_by: int, contact_key: str | None, change: dict[str, Any]
) -> int:
    result = await conn.execute(
        insert(contact_change_requests).values(
            partner_id=partner_id,
            requested_by=requested_by,
            contact_key=contact_key,
            change=change,
            state="pending",
            created_at=time.time(),
        )
    )
    return inserted_id(result)


async def list_requests(
    conn: AsyncConnection, state: str | None = None, partner_id: str | None = None
) -> list[dict[str, Any]]:
    query = select(contact_change_requests).order_by(contact_change_requests.c.id.desc())
    if state is not None:
        query = query.where(contact_change_requests.c.state == state)
    if partner_id is not None:
        query = query.where(contact_change_requests.c.partner_id == partner_id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_request(conn: AsyncConnection, request_id: int, for_update: bool = False) -> dict[str, Any] | None:
    query = select(contact_change_requests).where(contact_change_requests.c.id == request_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def decide_request(
    conn: AsyncConnection, request_id: int, state: str, actor: str | None, note: str | None
) -> bool:
    result = await conn.execute(
        update(contact_change_requests)
        .where(contact_change_requests.c.id == request_id, contact_change_requests.c.state == "pending")
        .values(state=state, decided_at=time.time(), decided_by=actor, note=note)
    )
    return bool(result.rowcount)
