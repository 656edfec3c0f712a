"""The same store behaviour on SQLite and PostgreSQL: migrations, the outbox, claiming, leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Insert, insert, select
from sqlalchemy.exc import IntegrityError

from service.store import Store
from service.store import deliveries as outbox
from service.store import incidents as incident_store
from service.store import suppressions as suppression_store
from service.store.engine import ForegroundWork, WriteTurns, inserted_id
from service.store.models import Delivery, Outcome
from service.store.tables import contacts, deliveries, partners, suppressions


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = Store(db_url)
    await store.upgrade()
    yield store
    await store.close()


def partner_and_contact(now: float) -> tuple[Insert, Insert]:
    """Partner p1 and its tier-1 contact c, reached by SMS and email."""
    partner = insert(partners).values(
        id="p1", name="P1", language="ja", components=["x"], created_at=now, updated_at=now
    )
    contact = insert(contacts).values(
        partner_id="p1",
        key="c",
        name="C",
        tier=1,
        email="c@example.jp",
        phone="+819012345678",
        channels=["sms", "email"],
        created_at=now,
        updated_at=now,
    )
    return partner, contact


async def seed_notice(store: Store, rows: list[tuple[int, str]], now: float | None = None) -> list[int]:
    """One partner, one contact, one notice, and a delivery per (priority, channel)."""
    now = time.time() if now is None else now
    async with store.begin() as conn:
        partner, contact = partner_and_contact(now)
        await conn.execute(partner)
        contact_id = inserted_id(await conn.execute(contact))
        incident_id = await incident_store.insert_incident(
            conn, {"title": "t", "severity": "critical", "status": "investigating", "components": ["x"]}
        )
        notice_id = await incident_store.insert_notice(
            conn,
            {
                "incident_id": incident_id,
                "kind": "initial",
                "version": 1,
                "state": "published",
                "severity": "critical",
                "fields": {},
                "audience": {},
            },
        )
        values = [
            {
                "notice_id": notice_id,
                "incident_id": incident_id,
                "partner_id": "p1",
                "contact_id": contact_id,
                "tier": 1,
                "channel": channel,
                "address": "x",
                "language": "ja",
                "priority": priority,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "message_id": f"<m{i}@h>",
                "created_at": now,
                "updated_at": now,
            }
            for i, (priority, channel) in enumerate(rows)
        ]
        await outbox.insert_deliveries(conn, values)
        ids = (await conn.execute(select(deliveries.c.id).order_by(deliveries.c.id))).scalars().all()
    return list(ids)


async def test_migrations_apply_twice_without_error(store: Store) -> None:
    await store.upgrade()
    async with store.read() as conn:
        assert (await conn.execute(select(partners))).all() == []


async def test_claim_takes_the_most_urgent_due_deliveries_first(store: Store) -> None:
    await seed_notice(store, [(210, "email"), (0, "sms"), (10, "sms"), (1, "email")])
    async with store.begin() as conn:
        batch = await outbox.claim_due(conn, ["sms", "email"], 2, "w1", 30)
    assert [d.priority for d in batch] == [0, 1]
    assert all(d.status == "sending" and d.attempts == 1 and d.worker == "w1" for d in batch)


async def test_claim_says_which_addresses_were_suppressed_after_planning(store: Store) -> None:
    # Both deliveries go to address "x": only the email channel's "x" is suppressed, and a cleared
    # suppression of the SMS "x" no longer counts.
    ids = await seed_notice(store, [(0, "sms"), (1, "email")])
    async with store.begin() as conn:
        await suppression_store.suppress(conn, "email", "x", "bounced", "5.1.1", "smtp", None)
        cleared = await suppression_store.suppress(conn, "sms", "x", "stop", "21610", "twilio", None)
        assert cleared is not None
        await conn.execute(suppressions.update().where(suppressions.c.id == cleared).values(cleared_at=time.time()))
        batch = await outbox.claim_due(conn, ["sms", "email"], 10, "w", 30)
    assert {d.id: d.suppressed for d in batch} == {ids[0]: False, ids[1]: True}


async def test_claim_respects_channel_and_due_time(store: Store) -> None:
    ids = await seed_notice(store, [(0, "sms"), (1, "email")])
    async with store.begin() as conn:
        await conn.execute(
            deliveries.update().where(deliveries.c.id == ids[0]).values(next_attempt_at=time.time() + 60)
        )
        assert await outbox.claim_due(conn, ["sms"], 10, "w", 30) == []
        assert [d.id for d in await outbox.claim_due(conn, ["email"], 10, "w", 30)] == [ids[1]]


async def test_two_workers_claiming_at_once_never_share_a_delivery(store: Store) -> None:
    await seed_notice(store, [(i % 7, "email") for i in range(200)])

    async def worker(name: str) -> list[int]:
        claimed: list[int] = []
        while True:
            async with store.begin() as conn:
                batch = await outbox.claim_due(conn, ["email"], 16, name, 30)
            if not batch:
                return claimed
            claimed += [d.id for d in batch]

    first, second = await asyncio.gather(worker("a"), worker("b"))
    assert len(first) + len(second) == 200
    assert not set(first) & set(second)


async def test_an_urgent_claim_takes_only_critical_tier1_work_with_the_names_to_greet(store: Store) -> None:
    ids = await seed_notice(store, [(100, "sms"), (0, "sms"), (9, "sms"), (10, "sms")])
    async with store.begin() as conn:
        urgent = await outbox.claim_due(conn, ["sms"], 8, "urgent", 30, max_priority=9)
        rest = await outbox.claim_due(conn, ["sms"], 8, "bulk", 30)
    assert [d.id for d in urgent] == [ids[1], ids[2]]
    assert [d.id for d in rest] == [ids[3], ids[0]]
    assert {(d.recipient.name, d.recipient.partner_name) for d in urgent + rest if d.recipient} == {("C", "P1")}


async def test_a_claim_skips_rows_another_transaction_holds_and_takes_the_next(store: Store) -> None:
    """A claim takes the first `limit` due ids in urgency order that nobody holds; the LIMIT
    applies to those, so a held row never shrinks another worker's batch."""
    ids = await seed_notice(store, [(p, "email") for p in range(6)])
    async with store.begin() as first:
        held = await outbox.claim_due(first, ["email"], 2, "first", 30)
        if store.is_sqlite:  # one writer: the second claim comes after the first commits
            second: list[Delivery] = []
        else:
            async with store.begin() as other:
                second = await outbox.claim_due(other, ["email"], 2, "second", 30)
    assert [d.id for d in held] == ids[:2]
    if not store.is_sqlite:
        assert [d.id for d in second] == ids[2:4]
    async with store.begin() as conn:
        after = await outbox.claim_due(conn, ["email"], 10, "third", 30)
    assert [d.id for d in after] == (ids[2:] if store.is_sqlite else ids[4:])


