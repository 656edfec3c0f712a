"""The delivery log as admins and auditors read it: filtered pages, summaries, an incident's evidence.

Pages are keyset-paginated on the id (newest first), so a page never shifts when rows are added
while someone is paging, and an export of any size holds one page at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import Store
from service.store.tables import acknowledgements, contacts, deliveries, partners, receipts

EXPORT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class DeliveryFilter:
    """Every field narrows the log; empty tuples and None mean "any"."""

    incident_id: int | None = None
    notice_id: int | None = None
    partner_id: str | None = None
    contact_id: int | None = None
    channels: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    tiers: tuple[int, ...] = ()
    since: float | None = None
    until: float | None = None
    # Partner deliveries unless asked: internal copies, answers and reminders are never a partner figure.
    purposes: tuple[str, ...] = ("partner",)
    # False: real traffic only (drills never mix into real figures); True: drill rows only; None: both.
    drill: bool | None = False

    def conditions(self) -> list[ColumnElement[bool]]:
        c = deliveries.c
        found: list[ColumnElement[bool]] = []
        if self.drill is not None:
            found.append(c.drill.is_not(None) if self.drill else c.drill.is_(None))
        for column, value in (
            (c.incident_id, self.incident_id),
            (c.notice_id, self.notice_id),
            (c.partner_id, self.partner_id),
            (c.contact_id, self.contact_id),
        ):
            if value is not None:
                found.append(column == value)
        for column, values in (
            (c.channel, self.channels),
            (c.status, self.statuses),
            (c.tier, self.tiers),
            (c.purpose, self.purposes),
        ):
            if values:
                found.append(column.in_(values))
        if self.since is not None:
            found.append(c.created_at >= self.since)
        if self.until is not None:
            found.append(c.created_at < self.until)
        return found


async def list_deliveries(
    conn: AsyncConnection, where: DeliveryFilter, before_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest first; `before_id` is the cursor (the last id of the previous page)."""
    query = select(deliveries).where(*where.conditions()).order_by(deliveries.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(deliveries.c.id < before_id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def delivery_pages(
    store: Store, where: DeliveryFilter, page_size: int = EXPORT_PAGE_SIZE
) -> AsyncIterator[list[dict[str, Any]]]:
    """The whole filtered log, one page at a time. Each page takes its own short read, so a slow
    reader of an export never holds a connection (or SQLite's snapshot) for the whole download."""
    cursor: int | None = None
    while True:
        async with store.read() as conn:
            page = await list_deliveries(conn, where, before_id=cursor, limit=page_size)
        if page:
            yield page
        if len(page) < page_size:
            return
        cursor = page[-1]["id"]


async def receipts_of(conn: AsyncConnection, delivery_id: int) -> list[dict[str, Any]]:
    query = (
        select(receipts).where(receipts.c.delivery_id == delivery_id).order_by(receipts.c.received_at, receipts.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def summarise(conn: AsyncConnection, where: DeliveryFilter) -> dict[str, Any]:
    """Counts by status, by channel × status, by tier × status and by tier × channel × status, from one
    grouped query."""
    c = deliveries.c
    query = (
        select(c.channel, c.tier, c.status, func.count())
        .where(*where.conditions())
        .group_by(c.channel, c.tier, c.status)
    )
    by_status: dict[str, int] = {}
    by_channel: dict[str, dict[str, int]] = {}
    by_tier: dict[str, dict[str, int]] = {}
    by_tier_channel: dict[str, dict[str, dict[str, int]]] = {}
    for channel, tier, status, count in await conn.execute(query):
        by_status[status] = by_status.get(status, 0) + count
        _add(by_channel.setdefault(channel, {}), status, count)
        _add(by_tier.setdefault(str(tier), {}), status, count)
        _add(by_tier_channel.setdefault(str(tier), {}).setdefault(channel, {}), status, count)
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_channel": by_channel,
        "by_tier": dict(sorted(by_tier.items())),
        "by_tier_channel": dict(sorted(by_tier_channel.items())),
    }


def _add(counts: dict[str, int], key: str, count: int) -> None:
    counts[key] = counts.get(key, 0) + int(count)


async def recipients_of_incident(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    """Every delivery of the incident's notices with the contact's and partner's names, in the order
    a report reads them: notice, partner, tier, contact, channel. Contacts removed from the
    directory since keep their deliveries (the log is the evidence), just without a name. An
    acknowledgement counts whether it was recorded on the delivery or only in its own table. The
    messages to our operators about the incident come too (the report shows them apart)."""
    query = (
        select(
            deliveries,
            contacts.c.name.label("contact_name"),
            contacts.c.key.label("contact_key"),
            partners.c.name.label("partner_name"),
            acknowledgements.c.at.label("ack_at"),
        )
        .select_from(
            deliveries.outerjoin(contacts, contacts.c.id == deliveries.c.contact_id)
            .outerjoin(partners, partners.c.id == deliveries.c.partner_id)
            .outerjoin(acknowledgements, acknowledgements.c.delivery_id == deliveries.c.id)
        )
        .where(deliveries.c.incident_id == incident_id, deliveries.c.purpose.in_(("partner", "operator")))
        .order_by(
            deliveries.c.notice_id,
            deliveries.c.partner_id,
            deliveries.c.tier,
            deliveries.c.contact_id,
            deliveries.c.escalation_step,
            deliveries.c.channel,
            deliveries.c.id,
        )
    )
    found = []
    for row in (await conn.execute(query)).mappings():
        delivery = dict(row)
        ack_at = delivery.pop("ack_at")
        delivery["acknowledged_at"] = delivery["acknowledged_at"] or ack_at
        found.append(delivery)
    return found
