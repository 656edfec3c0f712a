"""The directory summarised for dry runs, kept between requests while the directory is unchanged.

A preview plans the notice's whole audience: at 10,000 partners that meant reading 40,000 rows
into records for each request, most of a dry run's time. Yet a plan depends on few things about a
contact (its partner's policy, time zone and language; its tier, channel order, language and which
kinds of address it has), so a directory holds a handful of *kinds* of partner. The snapshot keeps
one partner of each kind, each partner's kind, and how many copies its account owners
get; a dry run
plans each kind once and counts it as many times as it has partners in the audience.

The database raises `directory_version` on every write to partners, contacts or account owners
(migration 0013), so one read tells whether a snapshot is current. Addresses are not kept: the
planner asks the database which partners have a suppressed address or a history that bears on the
plan, and plans those partners from their own rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, Engine, Text, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store import audience as audience_store
from service.store import owners as owner_store
from service.store.models import Partner
from service.store.tables import account_owners, contacts, directory_version, partners


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    version: int
    kinds: tuple[Partner, ...]  # one partner (with its contacts) per kind of partner
    kind_of: dict[str, int]  # partner id -> index in `kinds`
    owner_copies: dict[str, int]  # partner id -> copies of a notice its account owners get

    def of_tiers(self, kind: int, tiers: Sequence[int] | None) -> Partner:
        """The kind's partner with only the contacts of `tiers` (all when None)."""
        partner = self.kinds[kind]
        if tiers is None:
            return partner
        return dataclasses.replace(partner, contacts=tuple(c for c in partner.contacts if c.tier in tiers))


_kept: WeakKeyDictionary[Engine, DirectorySnapshot] = WeakKeyDictionary()
_building: WeakKeyDictionary[Engine, tuple[int, asyncio.Future[DirectorySnapshot]]] = WeakKeyDictionary()


def _flag(column: Any) -> ColumnElement[str]:
    return case((func.coalesce(column, "") != "", "1"), else_="0")


# What the planner reads of a partner and its contacts, apart from who they are and their
# addresses (only whether each kind of address is there, as `Contact.reachable`): partners with
# equal values are planned alike. JSON is compared as its text. A partner's contacts are one text,
# aggregated by the database; their order in it does not matter to a plan (each contact is planned
# on its own), so an order that differs only makes two kinds of one.
_CONTACT_KIND = (
    cast(contacts.c.tier, Text)
    + "|"
    + cast(contacts.c.channels, Text)
    + "|"
    + _flag(contacts.c.email)
    + _flag(contacts.c.phone)
    + _flag(contacts.c.webhook_url)
    + "|"
    + func.coalesce(contacts.c.language, "")
)
# A partner's contacts' kinds as one text, looked up by the partner's id (an index range each), so
# the directory is read a page at a time.
_CONTACT_KINDS = (
    select(func.aggregate_strings(_CONTACT_KIND, ";"))
    .where(contacts.c.partner_id == partners.c.id)
    .correlate(partners)
    .scalar_subquery()
)
_PARTNER_KIND = (
    partners.c.id,
    cast(partners.c.policy, Text),
    partners.c.timezone,
    partners.c.language,
    _CONTACT_KINDS,
)
PAGE = 5000


def kept_version(engine: Engine) -> int | None:
    """The version of the snapshot this process keeps for `engine`, if any."""
    kept = _kept.get(engine)
    return None if kept is None else kept.version


async def version(conn: AsyncConnection) -> int | None:
    return (await conn.execute(select(directory_version.c.version).where(directory_version.c.id == 1))).scalar()


async def current(conn: AsyncConnection) -> DirectorySnapshot | None:
    """The snapshot of the directory as `conn` sees it: the kept one while its version holds,
    else built now (and kept). None on a schema without the version (never cached)."""
    seen = await version(conn)
    if seen is None:
        return None
    engine = conn.sync_engine
    kept = _kept.get(engine)
    if kept is not None and kept.version == seen:
        return kept
    building = _building.get(engine)
    if building is not None and building[0] == seen:  # the refresher (or another dry run) is at it
        await asyncio.wait([building[1]])
        if not building[1].cancelled() and building[1].exception() is None:
            return building[1].result()
    future: asyncio.Future[DirectorySnapshot] = asyncio.get_running_loop().create_future()
    _building[engine] = seen, future
    try:
        built = await _build(conn, seen)
    except BaseException:
        future.cancel()  # whoever waits builds for itself
        raise
    finally:
        if _building.get(engine, (None, None))[1] is future:
            del _building[engine]
    future.set_result(built)
    if (kept := _kept.get(engine)) is None or kept.version < seen:
        _kept[engine] = built
    return built


async def _build(conn: AsyncConnection, seen: int) -> DirectorySnapshot:
    """One row a partner, its kind told by text the database puts together, a page at a time;
    then only each kind's first partner is read as a record."""
    index: dict[tuple[Any, ...], int] = {}  # kind -> its index
    first: list[str] = []  # the first partner of each kind
    kind_of: dict[str, int] = {}
    after = None
    while True:
        query = select(*_PARTNER_KIND).order_by(partners.c.id).limit(PAGE)
        if after is not None:
            query = query.where(partners.c.id > after)
        rows = (await conn.execute(query)).all()
        for pid, *kind in rows:
            key = tuple(kind)
            found = index.get(key)
            if found is None:
                found = index[key] = len(first)
                first.append(pid)
            kind_of[pid] = found
        if len(rows) < PAGE:
            break
        after = rows[-1][0]
    kinds = {p.id: p for p in await audience_store.partners_with_contacts(conn, first)}
    copies: dict[str, int] = {}
    for row in (await conn.execute(select(account_owners))).mappings():
        copies[row["partner_id"]] = copies.get(row["partner_id"], 0) + len(owner_store.copy_channels(dict(row)))
    return DirectorySnapshot(seen, tuple(_anonymous(kinds[pid]) for pid in first), kind_of, copies)


def _anonymous(partner: Partner) -> Partner:
    """The kind's partner as kept: only whether each address is there, not the address itself
    (a snapshot holds no personal data)."""
    contacts = tuple(
        dataclasses.replace(
            c,
            email="-" if c.email else None,
            phone="-" if c.phone else None,
            webhook_url="-" if c.webhook_url else None,
        )
        for c in partner.contacts
    )
    return dataclasses.replace(partner, contacts=contacts)
