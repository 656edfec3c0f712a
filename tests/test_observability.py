"""Operators can watch Herald: Prometheus metrics, request ids, and logs that leak no address."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from service import appkeys
from service.logs import configure_logging, mask
from service.store.audience import partners_with_contacts
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.wired import all_final, post_sample, rows, start, wired_settings


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith((f"{name}{{", f"{name} ")):
            series, _, value = line.rpartition(" ")
            found = series[len(name) :].strip("{}")
            if ",".join(sorted(found.split(","))) == wanted:
                return float(value)
    return 0.0


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(logging.DEBUG, stream)
    yield stream
    root.handlers[:], root.level = saved


async def test_metrics_count_deliveries_by_channel_and_status(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    twilio_fake.fail_next(1, status=503)
    plan = (await post_sample(client))["deliveries"]
    await wait_until(lambda: all_final(client), timeout=30)
    text = await (await client.get("/metrics")).text()
    assert metric(text, "herald_delivery_outcomes_total", channel="email", status="sent") == plan["by_channel"]["email"]
    assert metric(text, "herald_delivery_outcomes_total", channel="sms", status="sent") == plan["by_channel"]["sms"]
    assert metric(text, "herald_delivery_retries_total", channel="sms") == 1
    assert metric(text, "herald_send_latency_seconds_count", channel="email") == plan["by_channel"]["email"]
    assert metric(text, "herald_created_to_submitted_seconds_count", channel="sms", tier="1") >= 1
    assert metric(text, "herald_queue_depth", channel="email", status="pending") == 0
    assert metric(text, "herald_http_requests_total", method="POST", status="202") == 1


async def test_queue_depth_shows_what_is_waiting(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False))
    plan = (await post_sample(client))["deliveries"]
    text = await (await client.get("/metrics")).text()
    assert metric(text, "herald_queue_depth", channel="email", status="pending") == plan["by_channel"]["email"]


async def test_webhook_ingest_is_counted_by_source_and_status(client: Any) -> None:
    await client.post(
        "/v1/webhooks/alertmanager", data=b"{", headers={**auth("ingest"), "Content-Type": "application/json"}
    )
    text = await (await client.get("/metrics")).text()
    assert metric(text, "herald_webhooks_total", source="alertmanager", status="400") == 1


async def test_every_response_carries_a_request_id_that_the_logs_repeat(client: Any, log_stream: io.StringIO) -> None:
    # An unsigned Twilio callback is refused with a warning logged inside the request.
    given = await client.post(
        "/v1/receipts/twilio", data={"MessageSid": "SM1"}, headers={"X-Request-Id": "req-abc-123"}
    )
    assert given.status == 403
    assert given.headers["X-Request-Id"] == "req-abc-123"
    fresh = await client.post("/v1/receipts/twilio", data={"MessageSid": "SM2"})
    assert fresh.status == 403
    generated = fresh.headers["X-Request-Id"]
    assert len(generated) == 32 and generated != "req-abc-123"
    logging.getLogger("herald.test").info("inside no request")

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    refused = [line for line in lines if line["msg"].startswith("rejected a Twilio status callback")]
    assert [line.get("request_id") for line in refused] == ["req-abc-123", generated]
    [outside] = [line for line in lines if line["msg"] == "inside no request"]
    assert "request_id" not in outside


async def test_no_phone_number_or_email_address_appears_in_any_log_line(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake, log_stream: io.StringIO
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    async with client.app[appkeys.STORE].read() as conn:
        contacts = [c for p in await partners_with_contacts(conn) for c in p.contacts]
    phones = [c.phone for c in contacts if c.phone]
    emails = [c.email for c in contacts if c.email]
    twilio_fake.reject_numbers(set(phones[:3]), code=21211)
    smtp_sink.fail_next(2, code=550, text=f"5.1.1 <{emails[0]}>: Recipient address rejected", on="RCPT")
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)
    assert any(r["status"] == "failed" for r in await rows(client))
    logged = log_stream.getvalue()
    assert "Recipient address rejected" in logged, "the failure reason itself is logged"
    leaks = [value for value in phones + emails + ["+819012345678"] if value in logged]
    assert leaks == []
    for line in logged.splitlines():
        json.loads(line)  # every line is one JSON object


@pytest.mark.parametrize(
    "text, hidden",
    [
        ("to hanako.sato@tokai-logistics.example.jp failed", "hanako.sato@"),
        ("SMS to +819012345678 rejected", "+819012345678"),
        ("call +81 90-1234-5678 or 090-1234-5678", "1234-5678"),
        ("US contact +1 415 555 0132", "415 555 01"),
    ],
)
def test_masking_hides_addresses_but_keeps_ids_and_times(text: str, hidden: str) -> None:
    assert hidden not in mask(text)
    assert mask("delivery 1234 at 2026-11-25 15:30 took 250 ms") == "delivery 1234 at 2026-11-25 15:30 took 250 ms"
