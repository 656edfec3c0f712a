"""The outbox. Claiming locks the most urgent due rows (SKIP LOCKED) and leases them in one transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Text,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.models import Delivery, Outcome, Recipient
from service.store.tables import contacts, deliveries, delivery_attempts, partners, suppressions

INSERT_CHUNK = 2000
# Terminal or receipt-driven states a worker's late result must never overwrite.
FINAL = ("delivered", "undelivered", "bounced", "acknowledged", "failed", "dead")


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        await conn.execute(deliveries.insert(), list(rows[start : start + INSERT_CHUNK]))


async def claim_due(
    conn: AsyncConnection,
    channels: Sequence[str],
    limit: int,
    worker: str,
    lease_seconds: float,
    now: float | None = None,
    max_priority: int | None = None,
) -> list[Delivery]:
    """Lease up to `limit` due deliveries, most urgent first (only those of priority ≤
    `max_priority` when given), each with the `recipient` its text greets and whether its address
    has been `suppressed` since it was planned. Two processes never get the same row (SKIP LOCKED
    on PostgreSQL; SQLite has a single writer).

    One statement, one round trip: the due ids come from `ix_deliveries_due` alone (its columns are
    the ORDER BY, so the LIMIT stops the index scan early and FOR UPDATE locks only those rows),
    the UPDATE leases them, and RETURNING brings back the rows with the names the templates greet
    and the suppression check (no second query per batch).
    On PostgreSQL the ids are a MATERIALIZED CTE, so the LIMITed, locking SELECT runs exactly once.
    """
    now = time.time() if now is None else now
    conditions = [
        deliveries.c.status == "pending",
        deliveries.c.channel.in_(list(channels)),
        deliveries.c.next_attempt_at <= now,
    ]
    if max_priority is not None:
        conditions.append(deliveries.c.priority <= max_priority)
    due = (
        select(deliveries.c.id)
        .where(*conditions)
        .order_by(deliveries.c.priority, deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = update(deliveries).values(
        status="sending",
        lease_until=now + lease_seconds,
        worker=worker,
        attempts=deliveries.c.attempts + 1,
        updated_at=now,
    )
    if conn.dialect.name == "postgresql":
        ids = due.cte("due").prefix_with("MATERIALIZED", dialect="postgresql")
        claim = claim.where(deliveries.c.id == ids.c.id)
    else:
        claim = claim.where(deliveries.c.id.in_(due.scalar_subquery()))
    claim = claim.returning(*deliveries.c, _RECIPIENT_NAME, _PARTNER_NAME, _SUPPRESSED)
    claimed = [
        Delivery.from_row(r, recipient=Recipient(r["recipient_name"], r["partner_name"], r["tier"]))
        for r in (await conn.execute(claim)).mappings()
    ]
    claimed.sort(key=lambda d: (d.priority, d.next_attempt_at, d.id))
    return claimed


_RECIPIENT_NAME = (
    select(contacts.c.name).where(contacts.c.id == deliveries.c.contact_id).scalar_subquery().label("recipient_name")
)
_PARTNER_NAME = (
    select(partners.c.name).where(partners.c.id == deliveries.c.partner_id).scalar_subquery().label("partner_name")
)


# SQLAlchemy writes RETURNING's columns without their table on SQLite, where `channel = channel`
# inside the subquery would compare the suppression with itself: the columns are named in full.
def _qualified(column: Column[Any]) -> ColumnElement[Any]:
    return literal_column(f"{column.table.name}.{column.name}")


_SUPPRESSED = (
    exists()
    .where(
        _qualified(suppressions.c.channel) == _qualified(deliveries.c.channel),
        _qualified(suppressions.c.address) == _qualified(deliveries.c.address),
        _qualified(suppressions.c.cleared_at).is_(None),
    )
    .select_from(suppressions)
    .label("suppressed")
)


async def extend_leases(conn: AsyncConnection, ids: Sequence[int], worker: str, until: float) -> int:
    """A live worker keeps its claim while a slow batch is still being sent."""
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(list(ids)), deliveries.c.status == "sending", deliveries.c.worker == worker)
        .values(lease_until=until)
    )
    return int(result.rowcount or 0)


async def release_expired_leases(conn: AsyncConnection, now: float | None = None) -> int:
    """Rows a dead worker left in `sending` go back to the queue."""
    now = time.time() if now is None else now
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.status == "sending", deliveries.c.lease_until < now)
        .values(status="pending", lease_until=None, worker=None, next_attempt_at=now, updated_at=now)
    )
    return int(result.rowcount or 0)


_record = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.status == "sending",
        deliveries.c.worker == bindparam("b_worker"),
        # Ties the outcome to one claim: a row re-claimed since then has more attempts.
        deliveries.c.attempts == bindparam("b_attempts"),
    )
    .values(
        status=bindparam("b_status"),
        provider_id=bindparam("b_provider_id"),
        provider_status=bindparam("b_provider_status"),
        last_error=bindparam("b_last_error"),
        error_code=bindparam("b_error_code"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        body_hash=bindparam("b_body_hash"),
        sent_at=bindparam("b_sent_at"),
        failed_at=bindparam("b_failed_at"),
        # Only an outcome that names a reason (suppressed) replaces the one planned (held, merged).
        reason=func.coalesce(bindparam("b_reason"), deliveries.c.reason),
        lease_until=None,
        updated_at=bindparam("b_updated_at"),
    )
)

OUTCOME_KEYS = (
    "id", "worker", "attempts", "status", "provider_id", "provider_status", "last_error", "error_code",
    "next_attempt_at", "body_hash", "sent_at", "failed_at", "updated_at", "reason",
)  # fmt: skip


async def record_outcomes(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    """Write a batch of attempt results and one history row per attempt made. A row no longer
    leased by this worker is left alone; its attempt is still in the history.

    On PostgreSQL both writes are one statement (the batch as arrays, unnested once: a
    data-modifying CTE inserts the history, the UPDATE writes the outcomes), so a batch costs one
    round trip whatever its size. SQLite runs in-process: two executemany.
    """
    if not outcomes:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(_RECORD_POSTGRES, _as_arrays(outcomes))
        return
    await conn.execute(_record, [{f"b_{k}": getattr(o, k) for k in OUTCOME_KEYS} for o in outcomes])
    await conn.execute(delivery_attempts.insert(), [_attempt_row(o) for o in outcomes])


# What an attempt's outcome says about the attempt itself (the delivery's status after it).
ATTEMPT_OUTCOME = {"sent": "sent", "pending": "retry", "failed": "failed", "dead": "dead"}


def _attempt_row(o: Outcome) -> dict[str, Any]:
    return {
        "delivery_id": o.id,
        "attempt": o.attempts,
        "worker": o.worker,
        "at": o.updated_at,
        "outcome": ATTEMPT_OUTCOME.get(o.status, o.status),
        "error": o.last_error,
        "error_code": o.error_code,
        "provider_id": o.provider_id,
        "send_seconds": o.send_seconds,
    }


# The batch's columns, in the order `_RECORD_POSTGRES` unnests them.
_ARRAYS = (
    "id", "worker", "attempts", "status", "provider_id", "provider_status", "last_error", "error_code",
    "next_attempt_at", "body_hash", "sent_at", "failed_at", "updated_at", "reason", "send_seconds", "outcome",
)  # fmt: skip
_RECORD_POSTGRES = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:id AS bigint[]), CAST(:worker AS text[]), CAST(:attempts AS integer[]),
            CAST(:status AS text[]), CAST(:provider_id AS text[]), CAST(:provider_status AS text[]),
            CAST(:last_error AS text[]), CAST(:error_code AS text[]), CAST(:next_attempt_at AS float8[]),
            CAST(:body_hash AS text[]), CAST(:sent_at AS float8[]), CAST(:failed_at AS float8[]),
            CAST(:updated_at AS float8[]), CAST(:reason AS text[]), CAST(:send_seconds AS float8[]),
            CAST(:outcome AS text[])
        ) AS v(id, worker, attempts, status, provider_id, provider_status, last_error, error_code,
               next_attempt_at, body_hash, sent_at, failed_at, updated_at, reason, send_seconds, outcome)
    ),
    history AS (
        INSERT INTO delivery_attempts
            (delivery_id, attempt, worker, at, outcome, error, error_code, provider_id, send_seconds)
        SELECT id, attempts, worker, updated_at, outcome, last_error, error_code, provider_id, send_seconds FROM v
    )
    UPDATE deliveries SET
        status = v.status, provider_id = v.provider_id, provider_status = v.provider_status,
        last_error = v.last_error, error_code = v.error_code, next_attempt_at = v.next_attempt_at,
        body_hash = v.body_hash, sent_at = v.sent_at, failed_at = v.failed_at,
        reason = coalesce(v.reason, deliveries.reason), lease_until = NULL, updated_at = v.updated_at
    FROM v
    WHERE deliveries.id = v.id AND deliveries.status = 'sending' AND deliveries.worker = v.worker
        AND deliveries.attempts = v.attempts
    """
)


