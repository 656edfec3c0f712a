"""The ingest writer: re-sends are written in batches; a webhook that changes something is applied
in a transaction of its own, right after.

Every webhook's raw body is stored with its effect, committed before the reply. Batching is what
lets SQLite (one writer) keep up with a monitoring storm: the expensive part of a write is the
round trips to the database, and a batch of repeat_interval re-sends costs one read of every
group it names and one write transaction inserting every raw body, however many webhooks it
holds. A webhook that opens, widens or resolves an incident (milliseconds: the incident, its
notice, maybe its plan) goes to the change queue instead and is applied there with its raw body
in one transaction, one webhook at a time, in arrival order; the batch of re-sends around it is
committed and answered without waiting for it. While a group has a change queued, every later
webhook naming that group joins the queue behind it, so a group's webhooks take effect in the
order they came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
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
        self._changes: asyncio.Queue[Webhook] = asyncio.Queue()
        self._changing: Counter[str] = Counter()  # group keys with a change queued or being applied
        self._tasks: list[asyncio.Task[None]] = []

    async def submit(self, webhook: Webhook) -> list[IngestResult]:
        """Queue the webhook and wait until its effect and its raw body are committed."""
        if not self._tasks:
            raise Unavailable("Herald is starting or stopping; retry shortly", retry_after=2)
        self._queue.put_nowait(webhook)
        return await webhook.reply

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="herald-ingest-writer"),
            asyncio.create_task(self._run_changes(), name="herald-ingest-changes"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in (self._queue, self._changes):
            while not queue.empty():
                _answer(queue.get_nowait(), Unavailable("Herald is stopping; retry shortly", retry_after=2))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[Webhook]) -> None:
        try:
            repeats = await self._write_repeats(batch)
        except Exception as exc:
            log.exception("writing a batch of %d webhooks failed", len(batch))
            for webhook in batch:
                _answer(webhook, exc)
            return
        for webhook, outcome in repeats:
            _answer(webhook, outcome)

    async def _write_repeats(self, batch: list[Webhook]) -> list[tuple[Webhook, list[IngestResult]]]:
        """Answer the batch's plain re-sends with one write; queue the others as changes.

        The groups are read before the write transaction (on SQLite, without the writer's turn): a
        re-send writes nothing but its raw body, so judging it against the groups as they were
        just before is the same as having written it then. A group with a change of ours still
        queued is not judged here at all (`_changing` is read before the groups are).
        """
        changing = set(self._changing)
        async with self._store.read() as conn:
            known = await alert_store.get_groups(conn, (e.key for w in batch for e in w.events))
        repeats = []
        for webhook in batch:
            keys = [e.key for e in webhook.events]
            if any(key in changing for key in keys) or not all(
                plain_repeat(known.get(e.key), e) for e in webhook.events
            ):
                changing.update(keys)
                self._changing.update(keys)
                self._changes.put_nowait(webhook)
                continue
            repeats.append((webhook, [_duplicate(known.get(key)) for key in keys]))
        if repeats:
            async with self._store.begin() as conn:
                await alert_store.insert_inbound_events(conn, [_inbound_row(w, outcome) for w, outcome in repeats])
        return repeats

    async def _run_changes(self) -> None:
        while True:
            webhook = await self._changes.get()
            try:
                outcome: list[IngestResult] | Exception = await self._write_change(webhook)
            except Exception as exc:
                log.exception("writing a %s webhook failed", webhook.source)
                outcome = exc
            finally:
                self._done_changing(webhook)
            _answer(webhook, outcome)

    def _done_changing(self, webhook: Webhook) -> None:
        for event in webhook.events:
            self._changing[event.key] -= 1
            if self._changing[event.key] <= 0:
                del self._changing[event.key]

    async def _write_change(self, webhook: Webhook) -> list[IngestResult] | Exception:
        async with self._store.begin() as conn:
            outcome = await self._apply(conn, webhook)
            await alert_store.insert_inbound_events(conn, [_inbound_row(webhook, outcome)])
        return outcome

    async def _apply(self, conn: AsyncConnection, webhook: Webhook) -> list[IngestResult] | Exception:
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
