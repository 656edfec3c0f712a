"""The partner directory's rows: partners and their contacts, as the admin API and import edit them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Insert,
    Row,
    Select,
    Table,
    Text,
    Update,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.owners import owners_of, replace_owners
from service.store.tables import account_owners, contacts, partners

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
        partner["account_owners"] = (await owners_of(conn, [partner_id])).get(partner_id, [])
    return partner


async def insert_partner(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """The partner and any `contacts` in the row."""
    now = time.time()
    await conn.execute(insert(partners).values(id=row["id"], **_partner_values(row), created_at=now, updated_at=now))
    for contact in row.get("contacts", []):
        await insert_contact(conn, row["id"], contact)
    await replace_owners(conn, row["id"], row.get("account_owners", []), now)


async def update_partner(conn: AsyncConnection, partner_id: str, values: dict[str, Any]) -> bool:
    result = await conn.execute(
        update(partners).where(partners.c.id == partner_id).values(**_partner_values(values), updated_at=time.time())
    )
    return result.rowcount > 0


async def delete_partner(conn: AsyncConnection, partner_id: str) -> bool:
    await conn.execute(delete(contacts).where(contacts.c.partner_id == partner_id))
    await conn.execute(delete(account_owners).where(account_owners.c.partner_id == partner_id))
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
    """Make the directory exactly `rows` (partners with `contacts`), in the caller's transaction."""
    replacement = await DirectoryReplacement.begin(conn)
    await replacement.add(conn, rows)
    return await replacement.finish(conn)


class DirectoryReplacement:
    """The directory replaced by rows that arrive in parts, in the caller's one transaction.

    Partners and contacts that stay keep their row (and a contact its id, which deliveries and
    acknowledgements refer to); the rest are deleted (a part's partners' dropped contacts with the
    part, the partners no part listed at `finish`), the new ones inserted. A few statements per
    thousand rows whatever the size: the rows a part replaces are read with the part and the changes
    go in batches, so neither the file nor the directory it replaces is ever held whole.
    """

    def __init__(self, replacing: bool) -> None:
        self.now = time.time()
        self.replacing = replacing  # False: the directory was empty, no part has rows to look up
        self.wanted: set[str] = set()

    @classmethod
    async def begin(cls, conn: AsyncConnection) -> DirectoryReplacement:
        if conn.dialect.name == "postgresql":
            # The tables grow within this one transaction: each part's lookups are planned for the
            # size they have now, not once for the size they had (a plan for a few rows scans
            # the whole table for every part once it holds a hundred thousand).
            await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        return cls(replacing=(await conn.execute(select(partners.c.id).limit(1))).first() is not None)

    async def add(self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
        now = self.now
        listed = [r["id"] for r in rows]
        self.wanted.update(listed)
        existing, known = await self._replaced(conn, listed)
        # Each row once, with both times: an update sets only its fields and updated_at.
        partner_rows = [{"id": r["id"], **_partner_columns(r), "created_at": now, "updated_at": now} for r in rows]
        await _insert(conn, partners, [r for r in partner_rows if r["id"] not in existing])
        await _update(conn, partners, [r for r in partner_rows if r["id"] in existing], PARTNER_FIELDS)
        contact_rows = [
            {"partner_id": r["id"], "key": c["key"], **_contact_columns(c), "created_at": now, "updated_at": now}
            for r in rows
            for c in r.get("contacts", [])
        ]
        ids = [known.pop((c["partner_id"], c["key"]), None) for c in contact_rows]
        await _delete_in(conn, contacts.c.id, list(known.values()))  # contacts the new rows no longer list
        await _insert(conn, contacts, [c for c, i in zip(contact_rows, ids, strict=True) if i is None])
        staying = [{**c, "id": i} for c, i in zip(contact_rows, ids, strict=True) if i is not None]
        await _update(conn, contacts, staying, CONTACT_FIELDS)
        # Account owners are replaced as a whole, a page of partners per statement.
        await _delete_in(conn, account_owners.c.partner_id, listed)
        owners = [
            {**o, "partner_id": r["id"], "created_at": now, "updated_at": now}
            for r in rows
            for o in r.get("account_owners", [])
        ]
        await _insert(conn, account_owners, owners)

    async def _replaced(self, conn: AsyncConnection, listed: list[str]) -> tuple[set[str], dict[tuple[str, str], int]]:
        """Which of these partners exist, and the ids of their contacts by (partner id, key)."""
        if not self.replacing:
            return set(), {}
        existing = {row.id for row in await _rows_in(conn, select(partners.c.id), partners.c.id, listed)}
        known_contacts = select(contacts.c.id, contacts.c.partner_id, contacts.c.key)
        found = await _rows_in(conn, known_contacts, contacts.c.partner_id, listed)
        return existing, {(c.partner_id, c.key): c.id for c in found}

    async def finish(self, conn: AsyncConnection) -> dict[str, int]:
        """Delete the partners (and their contacts) no part listed; counts of what is left."""
        present = (await conn.execute(select(partners.c.id))).scalars()
        gone = sorted(partner_id for partner_id in present if partner_id not in self.wanted)
        await _delete_in(conn, contacts.c.partner_id, gone)
        await _delete_in(conn, account_owners.c.partner_id, gone)
        await _delete_in(conn, partners.c.id, gone)
        return await counts(conn)


_BATCH = 1000  # rows a statement: well under both backends' limit on bound parameters
_DEFAULTS: dict[str, Any] = {"components": [], "channels": []}


def _partner_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k, _DEFAULTS.get(k)) for k in PARTNER_FIELDS}


