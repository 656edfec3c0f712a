"""Receipts and Acknowledgements: what providers and partners told us about a Delivery.

Lookups lock the delivery row (FOR UPDATE on PostgreSQL; SQLite has a single writer), so two
callbacks for the same message are applied one after the other, never interleaved.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import String, cast, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import acknowledgements, deliveries, notices, receipts


async def _one_delivery(conn: AsyncConnection, *where: Any) -> dict[str, Any] | None:
    query = select(deliveries).where(*where).order_by(deliveries.c.id).limit(1).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def delivery_by_provider_id(conn: AsyncConnection, provider_id: str) -> dict[str, Any] | None:
    return await _one_delivery(conn, deliveries.c.provider_id == provider_id)


async def delivery_by_message_id(conn: AsyncConnection, message_id: str) -> dict[str, Any] | None:
    return await _one_delivery(conn, deliveries.c.message_id == message_id)


async def has_receipt(
    conn: AsyncConnection, delivery_id: int, source: str, status: str, error_code: str | None
) -> bool:
    """True when the same report was recorded before: providers retry callbacks."""
    query = select(receipts.c.id).where(
        receipts.c.delivery_id == delivery_id,
        receipts.c.source == source,
        receipts.c.status == status,
        receipts.c.error_code.is_(None) if error_code is None else receipts.c.error_code == error_code,
    )
    return (await conn.execute(query.limit(1))).first() is not None


async def record_receipt(
    conn: AsyncConnection,
    delivery_id: int | None,
    source: str,
    status: str,
    error_code: str | None = None,
    detail: dict[str, Any] | None = None,
    received_at: float | None = None,
) -> int:
    result = await conn.execute(
        insert(receipts).values(
            delivery_id=delivery_id,
            source=source,
            status=status,
            error_code=error_code,
            detail=detail,
            received_at=time.time() if received_at is None else received_at,
        )
    )
    return inserted_id(result)


async def update_delivery(conn: AsyncConnection, delivery_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


async def notice_subject(conn: AsyncConnection, notice_id: int, language: str) -> str | None:
    """The subject as published (the notice's evidence), in the partner's language."""
    rendered = (await conn.execute(select(notices.c.rendered).where(notices.c.id == notice_id))).scalar()
    return ((rendered or {}).get(language) or {}).get("subject")


async def acknowledgement_of(conn: AsyncConnection, delivery_id: int) -> dict[str, Any] | None:
    query = select(acknowledgements).where(acknowledgements.c.delivery_id == delivery_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def insert_acknowledgement(
    conn: AsyncConnection, delivery: dict[str, Any], at: float, user_agent: str | None
) -> bool:
    """False when the delivery was acknowledged already (a double click, a second tab)."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(acknowledgements).values(
                    notice_id=delivery["notice_id"],
                    delivery_id=delivery["id"],
                    partner_id=delivery["partner_id"],
                    contact_id=delivery["contact_id"],
                    at=at,
                    user_agent=(user_agent or "")[:300] or None,
                )
            )
    except IntegrityError:
        return False
    return True


async def acknowledged_partners(conn: AsyncConnection, notice_id: int, tiers: Sequence[int]) -> set[str]:
    """Partners one of whose contacts of these tiers acknowledged the notice (on any delivery)."""
    query = (
        select(acknowledgements.c.partner_id)
        .join(deliveries, deliveries.c.id == acknowledgements.c.delivery_id)
        .where(acknowledgements.c.notice_id == notice_id, deliveries.c.tier.in_(list(tiers)))
        .distinct()
    )
    return {row[0] for row in await conn.execute(query)}


async def serialise_provider_ids(conn: AsyncConnection, provider_ids: Iterable[str]) -> None:
    """Take a transaction lock per provider message id (PostgreSQL; SQLite has one writer anyway).

    The dispatcher recording a Twilio SID and a status callback for that SID take the same lock,
    so the callback either finds the SID stored or leaves its report where the dispatcher looks.
    """
    if conn.dialect.name != "postgresql":
        return
    ordered = sorted(set(provider_ids))
    if not ordered:
        return
    # One round trip for the whole batch, taken in a stable order.
    ids = select(func.unnest(cast(ordered, ARRAY(String))).column_valued("provider_id")).subquery()
    locks = select(func.count(func.pg_advisory_xact_lock(func.hashtext(ids.c.provider_id))))
    await conn.execute(locks)


# A dispatcher stores a SID within seconds of Twilio answering; days later it never will.
EARLY_REPORT_DAYS = 2


async def keep_early_report(
    conn: AsyncConnection, provider_id: str, source: str, status: str, error_code: str | None, received_at: float
) -> int:
    """A report for a message id no delivery holds yet, kept until the dispatcher stores that id.
    Kept reports older than EARLY_REPORT_DAYS name a message no delivery will ever hold: forgotten
    here (only kept reports carry a provider_id, so the index finds them alone)."""
    await conn.execute(
        delete(receipts).where(
            receipts.c.provider_id.is_not(None),
            receipts.c.delivery_id.is_(None),
            receipts.c.received_at < received_at - EARLY_REPORT_DAYS * 86400,
        )
    )
    result = await conn.execute(
        insert(receipts).values(
            delivery_id=None,
            provider_id=provider_id,
            source=source,
            status=status,
            error_code=error_code,
            detail={"early": True},
            received_at=received_at,
        )
    )
    return inserted_id(result)


async def take_early_reports(conn: AsyncConnection, provider_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Remove and return the kept reports for these message ids, oldest first."""
    if not provider_ids:
        return []
    waiting = (receipts.c.provider_id.in_(list(provider_ids)), receipts.c.delivery_id.is_(None))
    taken = delete(receipts).where(*waiting).returning(*receipts.c)
    return sorted((dict(r) for r in (await conn.execute(taken)).mappings()), key=lambda r: r["id"])