def _as_arrays(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    """The batch column by column, as `_RECORD_POSTGRES` takes it (same conditions as `_record`)."""
    arrays: dict[str, list[Any]] = {name: [] for name in _ARRAYS}
    for o in outcomes:
        for name in OUTCOME_KEYS:
            arrays[name].append(getattr(o, name))
        arrays["send_seconds"].append(o.send_seconds)
        arrays["outcome"].append(ATTEMPT_OUTCOME.get(o.status, o.status))
    return arrays


async def attempts_of(conn: AsyncConnection, delivery_id: int) -> list[dict[str, Any]]:
    query = select(delivery_attempts).where(delivery_attempts.c.delivery_id == delivery_id)
    return [dict(r) for r in (await conn.execute(query.order_by(delivery_attempts.c.id))).mappings()]


async def get_delivery(conn: AsyncConnection, delivery_id: int, for_update: bool = False) -> dict[str, Any] | None:
    query = select(deliveries).where(deliveries.c.id == delivery_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def requeue(conn: AsyncConnection, delivery_id: int, now: float | None = None) -> bool:
    """An operator's retry of a dead or failed delivery: a fresh set of attempts, due now."""
    now = time.time() if now is None else now
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status.in_(("dead", "failed", "undelivered", "bounced")))
        .values(status="pending", attempts=0, next_attempt_at=now, lease_until=None, worker=None, updated_at=now)
    )
    return bool(result.rowcount)


