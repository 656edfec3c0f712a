"""Critical tier-1 work never queues behind a broadcast: each lane keeps a claimer of its own for
it, woken when an incident is planned, with capacity the broadcast's batches cannot take."""

from __future__ import annotations

import asyncio
from typing import Any

from service import appkeys
from service.settings import Settings
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.bulk import BROADCAST
from tests.helpers.herald_process import texted
from tests.helpers.wired import all_settled, post_sample, rows, start, wired_sections


def is_broadcast(body: str) -> bool:
    return "メンテナンス" in body or "maintenance" in body.lower()


def hold_the_broadcast(twilio_fake: TwilioFake) -> asyncio.Event:
    """The Twilio-compatible server holds every broadcast SMS on the wire until the event is set."""
    released = asyncio.Event()

    async def hold(message: dict[str, Any]) -> None:
        if is_broadcast(message["body"]):
            await released.wait()

    twilio_fake.before_reply = hold
    return released


def broadcast_settings(
    db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake, channels: list[str], concurrency: int, **dispatch: Any
) -> Settings:
    return make_settings(
        db_url,
        **wired_sections(smtp_sink.port, twilio_fake),
        notice_channels={"maintenance": {"any": channels}},
        dispatch={"concurrency": {"email": concurrency, "sms": concurrency}, "poll_interval": 5.0, **dispatch},
    )


async def test_a_critical_sms_leaves_while_every_broadcast_batch_is_still_on_the_wire(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    released = hold_the_broadcast(twilio_fake)
    client = await start(aiohttp_client, broadcast_settings(db_url, smtp_sink, twilio_fake, ["sms", "email"], 4))
    response = await client.post("/v1/broadcasts", json=BROADCAST, headers=auth("operator"))
    assert response.status == 202, await response.text()
    # Both broadcast batches of the SMS lane (4 a lane, 2 loops) are held by the far side.
    await wait_until(lambda: len(twilio_fake.messages) >= 4)
    try:
        await post_sample(client)  # critical: tier-1 SMS at priority 0
        # The broadcast is held by the far side until released: however long this takes, it cannot
        # be the broadcast that made room (the count below checks it), so the bound is a generous one.
        await wait_until(lambda: any(not is_broadcast(m["body"]) for m in twilio_fake.messages), timeout=15)
        assert sum(is_broadcast(m["body"]) for m in twilio_fake.messages) == 4, "the broadcast went on meanwhile"
    finally:
        released.set()
    await wait_until(lambda: all_settled(client), timeout=60)
    assert {r["status"] for r in await rows(client, deliveries.c.channel == "sms")} == {"sent"}


async def test_a_critical_incident_is_leased_by_its_own_request_and_handed_to_the_lanes(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    # Every claimer is asleep for a minute: only the hand-over from the request can send it now.
    settings = make_settings(db_url, **wired_sections(smtp_sink.port, twilio_fake), dispatch={"poll_interval": 60.0})
    client = await start(aiohttp_client, settings)
    await asyncio.sleep(0)  # the lanes start and go to sleep
    opened = await post_sample(client)  # critical: tier-1 SMS and email at priority 0-9
    # By the time the request answers, its most urgent deliveries (the tier-1 SMS, priority 0)
    # are leased (or already sent); the rest follow through the woken lanes.
    sms = await rows(client, deliveries.c.notice_id == opened["notice_id"], deliveries.c.priority == 0)
    assert sms and all(r["channel"] == "sms" and r["status"] in ("sending", "sent") for r in sms)
    await wait_until(lambda: all_settled(client), timeout=30)
    assert {r["status"] for r in await rows(client, deliveries.c.tier == 1)} == {"sent"}
    assert [r["attempts"] for r in await rows(client, deliveries.c.priority == 0)] == [1] * len(sms)
    arrived = texted(twilio_fake)
    assert all(arrived[r["address"]] == 1 for r in sms), "each critical SMS arrived once"


async def test_a_broadcast_steps_aside_while_a_critical_incident_is_written_and_sent(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    released = hold_the_broadcast(twilio_fake)
    settings = broadcast_settings(db_url, smtp_sink, twilio_fake, ["sms"], 2, foreground_hold=60.0)
    client = await start(aiohttp_client, settings)
    store = client.app[appkeys.STORE]
    response = await client.post("/v1/broadcasts", json=BROADCAST, headers=auth("operator"))
    assert response.status == 202, await response.text()
    broadcast = (await response.json())["notice_id"]
    await wait_until(lambda: len(twilio_fake.messages) >= 2)  # one batch of one a loop, held on the wire

    def sent_broadcast() -> list[int]:
        return [i for i, m in enumerate(twilio_fake.messages) if is_broadcast(m["body"])]

    # An operator's request is being written: the lanes record what was on the wire, then wait.
    with store.foreground.held():
        released.set()
        await wait_until(
            lambda: _count(client, deliveries.c.notice_id == broadcast, deliveries.c.status == "sent", equals=2)
        )
        await post_sample(client)  # critical: its tier-1 SMS is sent now, the broadcast still waits
        await wait_until(lambda: len(twilio_fake.messages) > len(sent_broadcast()))
        assert len(sent_broadcast()) == 2, "the broadcast claimed and sent while a request was written"
    await wait_until(lambda: all_settled(client), timeout=60)
    critical = next(i for i, m in enumerate(twilio_fake.messages) if not is_broadcast(m["body"]))
    assert len(sent_broadcast()) > 2 and critical < sent_broadcast()[2]


async def _count(client: Any, *conditions: Any, equals: int) -> bool:
    return len(await rows(client, *conditions)) == equals
