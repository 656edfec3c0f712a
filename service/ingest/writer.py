"""The ingest writer: webhooks are written in batches, one transaction per batch (group commit).

Each webhook still gets its effect and its raw body in the same transaction, committed before the
reply. Batching is what lets SQLite (one writer) keep up with a monitoring storm: the expensive
part of a write is the round trips to the database thread, and a batch of repeat_interval re-sends
costs four of them in all — begin, one read of every group it names, one insert of every raw body,
commit — however many webhooks it holds. A webhook that changes something runs inside its own
savepoint, so one failing webhook fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import HeraldError, Unavailable, invalid_input
from service.ingest.correlate import IngestResult, apply_event, plain_repeat
from service.ingest.events import IncidentEvent
from service.settings import Settings
from service.store import Store
from service.store import alerts as alert_store

log = logging.getLogger("herald.ingest")

MAX_BATCH = 256
# The first firing of one new group in two concurrent transactions (PostgreSQL) makes one of them
# hit the unique key; retried, it sees the other's group and de-duplicates against it.
ATTEMPTS = 3


@dataclass
class Webhook:
    source: str
    events: list[IncidentEvent]
    raw: bytes
    actor: str
    content_type: str
    received_at: float = field(default_factory=time.time)
    reply: asyncio.Future[list[IngestResult]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IngestWriter:
    def __init__(self, store: Store, settings: Settings, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._settings = settings
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Webhook] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, webhook: Webhook) -> list[IngestResult]:
        """Queue the webhook and wait until its batch is committed."""
        if self._task is None:
            raise Unavailable("Herald is starting or stopping; retry shortly", retry_after=2)
        self._queue.put_nowait(webhook)
        return await webhook.reply

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="herald-ingest-writer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            _answer(self._queue.get_nowait(), Unavailable("Herald is stopping; retry shortly", retry_after=2))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[Webhook]) -> None:
        try:
            outcomes = await self._write_batch(batch)
        except Exception as exc:
            log.exception("writing a batch of %d webhooks failed", len(batch))
            outcomes = [exc] * len(batch)
        for webhook, outcome in zip(batch, outcomes, strict=True):
            _answer(webhook, outcome)

    async def _write_batch(self, batch: list[Webhook]) -> list[list[IngestResult] | Exception]:
        async with self._store.begin() as conn:
            known = await alert_store.get_groups(conn, (e.key for w in batch for e in w.events))
            changed: set[str] = set()  # groups an earlier webhook of this batch wrote: read them afresh
            outcomes: list[list[IngestResult] | Exception] = []
            rows = []
            for webhook in batch:
                outcome = await self._apply(conn, webhook, known, changed)
                outcomes.append(outcome)
                rows.append(_inbound_row(webhook, outcome))
            await alert_store.insert_inbound_events(conn, rows)
        return outcomes

    async def _apply(
        self, conn: AsyncConnection, webhook: Webhook, known: dict[str, dict[str, Any]], changed: set[str]
    ) -> list[IngestResult] | Exception:
        events = webhook.events
        if all(e.key not in changed and plain_repeat(known.get(e.key), e) for e in events):
            return [_duplicate(known.get(e.key)) for e in events]
        changed.update(e.key for e in events)
        try:
            return await self._apply_in_savepoint(conn, webhook)
        except ValidationError as exc:  # a value the edge let through that an incident cannot hold
            log.exception("a %s webhook passed the edge checks but not the incident's", webhook.source)
            return invalid_input(exc)
        except Exception as exc:
            if not isinstance(exc, HeraldError):
                log.exception("applying a %s webhook failed", webhook.source)
            return exc

    async def _apply_in_savepoint(self, conn: AsyncConnection, webhook: Webhook) -> list[IngestResult]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with conn.begin_nested():
                    return [
                        await apply_event(conn, self._settings, event, webhook.actor, webhook.received_at)
                        for event in webhook.events
                    ]
            except IntegrityError:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")


def _duplicate(group: dict[str, Any] | None) -> IngestResult:
    return IngestResult(group["incident_id"] if group else None, None, "duplicate")


def _inbound_row(webhook: Webhook, outcome: list[IngestResult] | Exception) -> dict[str, Any]:
    first = outcome[0] if isinstance(outcome, list) else None
    label: str
    if first is not None:
        label = first.action
    elif isinstance(outcome, HeraldError):
        label = f"rejected:{outcome.code}"
    else:
        label = "error"
    return {
        "source": webhook.source,
        "principal": webhook.actor,
        "received_at": webhook.received_at,
        "content_type": webhook.content_type,
        "body": webhook.raw.decode("utf-8", "replace"),
        "outcome": label,
        "incident_id": first.incident_id if first else None,
        "notice_id": first.notice_id if first else None,
    }


def _answer(webhook: Webhook, outcome: list[IngestResult] | BaseException) -> None:
    if webhook.reply.done():  # the sender went away
        return
    if isinstance(outcome, BaseException):
        webhook.reply.set_exception(outcome)
    else:
        webhook.reply.set_result(outcome)
