"""Provider limits: a broadcast paces itself to the relay's and the Twilio sender's rate, and the
most urgent work takes the next token."""

from __future__ import annotations

import asyncio
from typing import Any

from service import appkeys
from service.pacing import Pacer, TokenBucket
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.bulk import BROADCAST
from tests.helpers.wired import all_settled, rows, start, wired_sections


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_tokens_go_to_the_most_urgent_waiter_first_and_never_faster_than_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(per_second=2, burst=1, clock=clock)
    await bucket.acquire(100)  # the one saved-up token
    granted: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await bucket.acquire(priority)
        granted.append(name)

    waiters = [asyncio.create_task(wait(n, p)) for n, p in (("bulk-1", 100), ("bulk-2", 100), ("critical", 0))]
    await wait_until(lambda: bucket.waiting == 3)
    bucket.release_due()
    await asyncio.sleep(0)
    assert granted == [], "no time has passed: no token yet"
    clock.now += 0.5  # one token at 2 a second
    bucket.release_due()
    await wait_until(lambda: granted == ["critical"])
    clock.now += 10  # a long pause saves up only `burst` tokens
    bucket.release_due()
    await wait_until(lambda: granted == ["critical", "bulk-1"])
    assert bucket.waiting == 1
    clock.now += 0.5
    bucket.release_due()
    await wait_until(lambda: granted == ["critical", "bulk-1", "bulk-2"])
    await asyncio.gather(*waiters)


def test_a_sender_limit_applies_to_the_channel_that_sends_as_that_sender() -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        twilio={"account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "+15005550006"},
        rate_limits={
            "channels": {"email": {"per_second": 50}},
            "senders": {"+15005550006": {"per_second": 1}, "incident@herald.example.com": {"per_second": 20}},
        },
        smtp={"host": "127.0.0.1", "from_address": "Herald <incident@herald.example.com>"},
    )
    pacer = Pacer.from_settings(settings)
    assert pacer.per_second("sms") == 1
    assert pacer.per_second("email") == 20  # the slower of the relay's 50 and the sender's 20
    assert not pacer.paced("webhook")


async def test_a_paced_broadcast_never_provokes_a_429_from_a_twilio_sender_enforcing_its_rate(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    twilio_fake.enforce_rate(20, burst=3)
    settings = make_settings(
        sqlite_url,
        **wired_sections(smtp_sink.port, twilio_fake),
        notice_channels={"maintenance": {"any": ["sms", "email"]}},
        rate_limits={"senders": {"+15005550006": {"per_second": 20}}},
    )
    client = await start(aiohttp_client, settings)
    response = await client.post("/v1/broadcasts", json=BROADCAST, headers=auth("operator"))
    assert response.status == 202, await response.text()
    await wait_until(lambda: all_settled(client), timeout=60)
    sms = await rows(client, deliveries.c.channel == "sms")
    assert len(sms) > 20 and {r["status"] for r in sms} == {"sent"}
    assert all(r["attempts"] == 1 for r in sms), "a send was refused and retried"
    assert twilio_fake.refused_over_rate == 0
    assert client.app[appkeys.DISPATCHER].pacer.per_second("sms") == 20
