"""Two Herald processes on one PostgreSQL share a broadcast: both work, neither sends twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from service.store import Store
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import make_settings, wait_until
from tests.helpers.bulk import BROADCAST, seed_directory
from tests.helpers.databases import POSTGRES_DSN, fresh_postgres
from tests.helpers.herald_process import (
    HeraldProcess,
    message_ids,
    outbox,
    settled,
    texted,
    wired_config,
    wired_secrets,
)

pytestmark = pytest.mark.skipif(
    not POSTGRES_DSN, reason="scale-out needs PostgreSQL: set HERALD_TEST_POSTGRES_DSN (set by .ci/run)"
)

PARTNERS = 1000  # × (1 email + 1 SMS contact) = 2,000 deliveries


async def test_two_heralds_on_one_database_share_a_broadcast_and_send_nothing_twice(
    tmp_path: Path, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """Process A takes the broadcast, B finds the work by polling; SKIP LOCKED keeps them apart.
    The lease is the default 60 s, so a slow batch is never re-queued under a live worker."""
    assert POSTGRES_DSN
    dsn = await fresh_postgres(POSTGRES_DSN)
    await seed_directory(make_settings(dsn), PARTNERS, emails=1, phones=1)
    config = wired_config(dsn, smtp_sink, twilio_fake, concurrency={"email": 16, "sms": 16})
    heralds = [
        HeraldProcess(tmp_path, config, wired_secrets(twilio_fake), name=name) for name in ("herald-a", "herald-b")
    ]
    store = Store(dsn)
    try:
        for herald in heralds:
            await herald.start()
        plan = await heralds[0].broadcast(BROADCAST)
        assert plan["by_channel"] == {"email": PARTNERS, "sms": PARTNERS}
        await wait_until(lambda: settled(store), timeout=120, interval=0.1)
        final = await outbox(store)
        pids = {herald.pid: herald.name for herald in heralds}
    finally:
        for herald in heralds:
            herald.kill()
        await store.close()

    assert Counter(r["status"] for r in final) == {"sent": plan["total"]}
    # The worker id (host:pid:object) stays on the row after the send.
    by_process = Counter(pids.get(pid_of(r["worker"]), r["worker"]) for r in final)
    assert set(by_process) == {"herald-a", "herald-b"}, by_process
    assert min(by_process.values()) >= plan["total"] // 10, f"one process did almost nothing: {by_process}"
    # Nobody claimed a row another had leased: one attempt each, one arrival each.
    assert {r["attempts"] for r in final} == {1}
    assert message_ids(smtp_sink.messages) == Counter({r["message_id"]: 1 for r in final if r["channel"] == "email"})
    assert texted(twilio_fake) == Counter({r["address"]: 1 for r in final if r["channel"] == "sms"})
    split = Counter((pids[pid_of(r["worker"])], r["channel"]) for r in final)
    print(f"\nscale-out: {dict(split)} of {plan['total']}")


def pid_of(worker: str) -> int:
    return int(worker.rsplit(":", 2)[1])