async def test_an_expired_lease_puts_the_delivery_back_in_the_queue(store: Store) -> None:
    await seed_notice(store, [(0, "sms")])
    async with store.begin() as conn:
        [claimed] = await outbox.claim_due(conn, ["sms"], 1, "dead-worker", lease_seconds=0.01)
    async with store.begin() as conn:
        assert await outbox.release_expired_leases(conn, now=time.time() + 1) == 1
        [again] = await outbox.claim_due(conn, ["sms"], 1, "live-worker", 30, now=time.time() + 1)
    assert again.id == claimed.id and again.attempts == 2


async def test_a_late_result_from_a_worker_that_lost_its_lease_is_ignored(store: Store) -> None:
    [delivery_id] = await seed_notice(store, [(0, "sms")])
    async with store.begin() as conn:
        await outbox.claim_due(conn, ["sms"], 1, "slow", 0.01)
        await outbox.release_expired_leases(conn, now=time.time() + 1)
        await outbox.claim_due(conn, ["sms"], 1, "fast", 30, now=time.time() + 1)
        await outbox.record_outcomes(
            conn,
            [
                Outcome(
                    id=delivery_id,
                    worker="slow",
                    attempts=1,
                    status="failed",
                    next_attempt_at=0,
                    updated_at=time.time(),
                )
            ],
        )
        await outbox.record_outcomes(
            conn,
            [
                Outcome(
                    id=delivery_id,
                    worker="fast",
                    attempts=2,
                    status="sent",
                    provider_id="SM1",
                    next_attempt_at=0,
                    updated_at=time.time(),
                )
            ],
        )
        row = await outbox.get_delivery(conn, delivery_id)
        history = await outbox.attempts_of(conn, delivery_id)
    assert row is not None and row["status"] == "sent" and row["provider_id"] == "SM1"
    # Both attempts were made, so both are in the history, the late one included.
    assert [(a["attempt"], a["worker"], a["outcome"], a["provider_id"]) for a in history] == [
        (1, "slow", "failed", None),
        (2, "fast", "sent", "SM1"),
    ]


