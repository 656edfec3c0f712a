"""The sandbox channel's mailbox: every message it would have sent, kept for the console and demos."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.tables import sandbox_messages


async def record_message(
    conn: AsyncConnection,
    channel: str,
    delivery_id: int,
    recipient: str,
    subject: str | None,
    body: str,
    html: str | None,
    message_id: str,
) -> None:
    await conn.execute(
        insert(sandbox_messages).values(
            delivery_id=delivery_id,
            channel=channel,
            recipient=recipient,
            subject=subject,
            body=body,
            html=html,
            message_id=message_id,
            created_at=time.time(),
        )
    )


async def first_message(conn: AsyncConnection, channel: str) -> dict[str, Any] | None:
    query = select(sandbox_messages).where(sandbox_messages.c.channel == channel).order_by(sandbox_messages.c.id)
    row = (await conn.execute(query.limit(1))).mappings().first()
    return dict(row) if row else None