def _contact_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k, _DEFAULTS.get(k)) for k in CONTACT_FIELDS}


async def _rows_in(
    conn: AsyncConnection, query: Select[Any], column: Column[Any], values: Sequence[Any]
) -> list[Row[Any]]:
    """The rows of `query` whose `column` is one of `values`, a batch of values per statement."""
    found: list[Row[Any]] = []
    for start in range(0, len(values), _BATCH):
        found += (await conn.execute(query.where(column.in_(values[start : start + _BATCH])))).all()
    return found


async def _delete_in(conn: AsyncConnection, column: Column[Any], values: Sequence[Any]) -> None:
    for start in range(0, len(values), _BATCH):
        await conn.execute(delete(column.table).where(column.in_(values[start : start + _BATCH])))


async def _insert(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    parameters = {key: key for key in rows[0]}
    if conn.dialect.name == "sqlite" and await _executemany_through_driver(conn, insert(table), rows, parameters):
        return
    # On PostgreSQL, with RETURNING SQLAlchemy sends a batch as one multi-row INSERT
    # ("insertmanyvalues"), not a statement a row: the directory_version trigger (once a statement)
    # then updates its row once a batch; 40,000 updates of one row in one transaction took 13 s.
    statement = insert(table).returning(table.c.id) if conn.dialect.name == "postgresql" else insert(table)
    for start in range(0, len(rows), _BATCH):
        await conn.execute(statement, list(rows[start : start + _BATCH]))


async def _update(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Each row's `fields` and updated_at, by its id."""
    if not rows:
        return
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in (*fields, "updated_at")})
    )
    keys = ("id", *fields, "updated_at")
    parameters = {f"b_{key}": key for key in keys}
    if conn.dialect.name == "sqlite" and await _executemany_through_driver(conn, statement, rows, parameters):
        return
    for start in range(0, len(rows), _BATCH):
        await conn.execute(statement, [{f"b_{k}": r[k] for k in keys} for r in rows[start : start + _BATCH]])


async def _executemany_through_driver(
    conn: AsyncConnection, statement: Insert | Update, rows: Sequence[dict[str, Any]], parameters: dict[str, str]
) -> bool:
    """SQLite: `statement` for each row, the rows as tuples to the driver's executemany, each value
    through its parameter type's own bind processor (JSON to text), so what is stored is what
    SQLAlchemy would store. SQLAlchemy's parameter handling a row was a fifth of a 10,000-partner
    import's time; SQLite's triggers run once a row either way. `parameters`: the names SQLAlchemy
    would be given (they decide what an INSERT or UPDATE sets), each with the key of its value in a
    row. False (nothing done) where the statement needs a value the rows do not carry (a column
    default)."""
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(parameters))
    names = compiled.positiontup or []
    if len(names) < 2 or any(name not in parameters for name in names):
        return False
    keys = [parameters[name] for name in names]
    values_of = itemgetter(*keys)  # a row's values in the statement's order, as a tuple
    processors = [compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
    converted = [(i, process) for i, process in enumerate(processors) if process is not None]
    for start in range(0, len(rows), _BATCH):
        batch = []
        for row in rows[start : start + _BATCH]:
            values = list(values_of(row))
            for i, process in converted:
                values[i] = process(values[i])
            batch.append(tuple(values))
        await conn.exec_driver_sql(compiled.string, batch)
    return True


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


async def search_partners(
    conn: AsyncConnection, text: str | None = None, after: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """A page of partners whose id or name contains `text`, with their contact counts."""
    query = select(partners).order_by(partners.c.id).limit(limit)
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(or_(func.lower(partners.c.id).like(pattern), func.lower(partners.c.name).like(pattern)))
    if after is not None:
        query = query.where(partners.c.id > after)
    found = [dict(r) for r in (await conn.execute(query)).mappings()]
    if not found:
        return []
    reachable = case((or_(contacts.c.email.is_not(None), contacts.c.phone.is_not(None)), 1), else_=0)
    counts = (
        select(
            contacts.c.partner_id,
            func.count().label("contacts"),
            func.coalesce(func.sum(case((contacts.c.tier == 1, reachable), else_=0)), 0).label("tier1_reachable"),
        )
        .where(contacts.c.partner_id.in_([p["id"] for p in found]))
        .group_by(contacts.c.partner_id)
    )
    by_partner = {r["partner_id"]: r for r in (await conn.execute(counts)).mappings()}
    for partner in found:
        row = by_partner.get(partner["id"])
        partner["contacts"] = int(row["contacts"]) if row else 0
        partner["tier1_reachable"] = int(row["tier1_reachable"]) if row else 0
    return found


async def coverage_gaps(conn: AsyncConnection, limit: int = 200) -> tuple[int, list[dict[str, Any]]]:
    """Partners with no tier-1 contact that has an email or a phone: (how many, the first few)."""
    reachable_tier1 = (
        select(contacts.c.partner_id)
        .where(contacts.c.tier == 1, or_(contacts.c.email.is_not(None), contacts.c.phone.is_not(None)))
        .distinct()
    )
    missing = partners.c.id.not_in(reachable_tier1)
    total = int(await conn.scalar(select(func.count()).select_from(partners).where(missing)) or 0)
    query = select(partners.c.id, partners.c.name).where(missing).order_by(partners.c.id).limit(limit)
    return total, [dict(r) for r in (await conn.execute(query)).mappings()]