async def recipients(conn: AsyncConnection, contact_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Names the templates greet: contact name and partner name, by contact id."""
    query = (
        select(contacts.c.id, contacts.c.name, partners.c.name.label("partner_name"))
        .join(partners, partners.c.id == contacts.c.partner_id)
        .where(contacts.c.id.in_(list(set(contact_ids))))
    )
    return {int(r["id"]): dict(r) for r in (await conn.execute(query)).mappings()}


async def queue_depth(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """Deliveries not yet handed over, by channel and status (pending, sending)."""
    query = (
        select(deliveries.c.channel, deliveries.c.status, func.count())
        .where(deliveries.c.status.in_(("pending", "sending")))
        .group_by(deliveries.c.channel, deliveries.c.status)
    )
    return {(channel, status): int(count) for channel, status, count in await conn.execute(query)}


async def contact_history(
    conn: AsyncConnection, incident_id: int | None, contact_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    """Every delivery of the incident to these contacts, oldest first, by contact id."""
    if incident_id is None or not contact_ids:
        return {}
    columns = [
        deliveries.c.id, deliveries.c.notice_id, deliveries.c.contact_id, deliveries.c.channel,
        deliveries.c.status, deliveries.c.reason, cast(deliveries.c.detail, Text).label("detail"),
        deliveries.c.attempts, deliveries.c.created_at, deliveries.c.sent_at, deliveries.c.next_attempt_at,
    ]  # fmt: skip
    query = (
        select(*columns)
        .where(deliveries.c.incident_id == incident_id, deliveries.c.contact_id.in_(list(set(contact_ids))))
        .order_by(deliveries.c.id)
    )
    found: dict[int, list[dict[str, Any]]] = {}
    # A whole incident's history is read for each plan: rows zipped, `detail` decoded only when set.
    names = [column.name for column in columns]
    for row in await conn.execute(query):
        delivery = dict(zip(names, row, strict=True))
        delivery["detail"] = None if row.detail in (None, "null") else json.loads(row.detail)
        found.setdefault(int(row.contact_id), []).append(delivery)
    return found


async def contacts_with_history(
    conn: AsyncConnection,
    incident_id: int,
    *,
    capped: bool,
    sms_cap: int,
    sms_since: float,
    held_after: float | None,
    sent_since: float | None,
    not_sent: Sequence[str],
) -> dict[int, str]:
    """Contact id -> partner id of the incident's contacts with a delivery row of these sorts: an
    SMS the cap skipped (`capped`), `sms_cap` or more SMS sent since `sms_since` (0 = none), a held
    row not yet attempted and due after `held_after`, a row sent since `sent_since`. One grouped
    statement, so a plan reads the history only of the contacts it may concern
    (volume.contacts_history_may_bear)."""
    sent = deliveries.c.status.not_in(list(not_sent))
    sms = deliveries.c.channel == "sms"
    any_of: list[ColumnElement[bool]] = []
    if capped:
        any_of.append(sms & (deliveries.c.status == "skipped") & (deliveries.c.reason == "capped"))
    if held_after is not None:
        any_of.append(
            (deliveries.c.status == "pending")
            & (deliveries.c.attempts == 0)
            & (deliveries.c.next_attempt_at > held_after)
            & deliveries.c.reason.in_(["held", "merged"])
        )
    if sent_since is not None:
        any_of.append(sent & (func.coalesce(deliveries.c.sent_at, deliveries.c.next_attempt_at) > sent_since))
    having: list[ColumnElement[bool]] = [func.max(case((or_(*any_of), 1), else_=0)) == 1] if any_of else []
    if sms_cap:
        recent = case((sms & sent & (deliveries.c.created_at >= sms_since), 1), else_=0)
        having.append(func.sum(recent) >= sms_cap)
    if not having:
        return {}
    query = (
        select(deliveries.c.contact_id, func.min(deliveries.c.partner_id))
        .where(deliveries.c.incident_id == incident_id, deliveries.c.contact_id != 0)
        .group_by(deliveries.c.contact_id)
        .having(or_(*having))
    )
    return {int(contact_id): partner_id for contact_id, partner_id in await conn.execute(query)}


async def mark_merged(conn: AsyncConnection, superseded: Sequence[tuple[int, str]], now: float) -> None:
    """Held rows a later update replaced: they will never be sent, and say which row carries them."""
    for delivery_id, carried_by in superseded:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.status == "pending")
            .values(status="merged", reason="merged", detail={"merged_into": carried_by}, updated_at=now)
        )


async def count_of_notice(conn: AsyncConnection, notice_id: int, exclude: Sequence[str] = ()) -> int:
    """How many deliveries the notice has, not counting those in the `exclude` statuses."""
    query = select(func.count()).where(deliveries.c.notice_id == notice_id, deliveries.c.status.not_in(exclude))
    return int(await conn.scalar(query) or 0)


async def plan_of_notice(conn: AsyncConnection, notice_id: int) -> list[dict[str, Any]]:
    """Tier, channel, status and priority of each of the notice's deliveries, in the order they left."""
    columns = (deliveries.c.tier, deliveries.c.channel, deliveries.c.status, deliveries.c.priority)
    query = select(*columns).where(deliveries.c.notice_id == notice_id).order_by(deliveries.c.sent_at)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


UNREACHED = ("failed", "undelivered", "bounced", "dead")


async def reached_by_notice(conn: AsyncConnection, notice_id: int) -> list[dict[str, Any]]:
    """Each contact × channel × address the notice went to (or is still going to), once, skipping
    deliveries that failed for good: who a correction of the notice must reach."""
    c = deliveries.c
    query = (
        select(c.partner_id, c.contact_id, c.tier, c.channel, c.address, c.language)
        .where(c.notice_id == notice_id, c.status.not_in(UNREACHED))
        .distinct()
        .order_by(c.partner_id, c.tier, c.contact_id, c.channel, c.address)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
