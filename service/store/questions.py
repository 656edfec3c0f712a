"""Partner questions and inbound mail. Reminders are claimed like deliveries (SKIP LOCKED)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import contacts, inbound_mail, partners, questions


async def insert_question(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(questions).values(**values).returning(questions.c.id))
    return int(result.scalar_one())


async def get_question(conn: AsyncConnection, question_id: int, for_update: bool = False) -> dict[str, Any] | None:
    query = select(questions).where(questions.c.id == question_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def update_question(conn: AsyncConnection, question_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(questions).where(questions.c.id == question_id).values(**values))


async def questions_of_incident(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    """Oldest first, each with the asker's and the partner's names."""
    query = (
        select(questions, contacts.c.name.label("contact_name"), partners.c.name.label("partner_name"))
        .select_from(
            questions.outerjoin(contacts, contacts.c.id == questions.c.contact_id).outerjoin(
                partners, partners.c.id == questions.c.partner_id
            )
        )
        .where(questions.c.incident_id == incident_id)
        .order_by(questions.c.asked_at, questions.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def answers_to_publish(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    """Answered questions an operator chose to publish that no notice has carried yet."""
    query = (
        select(questions)
        .where(
            questions.c.incident_id == incident_id,
            questions.c.state == "answered",
            questions.c.publish.is_not(None),
            questions.c.published_in_notice_id.is_(None),
        )
        .order_by(questions.c.answered_at, questions.c.id)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def mark_published(conn: AsyncConnection, question_ids: Sequence[int], notice_id: int) -> None:
    await conn.execute(
        update(questions).where(questions.c.id.in_(list(question_ids))).values(published_in_notice_id=notice_id)
    )


async def claim_due_reminders(conn: AsyncConnection, limit: int, now: float) -> list[dict[str, Any]]:
    query = (
        select(questions)
        .where(questions.c.state == "open", questions.c.remind_due_at <= now)
        .order_by(questions.c.remind_due_at, questions.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def insert_inbound_mail(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(inbound_mail).values(**values).returning(inbound_mail.c.id))
    return int(result.scalar_one())


async def list_inbound_mail(
    conn: AsyncConnection, outcomes: Sequence[str], before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first, without the raw message (GET one by id for that)."""
    columns = [c for c in inbound_mail.c if c.name != "raw"]
    query = select(*columns).order_by(inbound_mail.c.id.desc()).limit(limit)
    if outcomes:
        query = query.where(inbound_mail.c.outcome.in_(list(outcomes)))
    if before_id is not None:
        query = query.where(inbound_mail.c.id < before_id)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def contact_by_email(conn: AsyncConnection, address: str) -> list[dict[str, Any]]:
    """Every contact with this email address (case-insensitive), in any partner."""
    rows = await conn.execute(select(contacts).where(func.lower(contacts.c.email) == address.lower()))
    return [dict(r) for r in rows.mappings()]


async def get_contact(conn: AsyncConnection, contact_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings().first()
    return dict(row) if row else None


async def set_inbound_question(conn: AsyncConnection, mail_id: int, question_id: int) -> None:
    await conn.execute(update(inbound_mail).where(inbound_mail.c.id == mail_id).values(question_id=question_id))
