"""The directory summarised for dry runs, kept between requests while the directory is unchanged.

A preview plans the notice's whole audience: at 10,000 partners that meant reading 40,000 rows
into records for each request, most of a dry run's time. Yet a plan depends on few things about a
contact (its partner's policy, time zone and language; its tier, channel order, language and which
kinds of address it has), so a directory holds a handful of *kinds* of partner. The snapshot keeps
one partner of each kind, each partner's kind and name, and how many copies its account owners
get; a dry run
plans each kind once and counts it as many times as it has partners in the audience.

The database raises `directory_version` on every write to partners, contacts or account owners
(migration 0013), so one read tells whether a snapshot is current. Addresses are not kept: the
planner asks the database which partners have a suppressed address or a history that bears on the
plan, and plans those partners from their own rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store import audience as audience_store
from service.store import owners as owner_store
from service.store.models import Partner
from service.store.tables import account_owners, directory_version

PAGE = 2000


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    version: int
    kinds: tuple[Partner, ...]  # one partner (with its contacts) per kind of partner
    kind_of: dict[str, int]  # partner id -> index in `kinds`
    names: dict[str, str]  # partner id -> name
    owner_copies: dict[str, int]  # partner id -> copies of a notice its account owners get

    def of_tiers(self, kind: int, tiers: Sequence[int] | None) -> Partner:
        """The kind's partner with only the contacts of `tiers` (all when None)."""
        partner = self.kinds[kind]
        if tiers is None:
            return partner
        return dataclasses.replace(partner, contacts=tuple(c for c in partner.contacts if c.tier in tiers))


_kept: WeakKeyDictionary[Engine, DirectorySnapshot] = WeakKeyDictionary()


def kind_key(partner: Partner) -> tuple[Any, ...]:
    """What the planner reads of a partner and its contacts, apart from who they are and their
    addresses (only whether each kind of address is there)."""
    policy = None if partner.policy is None else json.dumps(partner.policy, sort_keys=True)
    return (
        policy,
        partner.timezone,
        partner.language,
        tuple((c.tier, tuple(c.channels), c.reachable(), c.language) for c in partner.contacts),
    )


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
    built = await _build(conn, seen)
    _kept[engine] = built
    return built


async def _build(conn: AsyncConnection, seen: int) -> DirectorySnapshot:
    kinds: list[Partner] = []
    index: dict[tuple[Any, ...], int] = {}
    kind_of: dict[str, int] = {}
    names: dict[str, str] = {}
    after = None
    while True:
        page = await audience_store.partners_with_contacts(conn, after=after, limit=PAGE)
        for partner in page:
            key = kind_key(partner)
            found = index.get(key)
            if found is None:
                found = index[key] = len(kinds)
                kinds.append(_anonymous(partner))
            kind_of[partner.id] = found
            names[partner.id] = partner.name
        if len(page) < PAGE:
            break
        after = page[-1].id
    copies: dict[str, int] = {}
    for row in (await conn.execute(select(account_owners))).mappings():
        copies[row["partner_id"]] = copies.get(row["partner_id"], 0) + len(owner_store.copy_channels(dict(row)))
    return DirectorySnapshot(seen, tuple(kinds), kind_of, names, copies)


def _anonymous(partner: Partner) -> Partner:
    """The kind's partner as kept: only whether each address is there, not the address itself
    (a snapshot holds no personal data beyond the names the preview lists)."""
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
