"""The partner directory's rows: partners and their contacts, as the admin API and import edit them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Text, case, cast, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import contacts, partners

PARTNER_FIELDS = ("name", "language", "components", "policy", "timezone")
CONTACT_FIELDS = ("name", "tier", "email", "phone", "webhook_url", "channels", "language")


def _partner_values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in PARTNER_FIELDS if k in row}


def _contact_values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in CONTACT_FIELDS if k in row}


def subscribed_to(components: Sequence[str]) -> ColumnElement[bool]:
    """Partners subscribed to any of `components` (or to every component, "*").

    Components are slugs stored as a JSON list of strings, so the quoted name is a containment
    test both backends answer the same way (and a page of results stays exact).
    """
    text = cast(partners.c.components, Text)
    return or_(*(text.contains(f'"{name}"', autoescape=True) for name in [*components, "*"]))


async def list_partners(
    conn: AsyncConnection, limit: int = 50, cursor: str | None = None, component: str | None = None
) -> list[dict[str, Any]]:
    """Ordered by id; `cursor` is the last id of the previous page."""
    query = select(partners).order_by(partners.c.id).limit(limit)
    if cursor is not None:
        query = query.where(partners.c.id > cursor)
    if component is not None:
        query = query.where(subscribed_to([component]))
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_partner(conn: AsyncConnection, partner_id: str, with_contacts: bool = True) -> dict[str, Any] | None:
    row = (await conn.execute(select(partners).where(partners.c.id == partner_id))).mappings().first()
    if row is None:
        return None
    partner = dict(row)
    if with_contacts:
        partner["contacts"] = await list_contacts(conn, partner_id)
    return partner


async def insert_partner(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """The partner and any `contacts` in the row."""
    now = time.time()
    await conn.execute(insert(partners).values(id=row["id"], **_partner_values(row), created_at=now, updated_at=now))
    for contact in row.get("contacts", []):
        await insert_contact(conn, row["id"], contact)


async def update_partner(conn: AsyncConnection, partner_id: str, values: dict[str, Any]) -> bool:
    result = await conn.execute(
        update(partners).where(partners.c.id == partner_id).values(**_partner_values(values), updated_at=time.time())
    )
    return result.rowcount > 0


async def delete_partner(conn: AsyncConnection, partner_id: str) -> bool:
    await conn.execute(delete(contacts).where(contacts.c.partner_id == partner_id))
    result = await conn.execute(delete(partners).where(partners.c.id == partner_id))
    return result.rowcount > 0


async def list_contacts(conn: AsyncConnection, partner_id: str) -> list[dict[str, Any]]:
    query = select(contacts).where(contacts.c.partner_id == partner_id).order_by(contacts.c.tier, contacts.c.id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def contacts_with_addresses(conn: AsyncConnection, addresses: Sequence[str]) -> list[dict[str, Any]]:
    """Contacts whose email or phone is one of `addresses`."""
    query = (
        select(contacts)
        .where(or_(contacts.c.email.in_(list(addresses)), contacts.c.phone.in_(list(addresses))))
        .order_by(contacts.c.partner_id, contacts.c.tier, contacts.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_contact(conn: AsyncConnection, partner_id: str, key: str) -> dict[str, Any] | None:
    query = select(contacts).where(contacts.c.partner_id == partner_id, contacts.c.key == key)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def insert_contact(conn: AsyncConnection, partner_id: str, row: dict[str, Any]) -> int:
    now = time.time()
    result = await conn.execute(
        insert(contacts).values(
            partner_id=partner_id, key=row["key"], **_contact_values(row), created_at=now, updated_at=now
        )
    )
    return inserted_id(result)


async def update_contact(conn: AsyncConnection, partner_id: str, key: str, values: dict[str, Any]) -> bool:
    result = await conn.execute(
        update(contacts)
        .where(contacts.c.partner_id == partner_id, contacts.c.key == key)
        .values(**_contact_values(values), updated_at=time.time())
    )
    return result.rowcount > 0


async def delete_contact(conn: AsyncConnection, partner_id: str, key: str) -> bool:
    result = await conn.execute(delete(contacts).where(contacts.c.partner_id == partner_id, contacts.c.key == key))
    return result.rowcount > 0


async def counts(conn: AsyncConnection) -> dict[str, int]:
    return {
        "partners": int(await conn.scalar(select(func.count()).select_from(partners)) or 0),
        "contacts": int(await conn.scalar(select(func.count()).select_from(contacts)) or 0),
    }


async def replace_all(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Make the directory exactly `rows` (partners with `contacts`), in the caller's transaction.

    Partners and contacts that stay keep their row (and a contact its id, which deliveries and
    acknowledgements refer to); the rest are deleted, the new ones inserted.
    """
    wanted = [r["id"] for r in rows]
    stale = select(partners.c.id).where(partners.c.id.not_in(wanted))
    await conn.execute(delete(contacts).where(contacts.c.partner_id.in_(stale)))
    await conn.execute(delete(partners).where(partners.c.id.not_in(wanted)))
    existing = set((await conn.execute(select(partners.c.id))).scalars())
    for row in rows:
        if row["id"] in existing:
            await update_partner(conn, row["id"], row)
        else:
            await insert_partner(conn, {**row, "contacts": []})
        await _replace_contacts(conn, row["id"], row.get("contacts", []))
    return await counts(conn)


async def _replace_contacts(conn: AsyncConnection, partner_id: str, rows: Sequence[dict[str, Any]]) -> None:
    wanted = [r["key"] for r in rows]
    await conn.execute(delete(contacts).where(contacts.c.partner_id == partner_id, contacts.c.key.not_in(wanted)))
    existing = set((await conn.execute(select(contacts.c.key).where(contacts.c.partner_id == partner_id))).scalars())
    for row in rows:
        if row["key"] in existing:
            await update_contact(conn, partner_id, row["key"], row)
        else:
            await insert_contact(conn, partner_id, row)


async def tier1_coverage(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Per partner: how many tier-1 contacts it has, and how many have an email or a phone."""
    reachable = case((or_(contacts.c.email.is_not(None), contacts.c.phone.is_not(None)), 1), else_=0)
    query = (
        select(
            partners.c.id,
            partners.c.name,
            func.count(contacts.c.id).label("tier1"),
            func.coalesce(func.sum(reachable), 0).label("tier1_reachable"),
        )
        .select_from(partners.outerjoin(contacts, (contacts.c.partner_id == partners.c.id) & (contacts.c.tier == 1)))
        .group_by(partners.c.id, partners.c.name)
        .order_by(partners.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
