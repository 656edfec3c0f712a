"""Inbound events, idempotency keys and the audit log: what Herald was told and what it did."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import audit_log, idempotency_keys, inbound_events


async def record_inbound(
    conn: AsyncConnection,
    source: str,
    body: bytes | str,
    principal: str | None = None,
    content_type: str | None = None,
    outcome: str = "accepted",
    incident_id: int | None = None,
    notice_id: int | None = None,
) -> int:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    # Kept as received, except what no text column can hold (PostgreSQL refuses NUL).
    text = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    result = await conn.execute(
        insert(inbound_events).values(
            source=source,
            principal=principal,
            received_at=time.time(),
            content_type=content_type,
            body=text,
            outcome=outcome,
            incident_id=incident_id,
            notice_id=notice_id,
        )
    )
    return inserted_id(result)


async def audit(
    conn: AsyncConnection,
    action: str,
    subject_type: str,
    subject_id: Any,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(audit_log).values(
            at=time.time(),
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=None if subject_id is None else str(subject_id),
            detail=detail,
        )
    )


async def find_idempotent(conn: AsyncConnection, principal: str, key: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(idempotency_keys).where(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def claim_idempotency_key(
    conn: AsyncConnection, principal: str, key: str, route: str, request_hash: str, now: float | None = None
) -> bool:
    """Claim a key for the request about to run: True for exactly one of any number of concurrent
    claimants (the primary key decides), False when the key was claimed before."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(idempotency_keys).values(
                    principal=principal,
                    key=key,
                    route=route,
                    request_hash=request_hash,
                    created_at=time.time() if now is None else now,
                )
            )
    except IntegrityError:
        return False
    return True


async def complete_idempotency_key(conn: AsyncConnection, principal: str, key: str, status: int, response: str) -> None:
    await conn.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
        .values(status=status, response=response, completed_at=time.time())
    )


async def release_idempotency_key(conn: AsyncConnection, principal: str, key: str) -> None:
    """The claimed request failed without an answer worth replaying: the key is free again."""
    await conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.principal == principal,
            idempotency_keys.c.key == key,
            idempotency_keys.c.completed_at.is_(None),
        )
    )