async def test_a_batch_of_outcomes_is_written_row_by_row_with_its_history(store: Store) -> None:
    ids = await seed_notice(store, [(0, "sms"), (1, "email"), (2, "email")])
    async with store.begin() as conn:
        batch = await outbox.claim_due(conn, ["sms", "email"], 3, "w", 30)
        now = time.time()
        await outbox.record_outcomes(
            conn,
            [
                Outcome(id=ids[0], worker="w", attempts=1, status="sent", provider_id="SM9", body_hash="h0",
                        sent_at=now, next_attempt_at=batch[0].next_attempt_at, updated_at=now, send_seconds=0.25),
                Outcome(id=ids[1], worker="w", attempts=1, status="pending", last_error="busy", error_code="451",
                        next_attempt_at=now + 2, updated_at=now),
                Outcome(id=ids[2], worker="w", attempts=1, status="skipped", reason="suppressed",
                        next_attempt_at=now, updated_at=now),
            ],
        )  # fmt: skip
        found = {i: await outbox.get_delivery(conn, i) for i in ids}
        history = {i: await outbox.attempts_of(conn, i) for i in ids}
    rows = {i: r for i, r in found.items() if r is not None}
    got = {i: (r["status"], r["provider_id"], r["last_error"], r["reason"], r["lease_until"]) for i, r in rows.items()}
    assert got == {
        ids[0]: ("sent", "SM9", None, None, None),
        ids[1]: ("pending", None, "busy", None, None),
        ids[2]: ("skipped", None, None, "suppressed", None),
    }
    assert rows[ids[0]]["body_hash"] == "h0"
    assert rows[ids[1]]["next_attempt_at"] == pytest.approx(now + 2)
    assert [(a["outcome"], a["error_code"], a["send_seconds"]) for i in ids for a in history[i]] == [
        ("sent", None, 0.25),
        ("retry", "451", None),
        ("skipped", None, None),
    ]


async def test_an_outcome_from_an_earlier_claim_of_the_same_worker_is_ignored(store: Store) -> None:
    [delivery_id] = await seed_notice(store, [(0, "sms")])
    async with store.begin() as conn:
        await outbox.claim_due(conn, ["sms"], 1, "w", 0.01)
        await outbox.release_expired_leases(conn, now=time.time() + 1)
        await outbox.claim_due(conn, ["sms"], 1, "w", 30, now=time.time() + 1)
        await outbox.record_outcomes(
            conn,
            [Outcome(id=delivery_id, worker="w", attempts=1, status="dead", next_attempt_at=0, updated_at=time.time())],
        )
        row = await outbox.get_delivery(conn, delivery_id)
    assert row is not None and (row["status"], row["attempts"]) == ("sending", 2)


async def test_a_live_worker_keeps_its_lease_while_it_sends(store: Store) -> None:
    ids = await seed_notice(store, [(0, "sms"), (1, "sms")])
    async with store.begin() as conn:
        await outbox.claim_due(conn, ["sms"], 2, "live", 0.01)
        assert await outbox.extend_leases(conn, ids, "other-worker", time.time() + 60) == 0
        assert await outbox.extend_leases(conn, ids, "live", time.time() + 60) == 2
        assert await outbox.release_expired_leases(conn, now=time.time() + 1) == 0


async def test_requeue_gives_a_dead_delivery_fresh_attempts(store: Store) -> None:
    [delivery_id] = await seed_notice(store, [(0, "email")])
    async with store.begin() as conn:
        assert not await outbox.requeue(conn, delivery_id)  # pending: nothing to retry
        await conn.execute(deliveries.update().values(status="dead", attempts=8))
        assert await outbox.requeue(conn, delivery_id)
        row = await outbox.get_delivery(conn, delivery_id)
    assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)


