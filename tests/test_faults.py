"""Delayed, never lost: Herald killed mid-broadcast, an SMTP outage, a Twilio error storm, a
send slower than its lease.

The crash test runs `herald serve` as a real process and SIGKILLs it; the others run the whole
app in-process (as tests/test_dispatch.py does) with short backoff. Every check is made at the
far side of the wire: what the SMTP sink and the Twilio-compatible server actually received.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from service import appkeys
from service.app import create_app
from service.settings import DispatchSettings, Settings
from service.store import Store
from tests.fakes.smtp import LoopbackController, SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.bulk import BROADCAST, partner_rows, seed_directory
from tests.helpers.herald_process import (
    MESSAGE_ID,
    HeraldProcess,
    duplicates,
    message_ids,
    outbox,
    settled,
    texted,
    wired_config,
    wired_secrets,
)
from tests.helpers.wired import wired_sections


async def kill_while_sending(herald: HeraldProcess, store: Store, timeout: float = 30.0) -> None:
    """SIGKILL Herald at a moment it holds leased (`sending`) rows: freeze it (SIGSTOP), look,
    and either kill it there or let it run on and look again."""

    async def frozen_mid_send() -> bool:
        herald.freeze()
        if any(r["status"] == "sending" for r in await outbox(store)):
            return True
        herald.thaw()
        return False

    await wait_until(frozen_mid_send, timeout=timeout)
    herald.kill()


# --- 1. crash -------------------------------------------------------------------------------

PARTNERS = 1000  # × (2 email + 1 SMS contacts) = 3,000 deliveries
KILL_AFTER = 300
CONCURRENCY = {"email": 16, "sms": 16}
# The process that dies leases for 2 s, so what it strands is due again 2 s after the kill. The
# restarted one leases for 30 s: on a busy 2-core CI machine its first batch (templates compiled,
# connections opened) can outlive a short lease, and a lease expiring under a live worker is a
# resend of its own (see test_a_batch_slower_than_its_lease_is_not_sent_again), not a crash's.
LEASE_OF_THE_KILLED, LEASE_AFTER_RESTART = 2.0, 30.0


async def test_a_herald_killed_mid_broadcast_loses_nothing_and_resends_only_what_was_in_flight(
    tmp_path: Path, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """SIGKILL after ~10% arrived; a restart on the same database finishes the broadcast.

    Bound on duplicates: a delivery can reach the far side twice only if it was `sending` (leased,
    outcome unrecorded) when the process died, so the duplicates of each channel are at most the
    rows that were `sending` at the kill (≤ that channel's concurrency), and are among those rows.
    """
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"
    await seed_directory(make_settings(db_url), PARTNERS, emails=2, phones=1)
    config = wired_config(db_url, smtp_sink, twilio_fake, lease_seconds=LEASE_OF_THE_KILLED, concurrency=CONCURRENCY)
    herald = HeraldProcess(tmp_path, config, wired_secrets(twilio_fake))
    store = Store(db_url)
    try:
        await herald.start()
        plan = await herald.broadcast(BROADCAST)
        assert plan["by_channel"] == {"email": 2 * PARTNERS, "sms": PARTNERS}

        await wait_until(lambda: len(smtp_sink.messages) + len(twilio_fake.messages) >= KILL_AFTER, timeout=60)
        await kill_while_sending(herald, store)
        arrived_at_kill = len(smtp_sink.messages) + len(twilio_fake.messages)
        in_flight = [r for r in await outbox(store) if r["status"] == "sending"]
        in_flight_by_channel = Counter(r["channel"] for r in in_flight)
        assert in_flight, "no delivery was in flight at the kill: the crash tested nothing"
        assert arrived_at_kill < plan["total"], "the broadcast finished before the kill: nothing was tested"
        for channel, count in in_flight_by_channel.items():
            assert count <= CONCURRENCY[channel], f"{count} {channel} rows leased at once"

        # Restart once the stranded leases have run out: the new process re-queues them as it starts.
        stranded_until = max(r["lease_until"] for r in in_flight)
        await wait_until(lambda: time.time() > stranded_until, timeout=LEASE_OF_THE_KILLED + 5)
        herald.config["dispatch"]["lease_seconds"] = LEASE_AFTER_RESTART
        await herald.start()
        await wait_until(lambda: settled(store), timeout=120, interval=0.1)
        final = await outbox(store)
    finally:
        herald.kill()
        await store.close()

    assert Counter(r["status"] for r in final) == {"sent": plan["total"]}
    emails = {r["message_id"]: r for r in final if r["channel"] == "email"}
    texts = {r["address"]: r for r in final if r["channel"] == "sms"}
    assert len(texts) == PARTNERS, "the synthetic directory gives every partner its own number"

    received = message_ids(smtp_sink.messages)
    sms = texted(twilio_fake)
    assert set(received) == set(emails), "an email was lost (or an unplanned one sent)"
    assert set(sms) == set(texts), "an SMS was lost (or an unplanned one sent)"

    # A duplicate is a resend of a row in flight at the kill, with the same Message-ID / To.
    in_flight_ids = {r["message_id"] for r in in_flight if r["channel"] == "email"}
    in_flight_numbers = {r["address"] for r in in_flight if r["channel"] == "sms"}
    email_dups, sms_dups = duplicates(received), duplicates(sms)
    assert set(email_dups) <= in_flight_ids and max(email_dups.values(), default=0) <= 1
    assert set(sms_dups) <= in_flight_numbers and max(sms_dups.values(), default=0) <= 1
    assert sum(email_dups.values()) <= in_flight_by_channel["email"]
    assert sum(sms_dups.values()) <= in_flight_by_channel["sms"]
    # Rows stranded in `sending` were taken up again by the restarted process; no other row was
    # attempted twice (a lease never expired under a live worker).
    stranded = {r["id"] for r in in_flight}
    assert all(r["attempts"] >= 2 for r in final if r["id"] in stranded)
    assert all(r["attempts"] == 1 for r in final if r["id"] not in stranded)
    print(
        f"\ncrash: {arrived_at_kill} of {plan['total']} arrived at the kill; in flight {dict(in_flight_by_channel)};"
        f" duplicates email {sum(email_dups.values())}, sms {sum(sms_dups.values())}"
    )


# --- 2. outage and storms (the whole app in-process) -------------------------------------------


def wired_settings(db_url: str, smtp: SmtpSink | Tarpit, twilio: TwilioFake, **dispatch: Any) -> Settings:
    return make_settings(
        db_url,
        **wired_sections(smtp.port, twilio),
        dispatch=dispatch,
        escalation={"steps": {}},
        # The bench broadcast is an emergency maintenance the operator sends by SMS too, now.
        notice_channels={"maintenance": {"any": ["sms", "email"]}},
    )


async def start(aiohttp_client: Any, settings: Settings) -> Any:
    return await aiohttp_client(create_app(settings))


async def broadcast(client: Any) -> dict[str, Any]:
    response = await client.post("/v1/broadcasts", json=BROADCAST, headers=auth("operator"))
    assert response.status == 202, await response.text()
    return (await response.json())["deliveries"]


def attempts_allowed(dispatch: DispatchSettings, window: float) -> int:
    """The most attempts the retry policy lets one delivery make within `window` seconds: the
    first at once, then one after each wait at its shortest (tenacity's exponential wait with no
    jitter, capped at backoff_max)."""
    attempts, elapsed = 1, 0.0
    while attempts < dispatch.max_attempts:
        elapsed += min(dispatch.backoff_initial * 2 ** (attempts - 1), dispatch.backoff_max)
        if elapsed > window:
            break
        attempts += 1
    return attempts


OUTAGE_ATTEMPTS = 4  # the outage lasts until every email has failed this many times


async def test_an_smtp_outage_delays_email_with_backoff_and_loses_none(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """The SMTP server greets 421 and hangs up until every email has failed OUTAGE_ATTEMPTS
    times, then comes back. Every connection Herald opened during the outage is counted at the
    server and must fit the retry policy: ≤ emails × attempts_allowed(outage) (a hot loop at the
    0.05 s poll interval would open about ten times as many)."""
    await seed_directory(make_settings(sqlite_url), 20, emails=1, phones=0)
    settings = wired_settings(
        sqlite_url, smtp_sink, twilio_fake, backoff_initial=0.2, backoff_max=1.0, backoff_jitter=0.05, max_attempts=50
    )
    smtp_sink.down(refuse=False)
    client = await start(aiohttp_client, settings)
    started = time.monotonic()
    plan = await broadcast(client)
    emails = plan["by_channel"]["email"]
    assert plan["total"] == emails == 20

    async def all_failed_enough() -> bool:
        rows = await outbox(client.app[appkeys.STORE])
        return all(r["status"] == "pending" and r["attempts"] >= OUTAGE_ATTEMPTS for r in rows)

    await wait_until(all_failed_enough, timeout=30)
    during_outage = smtp_sink.connections
    outage = time.monotonic() - started
    smtp_sink.up()
    await wait_until(lambda: settled(client.app[appkeys.STORE]), timeout=30)

    allowed = attempts_allowed(settings.dispatch, outage)
    assert emails * OUTAGE_ATTEMPTS <= during_outage <= emails * allowed, (
        f"{during_outage} connections in a {outage:.2f}s outage; the policy allows {allowed} per email"
    )
    final = await outbox(client.app[appkeys.STORE])
    assert {r["status"] for r in final} == {"sent"}
    assert message_ids(smtp_sink.messages) == Counter({r["message_id"]: 1 for r in final})
    print(f"\noutage {outage:.2f}s: {during_outage} connections for {emails} emails (≤ {emails * allowed} allowed)")


async def test_a_twilio_error_storm_is_retried_until_every_sms_is_delivered(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """30% of requests answered 429 or 500: each SMS is retried until accepted, exactly once."""
    await seed_directory(make_settings(sqlite_url), 150, emails=0, phones=1)
    twilio_fake.fail_ratio(0.3, statuses=(429, 500), seed=20429)
    # 25 attempts: the chance that one of 150 numbers meets 25 failures in a row is nil (0.3^25).
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, max_attempts=25)
    client = await start(aiohttp_client, settings)
    plan = await broadcast(client)
    assert plan["total"] == plan["by_channel"]["sms"] == 150
    await wait_until(lambda: settled(client.app[appkeys.STORE]), timeout=60)

    final = await outbox(client.app[appkeys.STORE])
    assert {r["status"] for r in final} == {"sent"}
    assert texted(twilio_fake) == Counter({r["address"]: 1 for r in final})
    refused = len(twilio_fake.requests) - len(twilio_fake.messages)
    assert refused > 0, "the storm never happened"
    assert sum(r["attempts"] for r in final) == len(twilio_fake.requests)


async def test_a_number_twilio_calls_invalid_fails_at_once_and_is_never_retried(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """21211 is permanent: one request per such number, `failed` with the code; the rest are sent."""
    await seed_directory(make_settings(sqlite_url), 60, emails=0, phones=1)
    _, contacts = partner_rows(60, emails=0, phones=1)
    invalid = {c["phone"] for c in contacts[::4]}
    twilio_fake.reject_numbers(invalid, code=21211, status=400)
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    plan = await broadcast(client)
    assert plan["total"] == 60
    await wait_until(lambda: settled(client.app[appkeys.STORE]), timeout=30)

    final = await outbox(client.app[appkeys.STORE])
    failed = [r for r in final if r["status"] == "failed"]
    assert {r["address"] for r in failed} == invalid and len(failed) == len(invalid) == 15
    assert all(r["attempts"] == 1 and r["error_code"] == "21211" for r in failed)
    requests = Counter(r["To"] for r in twilio_fake.requests)
    assert all(requests[number] == 1 for number in invalid)
    assert {r["status"] for r in final if r["address"] not in invalid} == {"sent"}
    assert texted(twilio_fake) == Counter({r["address"]: 1 for r in final if r["address"] not in invalid})
    assert await client.app[appkeys.DISPATCHER].run_once("sms") == 0, "a failed delivery is due again"


class Tarpit:
    """An SMTP server that has the whole message at once but answers DATA only after `delay`
    seconds, as a tarpitting or overloaded MTA does. Records every Message-ID it received."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[str] = []
        self.controller = LoopbackController(self)

    @property
    def port(self) -> int:
        return self.controller.port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        match = MESSAGE_ID.search(envelope.content)
        self.received.append(match.group(1).decode() if match else "?")
        await asyncio.sleep(self.delay)
        return "250 2.0.0 Ok: queued"


async def test_a_batch_slower_than_its_lease_is_not_sent_again(
    aiohttp_client: Any, sqlite_url: str, twilio_fake: TwilioFake
) -> None:
    """A healthy worker whose send outlasts the lease: the message must still arrive once. With
    lease 1 s and an SMTP server answering after 2.5 s, the default settings' equivalent is a
    batch of 32 through a pool of 4 connections at 7.5 s a message against the 60 s lease. (A
    shorter lease would test the machine's load, not the renewal: renewals come every third of it.)"""
    await seed_directory(make_settings(sqlite_url), 1, emails=1, phones=0)
    tarpit = Tarpit(delay=2.5)
    tarpit.controller.start()
    try:
        settings = wired_settings(sqlite_url, tarpit, twilio_fake, lease_seconds=1.0)
        client = await start(aiohttp_client, settings)
        plan = await broadcast(client)
        assert plan["total"] == 1
        # Either outcome ends this wait: the delivery is recorded, or it reached the server twice.
        await wait_until(lambda: len(tarpit.received) >= 2 or settled(client.app[appkeys.STORE]), timeout=20)
    finally:
        tarpit.controller.stop()
    assert len(tarpit.received) == 1, f"sent {len(tarpit.received)} times: {tarpit.received}"
