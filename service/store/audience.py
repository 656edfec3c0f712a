"""The directory as the planner reads it: partners with their contacts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.models import Contact, Partner
from service.store.partners import subscribed_to
from service.store.tables import contacts, partners


async def known_partner_ids(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    rows = await conn.execute(select(partners.c.id).where(partners.c.id.in_(list(ids))))
    return {r[0] for r in rows}


async def partners_with_contacts(
    conn: AsyncConnection,
    partner_ids: Sequence[str] | None = None,
    components: Sequence[str] | None = None,
    tiers: Sequence[int] | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Partner]:
    """Partners (all, the listed ones, or those subscribed to `components`) with their contacts
    (of `tiers`, when given), ordered by id; `after` and `limit` page through them.
    Filtering happens in SQL: a critical incident on one component must not read the whole
    directory inside its write transaction."""
    chosen: list[ColumnElement[bool]] = []
    if partner_ids is not None:
        chosen.append(partners.c.id.in_(list(partner_ids)))
    if components is not None:
        chosen.append(subscribed_to(components))
    if after is not None:
        chosen.append(partners.c.id > after)
    query = select(partners).where(*chosen).order_by(partners.c.id).limit(limit)
    found: dict[str, tuple[RowMapping, list[Contact]]] = {
        r["id"]: (r, []) for r in (await conn.execute(query)).mappings()
    }
    if not found:
        return []
    contact_query = select(contacts).order_by(contacts.c.partner_id, contacts.c.tier, contacts.c.id)
    if chosen or limit is not None:
        contact_query = contact_query.where(contacts.c.partner_id.in_(list(found)))
    if tiers is not None:
        contact_query = contact_query.where(contacts.c.tier.in_(list(tiers)))
    for row in (await conn.execute(contact_query)).mappings():
        selected = found.get(row["partner_id"])
        if selected is not None:
            selected[1].append(Contact.from_row(row))
    return [Partner.from_row(row, contacts=tuple(chosen_contacts)) for row, chosen_contacts in found.values()]