async def test_notice_versions_count_up_per_incident(store: Store) -> None:
    async with store.begin() as conn:
        first = await incident_store.insert_incident(
            conn, {"title": "a", "severity": "minor", "status": "investigating", "components": []}
        )
        second = await incident_store.insert_incident(
            conn, {"title": "b", "severity": "minor", "status": "investigating", "components": []}
        )
        for incident_id in (first, first, second):
            version = await incident_store.next_notice_version(conn, incident_id)
            await incident_store.insert_notice(
                conn,
                {
                    "incident_id": incident_id,
                    "kind": "progress",
                    "version": version,
                    "state": "draft",
                    "severity": "minor",
                    "fields": {},
                    "audience": {},
                },
            )
        assert [n["version"] for n in await incident_store.notices_of(conn, first)] == [1, 2]
        assert [n["version"] for n in await incident_store.notices_of(conn, second)] == [1]


async def test_a_request_writes_to_sqlite_before_the_broadcast_batches_already_waiting() -> None:
    turns = WriteTurns()
    order: list[str] = []

    async def write(name: str, background: bool) -> None:
        async with turns.turn(background):
            order.append(name)

    async with turns.turn(background=True):  # a batch being written
        waiting = [
            asyncio.create_task(write("batch-2", True)),
            asyncio.create_task(write("batch-3", True)),
            asyncio.create_task(write("incident", False)),
        ]
        await asyncio.sleep(0)  # let them queue; the writer is still held
        assert order == []
    await asyncio.gather(*waiting)
    assert order == ["incident", "batch-2", "batch-3"]


async def test_on_sqlite_a_statement_is_one_call_on_the_connection_thread_with_its_rows_and_counts(
    sqlite_url: str,
) -> None:
    """Each call on aiosqlite's thread is a round trip through the event loop; a statement makes one,
    and still brings back its rows, the new row's id, the rows it changed and the database's errors."""
    store = Store(sqlite_url)
    await store.upgrade()
    hops = 0
    try:
        async with store.begin() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            queue = raw._tx

            class Counted:
                def put_nowait(self, item: object) -> None:
                    nonlocal hops
                    hops += 1
                    queue.put_nowait(item)

            raw._tx = Counted()
            partner, contact = partner_and_contact(time.time())
            made = await conn.execute(partner)
            assert made.rowcount == 1 and hops == 1
            contact_id = inserted_id(await conn.execute(contact))
            assert contact_id > 0 and hops == 2
            rows = (await conn.execute(select(contacts.c.id, contacts.c.key).order_by(contacts.c.id))).all()
            assert [tuple(r) for r in rows] == [(contact_id, "c")] and hops == 3
            changed = await conn.execute(contacts.update().where(contacts.c.partner_id == "p1").values(name="C2"))
            assert changed.rowcount == 1 and hops == 4
            with pytest.raises(IntegrityError):
                async with conn.begin_nested():
                    await conn.execute(
                        insert(partners).values(
                            id="p1", name="again", language="ja", components=[], created_at=0.0, updated_at=0.0
                        )
                    )
            raw._tx = queue
        async with store.read() as conn:
            assert (await conn.execute(select(contacts.c.name))).scalar_one() == "C2"
    finally:
        await store.close()


async def test_background_work_waits_for_foreground_writes_but_not_for_a_storm_of_them() -> None:
    work = ForegroundWork()
    await asyncio.wait_for(work.quiet(60), 5)  # nothing written: no wait
    with work.held():
        waiting = asyncio.create_task(work.quiet(60))
        with work.held():  # a second request overlaps the first
            pass
        await asyncio.sleep(0)
        assert not waiting.done(), "background work went on while a request was being written"
    await asyncio.wait_for(waiting, 5)  # the last one done: background work goes on at once

    loop = asyncio.get_running_loop()
    with work.held():  # a stretch that does not end in time
        began = loop.time()
        await asyncio.wait_for(work.quiet(0.05), 5)
        assert loop.time() - began >= 0.04
        await asyncio.wait_for(work.quiet(0.05), 5)  # once the stretch is that long, no more waits
