"""The lanes' own channels, alone, against the raw clients: `python -m bench.clients [--messages 20000]
[--repeat 3]`.

How near the wire each channel can get before Herald does anything else (no database, no
rendering, no dispatcher): the same messages go, in turn,

* through `SmsChannel.send` (the official twilio client in its asyncio mode, as Herald configures
  it), 64 in flight, and through a plain aiohttp client posting the same form over 64 connections
  (`bench.dispatch.run_raw_sms`, the SMS lane's baseline in `bench.e2e`);
* through `EmailChannel.send` (aiosmtplib, Herald's pool of 8 connections), 64 in flight, and
  through raw aiosmtplib over 8 connections with the same bytes (`bench.dispatch.run_raw_smtp`).

Each run is counted at the sinks (every message received exactly once, or the run fails). Printed:
rate and this process's CPU a message for each, and each channel's rate over its raw client's
(median of the repeats, which alternate which side goes first). A channel's ratio bounds its
lane's ratio in `bench.e2e`: the lane adds the database, composing and the dispatcher on top.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from bench.common import Sinks, cpu_seconds, sinks, table
from bench.dispatch import run_raw_sms, run_raw_smtp
from bench.sinks import ACCOUNT_SID, AUTH_TOKEN
from channels.base import OutboundMessage
from channels.email import EmailChannel
from channels.sms import SmsChannel

IN_FLIGHT = 64  # each lane's default concurrency (dispatch.concurrency)
SMTP_CONNECTIONS = 8
SMS_BODY = (
    "[サンプル商事] 障害: 受注API 停止中。影響: 受注の登録。次回更新 15:30。詳細 https://herald.example.com/p/abc"
)
EMAIL = OutboundMessage(
    delivery_id=0,
    message_id="<bench.clients@herald.example.com>",
    to="contact@partner.example.jp",
    subject="【障害】受注APIの停止について（第1報）",
    text="取引先各位\n\n受注APIが停止しています。次回の更新は 15:30 です。\n" * 8,
)


async def through(send: Callable[[int], Awaitable[Any]], count: int) -> float:
    """Seconds to send `count` messages with `IN_FLIGHT` sends at a time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return time.perf_counter() - started


async def sms_channel(sink: Sinks, count: int) -> float:
    channel = SmsChannel(ACCOUNT_SID, AUTH_TOKEN, from_number="+15005550006", api_base_url=sink.twilio_url)
    try:
        return await through(
            lambda n: channel.send(
                OutboundMessage(delivery_id=n, message_id=f"<s{n}@bench>", to=f"+8199{n:08d}", text=SMS_BODY)
            ),
            count,
        )
    finally:
        await channel.close()


async def email_channel(sink: Sinks, count: int) -> float:
    channel = EmailChannel(
        "127.0.0.1", sink.smtp_port, "Herald <incident@herald.example.com>", pool_size=SMTP_CONNECTIONS
    )
    try:
        return await through(
            lambda n: channel.send(
                replace(EMAIL, delivery_id=n, message_id=f"<e{n}@bench>", to=f"contact{n}@partner.example.jp")
            ),
            count,
        )
    finally:
        await channel.close()


async def raw_sms(sink: Sinks, count: int) -> float:
    return float((await run_raw_sms(sink.twilio_url, count, IN_FLIGHT, SMS_BODY))["seconds"])


async def raw_email(sink: Sinks, count: int) -> float:
    return float((await run_raw_smtp(sink, count, SMTP_CONNECTIONS, EMAIL))["seconds"])


RUNS: dict[str, tuple[str, Callable[[Sinks, int], Awaitable[float]]]] = {
    "SmsChannel (twilio client)": ("sms", sms_channel),
    "raw aiohttp, 64 connections": ("sms", raw_sms),
    "EmailChannel (pool of 8)": ("email", email_channel),
    "raw aiosmtplib, 8 connections": ("email", raw_email),
}
# Each channel with its raw client: alternated within a repeat, and divided in the report.
PAIRS = (
    ("SmsChannel (twilio client)", "raw aiohttp, 64 connections"),
    ("EmailChannel (pool of 8)", "raw aiosmtplib, 8 connections"),
)


async def measure(sink: Sinks, name: str, count: int) -> dict[str, float]:
    lane, run = RUNS[name]
    await sink.reset()
    cpu = cpu_seconds()
    seconds = await run(sink, count)
    cpu = cpu_seconds() - cpu
    received = (await sink.counts())[lane]
    if received["received"] != count or received["duplicated"]:
        raise SystemExit(f"{name}: the sink received {received}, expected {count} distinct messages once each")
    return {"rate": count / seconds, "cpu_ms": cpu / count * 1000}


async def main(args: argparse.Namespace) -> int:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in RUNS}
    async with sinks() as sink:
        for repeat in range(args.repeat):
            order = [name for pair in PAIRS for name in (pair if repeat % 2 == 0 else reversed(pair))]
            for name in order:
                results[name].append(await measure(sink, name, args.messages))
                print(f"  repeat {repeat + 1}: {name}: {results[name][-1]['rate']:,.0f}/s", file=sys.stderr)
    rows: list[tuple[Any, ...]] = [("client", "messages", "per second (median)", "CPU ms/message (median)")]
    for name, runs in results.items():
        rows.append(
            (
                name,
                args.messages,
                f"{statistics.median(r['rate'] for r in runs):,.0f}",
                f"{statistics.median(r['cpu_ms'] for r in runs):.2f}",
            )
        )
    print(table(rows))
    print()
    for channel, raw in PAIRS:
        ratios = [c["rate"] / r["rate"] for c, r in zip(results[channel], results[raw], strict=True)]
        print(
            f"{channel} / {raw}: {statistics.median(ratios):.2f}× (median of {', '.join(f'{x:.2f}' for x in ratios)})"
        )
    print("every message arrived exactly once: yes")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--repeat", type=int, default=3, help="alternated repeats; the median ratio is printed")
    sys.exit(asyncio.run(main(parser.parse_args())))
