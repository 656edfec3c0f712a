"""The directory as the planner reads it: partners with their contacts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.models import Contact, Partner
from service.store.partners import subscribed_to
from service.store.tables import contacts, partners

# The columns of each record in its field order, so a row becomes a record positionally. JSON
# columns are read as their text and decoded once per distinct value (a directory has few distinct
# channel lists and policies, and tens of thousands of contacts).
_PARTNER_COLUMNS = (
    partners.c.id,
    partners.c.name,
    partners.c.language,
    cast(partners.c.components, Text),
    cast(partners.c.policy, Text),
    partners.c.timezone,
)
_CONTACT_COLUMNS = (
    contacts.c.id,
    contacts.c.partner_id,
    contacts.c.key,
    contacts.c.name,
    contacts.c.tier,
    contacts.c.email,
    contacts.c.phone,
    contacts.c.webhook_url,
    cast(contacts.c.channels, Text),
    contacts.c.language,
)


# Up to this many partners, their contacts are selected by a list of ids (an index lookup each);
# beyond it, by the partners' own conditions again (a list of a thousand ids costs more to build).
FEW = 50


async def names_of(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.execute(select(partners.c.id, partners.c.name).where(partners.c.id.in_(list(ids))))
    return {row.id: row.name for row in rows}


async def known_partner_ids(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    rows = await conn.execute(select(partners.c.id).where(partners.c.id.in_(list(ids))))
    return {r[0] for r in rows}


class _Decoded:
    """JSON text → value, decoded once per distinct text. Equal texts share one value, which is
    safe because the records holding it are frozen and nothing mutates their lists."""

    def __init__(self) -> None:
        self._seen: dict[str | None, Any] = {None: None}

    def __call__(self, text: str | None) -> Any:
        try:
            return self._seen[text]
        except KeyError:
            value = self._seen[text] = json.loads(text)  # type: ignore[arg-type]
            return value


def _chosen(partner_ids: Sequence[str] | None, components: Sequence[str] | None) -> list[ColumnElement[bool]]:
    chosen: list[ColumnElement[bool]] = []
    if partner_ids is not None:
        chosen.append(partners.c.id.in_(list(partner_ids)))
    if components is not None:
        chosen.append(subscribed_to(components))
    return chosen


async def audience_ids(
    conn: AsyncConnection, partner_ids: Sequence[str] | None = None, components: Sequence[str] | None = None
) -> list[str]:
    """The ids of the partners `partners_with_contacts` would select, in its order."""
    query = select(partners.c.id).where(*_chosen(partner_ids, components)).order_by(partners.c.id)
    return list((await conn.execute(query)).scalars())


async def with_address_in(conn: AsyncConnection, addresses: Iterable[tuple[str, str]]) -> set[str]:
    """Ids of partners with a contact reached at any of these (channel, address)."""
    by_channel: dict[str, list[str]] = {}
    for channel, address in addresses:
        by_channel.setdefault(channel, []).append(address)
    column = {"email": contacts.c.email, "sms": contacts.c.phone, "webhook": contacts.c.webhook_url}
    matches = [column[channel].in_(found) for channel, found in by_channel.items() if channel in column]
    if not matches:
        return set()
    return set((await conn.execute(select(contacts.c.partner_id).where(or_(*matches)).distinct())).scalars())


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
    directory inside its write transaction. Two statements a page, whatever its size: the contacts
    of a large page are selected by the same conditions as the partners, of a small one (`FEW`) by
    their partners' ids."""
    chosen = _chosen(partner_ids, components)
    if after is not None:
        chosen.append(partners.c.id > after)
    page = select(partners.c.id).where(*chosen).order_by(partners.c.id).limit(limit)
    decoded = _Decoded()
    found: dict[str, tuple[Any, list[Contact]]] = {}
    for row in await conn.execute(select(*_PARTNER_COLUMNS).where(*chosen).order_by(partners.c.id).limit(limit)):
        found[row[0]] = (row, [])
    if not found:
        return []
    contact_query = select(*_CONTACT_COLUMNS).order_by(contacts.c.partner_id, contacts.c.tier, contacts.c.id)
    if len(found) <= FEW:  # a critical incident's few partners: their ids, not a second scan
        contact_query = contact_query.where(contacts.c.partner_id.in_(list(found)))
    elif chosen or limit is not None:
        contact_query = contact_query.where(contacts.c.partner_id.in_(page.scalar_subquery()))
    if tiers is not None:
        contact_query = contact_query.where(contacts.c.tier.in_(list(tiers)))
    for cid, partner_id, key, name, tier, email, phone, webhook_url, channels, language in await conn.execute(
        contact_query
    ):
        selected = found.get(partner_id)
        if selected is not None:
            selected[1].append(
                Contact(cid, partner_id, key, name, tier, email, phone, webhook_url, decoded(channels) or [], language)
            )
    return [
        Partner(pid, name, language, decoded(components) or [], decoded(policy), timezone, tuple(chosen_contacts))
        for (pid, name, language, components, policy, timezone), chosen_contacts in found.values()
    ]
