"""The directory as the planner reads it: partners with their contacts."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import contacts, partners


async def known_partner_ids(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    rows = await conn.execute(select(partners.c.id).where(partners.c.id.in_(list(ids))))
    return {r[0] for r in rows}


async def partners_with_contacts(
    conn: AsyncConnection, partner_ids: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every partner (or the listed ones) with a `contacts` list, ordered by id."""
    query = select(partners).order_by(partners.c.id)
    if partner_ids is not None:
        query = query.where(partners.c.id.in_(list(partner_ids)))
    found = {r["id"]: {**r, "contacts": []} for r in (await conn.execute(query)).mappings()}
    contact_query = select(contacts).order_by(contacts.c.partner_id, contacts.c.tier, contacts.c.id)
    if partner_ids is not None:
        contact_query = contact_query.where(contacts.c.partner_id.in_(list(partner_ids)))
    for row in (await conn.execute(contact_query)).mappings():
        partner = found.get(row["partner_id"])
        if partner is not None:
            partner["contacts"].append(dict(row))
    return list(found.values())
