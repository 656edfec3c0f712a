"""Dispatcher: one lane per channel claims due deliveries by priority, sends, records the outcome.

Channels only classify failures (TransientError / PermanentError); the retry policy lives here.
A lane that dies mid-batch leaves `sending` rows whose lease expires, and the reaper re-queues them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel, PermanentError, TransientError
from service import compose, internal_mail, receipts, suppression
from service.errors import Conflict, NotFound
from service.pacing import Pacer
from service.retry import RetryPolicy
from service.settings import Settings
from service.store import Store
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store import receipts as receipt_store
from service.store import suppressions as suppression_store
from service.store.models import AttemptStatus, Delivery, Incident, Notice, Outcome
from service.store.records import audit
from service.suppression import failure_suppresses

log = logging.getLogger("herald.dispatcher")

LOOPS_PER_LANE = 2
# Critical tier-1 work (planner.priority_of: critical is 0-99, tier 1 is 0-9; critical tier-1 SMS
# is 0) has a claimer of its own on every lane, woken when it is planned, with its own batch: it
# never waits for a bulk batch on the wire to finish before being claimed.
URGENT_MAX_PRIORITY = 9
URGENT_BATCH = 8
# An idle lane's loops other than its poller look at the queue this many poll intervals apart.
IDLE_SIBLING_POLLS = 20
# Channels whose provider reports by callback, possibly before we stored its message id.
REPORTED_BY_CALLBACK = frozenset({"sms"})
AckLink = Callable[[Delivery], "str | None"]
PageLink = Callable[[Delivery], "str | None"]
# The signed Reply-To that turns a partner's reply into a question (None: our responsible contact).
ReplyAddress = Callable[[Delivery], "str | None"]
Observer = Callable[[Delivery, Outcome], None]


@dataclass(frozen=True, slots=True)
class Composable:
    """What a delivery's text is made from besides the delivery itself: its notice, the incident
    as of the notice (severity and status as it was written), and the version it corrects."""

    notice: Notice
    incident: Incident | None
    corrects_version: int | None


@dataclass(frozen=True)
class Leased:
    """Critical deliveries a request leased in its transaction, with the notices they are composed
    from, to be handed over once it commits (`Dispatcher.lease_urgent`, `Dispatcher.hand_over`)."""

    deliveries: list[Delivery] = field(default_factory=list)
    notices: dict[int, Composable] = field(default_factory=dict)


@dataclass
class _Tried:
    """How far an attempt got: the hash of the text it composed, the time it spent sending."""

    body_hash: str | None = None
    send_seconds: float | None = None


@dataclass
class _NoticeCache:
    """Published notices are immutable, so a small LRU saves a query per batch."""

    size: int = 256
    items: OrderedDict[int, Composable] = field(default_factory=OrderedDict)

    def __contains__(self, notice_id: int) -> bool:
        return notice_id in self.items

    def get(self, notice_id: int) -> Composable | None:
        if notice_id in self.items:
            self.items.move_to_end(notice_id)
        return self.items.get(notice_id)

    def put(self, notice_id: int, value: Composable) -> None:
        self.items[notice_id] = value
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        channels: Mapping[str, Channel],
        ack_link: AckLink | None = None,
        observer: Observer | None = None,
        worker_id: str | None = None,
        page_link: PageLink | None = None,
        reply_address: ReplyAddress | None = None,
        drill_sandbox: Mapping[str, Channel] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.channels = dict(channels)
        # A sandbox drill's deliveries go here whatever their channel: nothing leaves the machine.
        self.drill_sandbox = dict(drill_sandbox or {})
        self.ack_link = ack_link or (lambda delivery: None)
        self.page_link = page_link or (lambda delivery: None)
        self.reply_address = reply_address or (lambda delivery: None)
        self.observer = observer
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.policy = RetryPolicy.from_settings(settings.dispatch)
        self._wakeups = {name: asyncio.Event() for name in self.channels}
        self._urgent_wakeups = {name: asyncio.Event() for name in self.channels}
        self.pacer = Pacer.from_settings(settings)
        self._tasks: list[asyncio.Task[None]] = []
        self._notices = _NoticeCache()
        self._stopping = False

    async def start(self) -> None:
        async with self.store.begin() as conn:
            resumed = await delivery_store.release_expired_leases(conn)
        if resumed:
            log.info("re-queued %d deliveries left in flight by a stopped worker", resumed)
        for name in self.channels:
            # Two loops per channel share its concurrency: while one records its outcomes and
            # claims again, the other's batch is on the wire, so connections do not idle.
            for n in range(self._loops(name)):
                lane = self._lane(name, polls=n == 0)
                self._tasks.append(asyncio.create_task(lane, name=f"lane-{name}-{n}"))
            urgent = self._lane(name, urgent=True, polls=False)
            self._tasks.append(asyncio.create_task(urgent, name=f"lane-{name}-urgent"))
        self._tasks.append(asyncio.create_task(self._reaper(), name="lease-reaper"))

    async def stop(self, grace: float = 10.0) -> None:
        """Let each lane finish the batch on the wire and record it, then stop. Cancelling mid-send
        would leave the batch to lease expiry (a resend) and a database call cut in half."""
        self._stopping = True
        self.wake()
        lanes = [t for t in self._tasks if t.get_name().startswith("lane-")]
        if lanes:
            await asyncio.wait(lanes, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _concurrency(self, channel: str) -> int:
        dispatch = self.settings.dispatch
        return dispatch.concurrency.get(channel, dispatch.batch_size)

    def _loops(self, channel: str) -> int:
        return min(LOOPS_PER_LANE, self._concurrency(channel))

    def wake(self) -> None:
        for event in (*self._wakeups.values(), *self._urgent_wakeups.values()):
            event.set()

    async def lease_urgent(self, conn: AsyncConnection) -> Leased:
        """Inside the transaction that planned work: lease the critical tier-1 deliveries due now
        (the ones it planned among them), to be handed to the lanes with `hand_over` once it has
        committed. They leave without another transaction first: no wait for SQLite's writer
        behind the next request or a broadcast's batch, no claim round trip. A rollback undoes
        the lease with the plan; a process that dies before sending leaves them to lease expiry.

        Their notices are read here too, on the connection the request already holds, so the
        sends start without a read of their own; they join the notice cache only once handed
        over, after the commit (a rolled-back notice's id may be given to another on SQLite)."""
        if not self._tasks or self._stopping:
            return Leased()
        deliveries = await delivery_store.claim_due(
            conn,
            list(self.channels),
            URGENT_BATCH * len(self.channels),
            self.worker_id,
            self.settings.dispatch.lease_seconds,
            max_priority=URGENT_MAX_PRIORITY,
        )
        notices = {d.notice_id for d in deliveries if d.notice_id not in self._notices}
        return Leased(deliveries, {notice_id: await load_notice(conn, notice_id) for notice_id in notices})

    def hand_over(self, leased: Leased) -> None:
        """Send what `lease_urgent` leased, each channel's share at once in a task of its own:
        never behind a batch already on the wire, the lane's urgent claimer's included."""
        for notice_id, composable in leased.notices.items():
            self._notices.put(notice_id, composable)
        by_channel: dict[str, list[Delivery]] = {}
        for delivery in leased.deliveries:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        for channel, batch in by_channel.items():
            task = asyncio.create_task(self._send_handed(channel, batch), name=f"lane-{channel}-handed")
            self._tasks.append(task)
            task.add_done_callback(self._forget)

    async def _send_handed(self, channel: str, batch: list[Delivery]) -> None:
        try:
            with self.store.foreground.held():  # bulk work waits while critical work is sent
                await self._dispatch(channel, batch, claim_next=None)
        except Exception:
            log.exception("sending urgent deliveries on %s failed; their lease expires and they are retried", channel)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _lane(self, channel: str, urgent: bool = False, polls: bool = True) -> None:
        """Claim and send batches until stopped. An idle lane has one loop polling the queue; its
        other loops sleep until that one finds work or Herald plans some, so an idle Herald does
        not keep the database busy with empty claims. The urgent loop is one of those sleepers:
        whoever plans urgent work in this process wakes it, and urgent work planned by another
        process (or due again after a failure) is what the poller's claim takes first."""
        wakeup = (self._urgent_wakeups if urgent else self._wakeups)[channel]
        idle_wait = self.settings.dispatch.poll_interval * (1 if polls else IDLE_SIBLING_POLLS)
        claimed: list[Delivery] = []
        while claimed or not self._stopping:  # a batch claimed before a stop is still sent
            try:
                if not claimed and not self._stopping:
                    if not urgent:
                        await self._step_aside()
                    async with self.store.begin(background=not urgent) as conn:
                        claimed = await self._claim(conn, channel, urgent)
                    if claimed and not urgent:
                        wakeup.set()  # more may be waiting: the lane's sleeping loops claim too
                if claimed:
                    # The outcomes are written in the transaction that claims the next batch.
                    claimed = await self._dispatch(channel, claimed, claim_next=urgent)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch lane %s failed; retrying", channel)
                claimed = []
            if self._stopping:
                break
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), idle_wait)

    async def _reaper(self) -> None:
        interval = max(self.settings.dispatch.lease_seconds / 4, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.store.begin(background=True) as conn:
                    if await delivery_store.release_expired_leases(conn):
                        self.wake()
            except Exception:
                log.exception("lease reaper failed; retrying")

    def _batch_size(self, channel: str, urgent: bool) -> int:
        size = URGENT_BATCH if urgent else -(-self._concurrency(channel) // self._loops(channel))
        rate = self.pacer.per_second(channel)
        if rate is not None:  # a paced lane leases about half a second of its budget at a time
            size = min(size, max(1, int(rate / 2)))
        return size

    async def run_once(self, channel: str, urgent: bool = False) -> int:
        """Claim one batch for `channel` (only critical tier-1 work when `urgent`), attempt every
        delivery in it, record the outcomes."""
        async with self.store.begin(background=not urgent) as conn:
            claimed = await self._claim(conn, channel, urgent)
        if claimed:
            await self._dispatch(channel, claimed, claim_next=None)
        return len(claimed)

    async def _claim(self, conn: AsyncConnection, channel: str, urgent: bool) -> list[Delivery]:
        return await delivery_store.claim_due(
            conn,
            [channel],
            self._batch_size(channel, urgent),
            self.worker_id,
            self.settings.dispatch.lease_seconds,
            max_priority=URGENT_MAX_PRIORITY if urgent else None,
        )

    async def _dispatch(self, channel: str, batch: list[Delivery], claim_next: bool | None) -> list[Delivery]:
        """Attempt every delivery of a claimed batch and record the outcomes; with `claim_next`
        (urgent or not), the same transaction claims the lane's next batch and returns it."""
        heartbeat = asyncio.create_task(self._keep_leases([d.id for d in batch]))
        try:
            loaded = await self._load(batch)
            letters = await self._compose_letters(batch, loaded)
            outcomes = await asyncio.gather(*await self._start_attempts(batch, loaded, letters))
        finally:
            heartbeat.cancel()
        reported = channel in REPORTED_BY_CALLBACK
        sids = [o.provider_id for o in outcomes if o.provider_id] if reported else []
        following: list[Delivery] = []
        carries_urgent_work = batch[0].priority <= URGENT_MAX_PRIORITY  # the batch is in priority order
        async with self.store.begin(background=not carries_urgent_work) as conn:
            await receipt_store.serialise_provider_ids(conn, sids)
            await delivery_store.record_outcomes(conn, outcomes)
            await receipts.apply_early_reports(conn, sids)
            await _suppress_refused(conn, batch, outcomes)
            # A bulk lane claims its next batch here only when no request is being written; else
            # it steps aside first (in _lane) and claims after.
            if claim_next is not None and not self._stopping and (claim_next or not self.store.foreground.busy):
                following = await self._claim(conn, channel, claim_next)
        if self.observer is not None:
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if delivery.purpose == "partner":  # owners' copies and answers are no partner figure
                    self.observer(delivery, outcome)
        return following

    async def _start_attempts(
        self,
        batch: list[Delivery],
        loaded: dict[int, Composable],
        letters: dict[int, internal_mail.Composed | Exception],
    ) -> list[asyncio.Task[Outcome]]:
        """Start the batch's attempts one a turn of the event loop.

        An attempt composes its message (templates, signed links: about half a millisecond) before
        its first await. Started together, a batch of 32 composes in a single turn, and a request
        or urgent delivery that is waiting on the database for its next statement waits for all
        of them, at every statement: under a 30,000-delivery broadcast that made the p99 of a
        critical SMS 116-140 ms instead of 73-78 ms, for no gain in throughput. A bulk batch also
        steps aside before each attempt while foreground work is being written.
        """
        attempts: list[asyncio.Task[Outcome]] = []
        bulk = batch[0].priority > URGENT_MAX_PRIORITY  # the batch is in priority order
        try:
            for d in batch:
                if bulk:
                    await self._step_aside()
                attempt = (
                    self._not_sent(d) if d.suppressed else self._attempt(d, loaded[d.notice_id], letters.get(d.id))
                )
                attempts.append(asyncio.create_task(attempt))
                await asyncio.sleep(0)
        except BaseException:
            for task in attempts:
                task.cancel()
            raise
        return attempts

    async def _step_aside(self) -> None:
        """Bulk work waits while requests and critical work are written (see Store.foreground):
        on two shared cores each of their statements otherwise waits behind a broadcast's, in the
        database and in the event loop alike (critical SMS p99 under a 30,000-delivery broadcast
        on PostgreSQL: 389-432 ms without, 63-64 ms with)."""
        await self.store.foreground.quiet(self.settings.dispatch.foreground_hold)

    async def _keep_leases(self, ids: list[int]) -> None:
        """Renew the batch's lease while it is being sent, so only a dead worker's rows expire."""
        lease = self.settings.dispatch.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with self.store.begin(background=True) as conn:
                    await delivery_store.extend_leases(conn, ids, self.worker_id, time.time() + lease)
            except Exception:
                log.exception("could not renew leases")

    async def _load(self, batch: list[Delivery]) -> dict[int, Composable]:
        loaded: dict[int, Composable] = {}
        missing = []
        for notice_id in {d.notice_id for d in batch}:
            cached = self._notices.get(notice_id)
            if cached is None:
                missing.append(notice_id)
            else:
                loaded[notice_id] = cached
        if missing:
            async with self.store.read() as conn:
                for notice_id in missing:
                    loaded[notice_id] = await load_notice(conn, notice_id)
                    self._notices.put(notice_id, loaded[notice_id])
        return loaded

    async def _compose_letters(
        self, batch: list[Delivery], loaded: dict[int, Composable]
    ) -> dict[int, internal_mail.Composed | Exception]:
        """Answers and account owners' copies read a little more than a notice needs: compose them
        up front, in one read; a failure is recorded by the attempt like any composition failure."""
        letters: dict[int, internal_mail.Composed | Exception] = {}
        others = [d for d in batch if d.purpose in internal_mail.LETTERS]
        if not others:
            return letters
        async with self.store.read() as conn:
            for delivery in others:
                composable = loaded[delivery.notice_id]
                try:
                    letters[delivery.id] = await internal_mail.compose_letter(
                        conn, self.settings, delivery, composable.notice, composable.incident, self.reply_address
                    )
                except Exception as exc:
                    letters[delivery.id] = exc
        return letters

    async def _attempt(
        self, delivery: Delivery, loaded: Composable, letter: internal_mail.Composed | Exception | None = None
    ) -> Outcome:
        tried = _Tried()
        try:
            if isinstance(letter, Exception):
                raise letter
            message, tried.body_hash = letter or compose.outbound(
                self.settings,
                delivery,
                loaded.notice,
                loaded.incident,
                self.ack_link(delivery),
                loaded.corrects_version,
                self.page_link(delivery),
                self.reply_address(delivery),
            )
            if delivery.priority <= URGENT_MAX_PRIORITY:
                message = replace(message, urgent=True)
            if self.pacer.paced(delivery.channel):
                await self.pacer.acquire(delivery.channel, delivery.priority)
            started = time.perf_counter()
            try:
                result = await self._channel_for(delivery).send(message)
            finally:
                tried.send_seconds = time.perf_counter() - started
        except PermanentError as exc:
            return self._failed(delivery, tried, "failed", exc.reason, exc.code)
        except TransientError as exc:
            return self._retry_or_die(delivery, tried, exc.reason, exc.code)
        except Exception as exc:
            log.exception("delivery %s: unexpected error", delivery.id)
            return self._retry_or_die(delivery, tried, f"{type(exc).__name__}: {exc}", None)
        now = time.time()
        return Outcome(
            id=delivery.id,
            worker=self.worker_id,
            attempts=delivery.attempts,
            status="sent",
            provider_id=result.provider_id,
            provider_status=result.provider_status,
            body_hash=tried.body_hash,
            sent_at=now,
            updated_at=now,
            next_attempt_at=delivery.next_attempt_at,
            send_seconds=tried.send_seconds,
        )

    async def _not_sent(self, delivery: Delivery) -> Outcome:
        """Planned before its address was suppressed: kept as skipped, never sent."""
        return Outcome(
            id=delivery.id,
            worker=self.worker_id,
            attempts=delivery.attempts,
            status="skipped",
            reason="suppressed",
            last_error="not sent: the address was suppressed after this delivery was planned",
            next_attempt_at=delivery.next_attempt_at,
            updated_at=time.time(),
        )

    def _channel_for(self, delivery: Delivery) -> Channel:
        if delivery.drill == "sandbox" and delivery.channel in self.drill_sandbox:
            return self.drill_sandbox[delivery.channel]
        return self.channels[delivery.channel]

    def _retry_or_die(self, delivery: Delivery, tried: _Tried, reason: str, code: str | None) -> Outcome:
        now = time.time()
        next_at = self.policy.next_attempt_at(delivery.attempts, delivery.created_at, now)
        if next_at is None:
            reason = f"gave up after {delivery.attempts} attempts: {reason}"
            return self._failed(delivery, tried, "dead", reason, code)
        log.info(
            "delivery %s: attempt %d failed (%s); retry in %.1fs", delivery.id, delivery.attempts, reason, next_at - now
        )
        return Outcome(
            id=delivery.id,
            worker=self.worker_id,
            attempts=delivery.attempts,
            status="pending",
            last_error=reason,
            error_code=code,
            next_attempt_at=next_at,
            updated_at=now,
            body_hash=tried.body_hash,
            send_seconds=tried.send_seconds,
        )

    def _failed(
        self, delivery: Delivery, tried: _Tried, status: AttemptStatus, reason: str, code: str | None
    ) -> Outcome:
        now = time.time()
        log.warning("delivery %s: %s (%s)", delivery.id, status, reason)
        return Outcome(
            id=delivery.id,
            worker=self.worker_id,
            attempts=delivery.attempts,
            status=status,
            last_error=reason,
            error_code=code,
            failed_at=now,
            updated_at=now,
            next_attempt_at=delivery.next_attempt_at,
            body_hash=tried.body_hash,
            send_seconds=tried.send_seconds,
        )


async def _suppress_refused(conn: AsyncConnection, batch: list[Delivery], outcomes: list[Outcome]) -> None:
    """An address the far side refused for good is suppressed in the same transaction."""
    for delivery, outcome in zip(batch, outcomes, strict=True):
        if outcome.status != "failed":
            continue
        reason = outcome.last_error or ""
        if failure_suppresses(delivery.channel, outcome.error_code, reason):
            source = "twilio" if delivery.channel == "sms" else "smtp"
            await suppression.suppress_for(conn, delivery, reason, outcome.error_code, source)


async def load_notice(conn: AsyncConnection, notice_id: int) -> Composable:
    """A notice with what its text is composed from (for sending, and for dry-run previews)."""
    notice = await incident_store.read_notice(conn, notice_id)
    if notice is None:
        raise LookupError(f"delivery refers to missing notice {notice_id}")
    incident = None
    if notice.incident_id is not None:
        incident = await incident_store.read_incident(conn, notice.incident_id)
    if incident is not None:
        # The notice speaks as of when it was written, not as the incident stands now.
        incident = replace(incident, severity=notice.severity, status=notice.status or incident.status)
    corrects_version = None
    if notice.corrects_id is not None:
        corrected = await incident_store.read_notice(conn, notice.corrects_id)
        corrects_version = corrected.version if corrected else None
    return Composable(notice, incident, corrects_version)


async def requeue_delivery(conn: AsyncConnection, delivery_id: int, actor: str | None) -> None:
    """An admin sends a dead or failed delivery again (from the API or the console)."""
    delivery = await delivery_store.get_delivery(conn, delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}")
    suppressed = await suppression_store.find_active(conn, delivery["channel"], delivery["address"])
    if suppressed is not None:
        raise Conflict(
            f"delivery {delivery_id} goes to a suppressed address ({suppressed['source']} "
            f"{suppressed['code'] or ''}: {suppressed['reason']}); fix the contact and clear "
            f"suppression {suppressed['id']} first",
            code="address_suppressed",
        )
    if not await delivery_store.requeue(conn, delivery_id):
        raise Conflict(
            f"delivery {delivery_id} is {delivery['status']}; only dead or failed deliveries are re-queued",
            code="not_retryable",
        )
    await audit(
        conn,
        "delivery.requeued",
        "delivery",
        delivery_id,
        actor,
        {"was": delivery["status"], "last_error": delivery["last_error"]},
    )
