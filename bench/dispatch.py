"""Dispatch throughput: `python -m bench.dispatch [--partners 3334] [--emails 2] [--phones 1]`.

One broadcast through the whole of Herald (HTTP request → plan persisted → claim → render →
send → outcome persisted) to an aiosmtpd sink and a Twilio-compatible server running in a child
process, and, in the same run, raw aiosmtplib pushing the same number of pre-built messages into
the same sink over the same number of connections (no persistence, no rendering): the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp import web
from sqlalchemy import func, select

from bench.common import (
    TOKEN,
    Sinks,
    herald_settings,
    peak_rss_mb,
    percentile,
    sinks,
    sqlite_url,
    table,
)
from bench.sinks import ACCOUNT_SID, AUTH_TOKEN
from channels.base import OutboundMessage
from channels.email import build_email
from service import appkeys, compose
from service.acks import AckSigner, ack_link
from service.app import create_app
from service.settings import Settings
from service.store import Store
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store.models import Delivery, Recipient
from service.store.tables import deliveries
from tests.helpers.bulk import BROADCAST, seed_directory

_FALLBACK_TEXT = "受発注APIの緊急メンテナンスを実施いたします。メンテナンス中は発注登録ができません。\n" * 12
_FALLBACK_MESSAGE = OutboundMessage(
    delivery_id=0,
    message_id="<raw@bench>",
    to="x@example.jp",
    text=_FALLBACK_TEXT,
    subject="【メンテナンスのお知らせ】受発注APIの緊急メンテナンス",
    html="<p>" + _FALLBACK_TEXT + "</p>",
)

UNSETTLED = ("pending", "sending")


async def run_herald(settings: Settings, body: dict[str, Any] = BROADCAST) -> dict[str, Any]:
    """Post one broadcast and wait until every delivery has left; figures from the delivery log."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        started = time.perf_counter()
        posted_at = time.time()
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session,
            session.post(f"http://127.0.0.1:{port}/v1/broadcasts", json=body) as response,
        ):
            reply = await response.json()
            assert response.status == 202, reply
        accepted = time.perf_counter() - started
        await wait_until_settled(app)
        async with app[appkeys.STORE].read() as conn:
            rows = (
                await conn.execute(select(deliveries.c.status, deliveries.c.created_at, deliveries.c.sent_at))
            ).all()
        last_outcome = max(sent for _, _, sent in rows if sent is not None)
        elapsed = last_outcome - posted_at  # from the POST to the last outcome, polling excluded
    finally:
        await runner.cleanup()
    latencies = [sent - created for status, created, sent in rows if sent is not None]
    return {
        "deliveries": len(rows),
        "sent": sum(1 for status, _, _ in rows if status == "sent"),
        "seconds": elapsed,
        "accepted_seconds": accepted,
        "rate": len(rows) / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


async def wait_until_settled(app: web.Application, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with app[appkeys.STORE].read() as conn:
            left = await conn.scalar(select(func.count()).where(deliveries.c.status.in_(UNSETTLED)))
        if not left:
            return
        await asyncio.sleep(0.25)  # the figures come from the log, not from this poll's timing
    raise TimeoutError("deliveries did not settle")


async def sample_email(settings: Settings) -> OutboundMessage:
    """One email exactly as Herald sent it in the run just made (rendered, personalised, with its
    acknowledgement link), so the baselines push the same bytes rather than a smaller message."""
    return await sample_message(settings, "email")


async def sample_message(settings: Settings, channel: str) -> OutboundMessage:
    """The first `channel` delivery of the run just made, composed as Herald composed it."""
    store = Store(settings.database.url)
    try:
        async with store.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(deliveries).where(deliveries.c.channel == channel).order_by(deliveries.c.id).limit(1)
                    )
                )
                .mappings()
                .one()
            )
            notice = await incident_store.read_notice(conn, row["notice_id"])
            names = await delivery_store.recipients(conn, [row["contact_id"]])
    finally:
        await store.close()
    assert notice is not None
    name = names[row["contact_id"]]
    delivery = Delivery.from_row(row, recipient=Recipient(name["name"], name["partner_name"], row["tier"]))
    ack_url = ack_link(settings, AckSigner.from_settings(settings))(delivery)
    message, _ = compose.outbound(settings, delivery, notice, None, ack_url)
    return message


