"""Account owners (our staff who own a partner relationship) and what their copy of a notice shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.models import Notice
from service.store.tables import account_owners, acknowledgements, contacts, deliveries, notices, partners

ADDRESS_FIELD = {"email": "email", "sms": "phone"}


def copy_channels(owner: dict[str, Any]) -> list[tuple[str, str]]:
    """(channel, address) of each copy of a notice the owner gets: each of their channels (email
    when none is set) that has an address."""
    found = []
    for channel in owner["channels"] or ["email"]:
        address = owner.get(ADDRESS_FIELD.get(channel, channel))
        if address:
            found.append((channel, address))
    return found


async def get_owner(conn: AsyncConnection, owner_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(account_owners).where(account_owners.c.id == owner_id))).mappings().first()
    return dict(row) if row else None


async def owners_of(conn: AsyncConnection, partner_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    query = (
        select(account_owners)
        .where(account_owners.c.partner_id.in_(list(partner_ids)))
        .order_by(account_owners.c.partner_id, account_owners.c.id)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in (await conn.execute(query)).mappings():
        found.setdefault(row["partner_id"], []).append(dict(row))
    return found


async def replace_owners(conn: AsyncConnection, partner_id: str, owners: Sequence[dict[str, Any]], now: float) -> None:
    await conn.execute(delete(account_owners).where(account_owners.c.partner_id == partner_id))
    if owners:
        await conn.execute(
            insert(account_owners),
            [{**owner, "partner_id": partner_id, "created_at": now, "updated_at": now} for owner in owners],
        )


async def partner_status(conn: AsyncConnection, partner_id: str, notice: Notice) -> list[dict[str, Any]]:
    """Each contact of the partner with this notice's deliveries to them (partner deliveries only)
    and whether they acknowledged the incident's previous published notice."""
    query = (
        select(contacts, partners.c.name.label("partner_name"))
        .join(partners, partners.c.id == contacts.c.partner_id)
        .where(contacts.c.partner_id == partner_id)
        .order_by(contacts.c.tier, contacts.c.id)
    )
    found = {
        r["id"]: {**r, "deliveries": [], "acknowledged_previous": None} for r in (await conn.execute(query)).mappings()
    }
    sent = select(
        deliveries.c.contact_id, deliveries.c.channel, deliveries.c.status, deliveries.c.acknowledged_at
    ).where(
        deliveries.c.notice_id == notice.id, deliveries.c.partner_id == partner_id, deliveries.c.purpose == "partner"
    )
    for row in (await conn.execute(sent.order_by(deliveries.c.id))).mappings():
        if row["contact_id"] in found:
            found[row["contact_id"]]["deliveries"].append(dict(row))
    previous = await _previous_notice_id(conn, notice)
    if previous is not None:
        told = select(deliveries.c.contact_id).where(
            deliveries.c.notice_id == previous, deliveries.c.partner_id == partner_id, deliveries.c.purpose == "partner"
        )
        acked = select(acknowledgements.c.contact_id).where(
            acknowledgements.c.notice_id == previous, acknowledgements.c.partner_id == partner_id
        )
        told_ids = {r[0] for r in await conn.execute(told)}
        acked_ids = {r[0] for r in await conn.execute(acked)}
        for contact_id in told_ids & set(found):
            found[contact_id]["acknowledged_previous"] = contact_id in acked_ids
    return list(found.values())


async def _previous_notice_id(conn: AsyncConnection, notice: Notice) -> int | None:
    if notice.incident_id is None:
        return None
    query = (
        select(notices.c.id)
        .where(
            notices.c.incident_id == notice.incident_id,
            notices.c.version < notice.version,
            notices.c.state == "published",
        )
        .order_by(notices.c.version.desc())
        .limit(1)
    )
    return (await conn.execute(query)).scalar()