async def run_raw_sms(twilio_url: str, count: int, concurrency: int, body: str) -> dict[str, Any]:
    """A plain aiohttp client posting `count` Messages (distinct numbers, the same body) to the
    Twilio-compatible server over `concurrency` connections: the SMS lane's ceiling."""
    url = f"{twilio_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = aiohttp.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    refused = 0

    async def connection(session: aiohttp.ClientSession) -> None:
        nonlocal refused
        while not queue.empty():
            n = queue.get_nowait()
            form = {"To": f"+8199{n:08d}", "From": "+15005550006", "Body": body}
            async with session.post(url, data=form, auth=auth) as response:
                await response.read()
                refused += response.status != 201

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(connection(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"deliveries": count, "seconds": elapsed, "rate": count / elapsed, "refused": refused}


async def run_raw_smtp(
    sink: Sinks, count: int, connections: int = 8, message: OutboundMessage | None = None
) -> dict[str, Any]:
    """aiosmtplib alone: `count` pre-built copies of `message` over `connections` connections."""
    message = message or _FALLBACK_MESSAGE
    payload = build_email(message, "Herald <incident@herald.example.com>")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.smtp_port, start_tls=False, use_tls=False)
        await client.connect()
        while not queue.empty():
            n = queue.get_nowait()
            await client.sendmail("incident@herald.example.com", [f"contact{n}@partner.example.jp"], payload)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"deliveries": count, "seconds": elapsed, "rate": count / elapsed}


async def main(partners: int, emails: int, phones: int) -> None:
    async with sinks() as sink:
        with tempfile.TemporaryDirectory() as tmp:
            mixed_settings = herald_settings(sqlite_url(Path(tmp) / "mixed.db"), sink)
            await seed_directory(mixed_settings, partners, emails, phones)
            mixed = await run_herald(mixed_settings)
            email_settings = herald_settings(sqlite_url(Path(tmp) / "email.db"), sink)
            await seed_directory(email_settings, partners * (emails + phones), 1, 0)
            email_only = await run_herald(email_settings)
            sample = await sample_email(email_settings)
        raw = await run_raw_smtp(sink, email_only["deliveries"], email_settings.smtp.pool_size, sample)
    rows = [
        ("run", "deliveries", "seconds", "deliveries/s", "created→sent p50 ms", "p99 ms"),
        (
            f"Herald, email+SMS ({emails}+{phones} per partner)",
            mixed["deliveries"],
            f"{mixed['seconds']:.2f}",
            f"{mixed['rate']:.0f}",
            f"{mixed['p50'] * 1000:.0f}",
            f"{mixed['p99'] * 1000:.0f}",
        ),
        (
            "Herald, email only",
            email_only["deliveries"],
            f"{email_only['seconds']:.2f}",
            f"{email_only['rate']:.0f}",
            f"{email_only['p50'] * 1000:.0f}",
            f"{email_only['p99'] * 1000:.0f}",
        ),
        ("raw aiosmtplib (no persistence)", raw["deliveries"], f"{raw['seconds']:.2f}", f"{raw['rate']:.0f}", "-", "-"),
    ]
    print(table(rows))
    print(f"\nmessage size {len(build_email(sample, 'x@example.com')):,} bytes (the same bytes in every run)")
    print(
        f"Herald email-only / raw aiosmtplib: {email_only['rate'] / raw['rate']:.0%}"
        f"   (all sent: {mixed['sent'] == mixed['deliveries'] and email_only['sent'] == email_only['deliveries']};"
        f" peak RSS {peak_rss_mb():.0f} MB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=3334, help="partners in the synthetic directory")
    parser.add_argument("--emails", type=int, default=2, help="email contacts per partner")
    parser.add_argument("--phones", type=int, default=1, help="SMS contacts per partner")
    args = parser.parse_args()
    asyncio.run(main(args.partners, args.emails, args.phones))
