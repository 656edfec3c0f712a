"""The far side of the wire for benchmarks, in its own process so it does not share Herald's CPU:
an aiosmtpd SMTP sink that accepts and discards, and the Twilio-compatible server from the tests.

`python -m bench.sinks [--sms-rate R]` prints `READY <smtp_port> <twilio_port> <control_port>` and
serves until killed. Both sides count what they *received*, keyed by message (email: the
Message-ID header; SMS: To and Body), so a benchmark checks arrivals on the wire rather than what
Herald wrote in its table: `GET /counts` on the control port answers per lane how many arrived,
how many distinct, the first and last arrival (epoch seconds) and, for SMS, how many requests the
server refused with 429. `POST /reset` starts counting afresh (between runs of one benchmark).

With `--sms-rate R` the Twilio-compatible server enforces a sender's rate as Twilio does: a token
bucket of R messages a second per sender (From or MessagingServiceSid, burst `--sms-burst`) and a
429 (code 20429) for a request over it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP

from tests.fakes.twilio import TwilioFake

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token"


class Arrivals:
    """What one lane received: a count per message key, and the first and last arrival."""

    def __init__(self) -> None:
        self.keys: Counter[bytes] = Counter()
        self.first = 0.0
        self.last = 0.0

    def clear(self) -> None:
        self.keys.clear()
        self.first = self.last = 0.0

    def add(self, key: bytes) -> None:
        now = time.time()
        if not self.keys:
            self.first = now
        self.last = now
        self.keys[hashlib.blake2b(key, digest_size=12).digest()] += 1

    def summary(self) -> dict[str, Any]:
        received = sum(self.keys.values())
        return {
            "received": received,
            "distinct": len(self.keys),
            "duplicated": received - len(self.keys),
            "first": self.first,
            "last": self.last,
        }


class Discard:
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server, session, envelope) -> str:
        self.arrivals.add(message_key(envelope.original_content or envelope.content, envelope.rcpt_tos))
        return f"250 2.0.0 Ok: queued as B{sum(self.arrivals.keys.values())}"


def message_key(content: bytes, rcpt_tos: list[str]) -> bytes:
    """The recipients and the Message-ID header (stable per delivery: a resend repeats both)."""
    start = content.find(b"\r\nMessage-ID:")
    end = content.find(b"\r\n", start + 2) if start >= 0 else start
    return ",".join(rcpt_tos).encode() + b"\n" + (content[start + 2 : end] if start >= 0 else b"")


class CountingTwilio(TwilioFake):
    """The tests' Twilio-compatible server, counting arrivals and (optionally) enforcing a rate."""

    def __init__(self, arrivals: Arrivals, rate: float | None, burst: int) -> None:
        super().__init__(ACCOUNT_SID, AUTH_TOKEN)
        self.requests = _Forgetful()
        self.messages = _Forgetful()
        self.arrivals = arrivals
        if rate:
            self.enforce_rate(rate, burst)

    async def _accept(self, form: dict[str, str]) -> dict[str, Any]:
        self.arrivals.add(f"{form.get('To')}\n{form.get('Body')}".encode())
        return await super()._accept(form)


class _Forgetful(list):
    """Counts nothing and keeps nothing: the Arrivals do the counting without 100,000 dicts."""

    def append(self, item: object) -> None:
        pass


async def serve(sms_rate: float | None, sms_burst: int) -> None:
    loop = asyncio.get_running_loop()
    lanes = {"email": Arrivals(), "sms": Arrivals()}
    server = await loop.create_server(
        lambda: SMTP(Discard(lanes["email"]), hostname="sink.local", data_size_limit=10_000_000), "127.0.0.1", 0
    )
    smtp_port = server.sockets[0].getsockname()[1]
    twilio = CountingTwilio(lanes["sms"], sms_rate, sms_burst)
    await twilio.start()

    async def counts(_: web.Request) -> web.Response:
        body = {name: arrivals.summary() for name, arrivals in lanes.items()}
        body["sms"]["refused_429"] = twilio.refused_over_rate
        return web.json_response(body)

    async def reset(_: web.Request) -> web.Response:
        for arrivals in lanes.values():
            arrivals.clear()
        twilio.refused_over_rate = 0
        return web.json_response({"reset": True})

    control = web.Application()
    control.router.add_get("/counts", counts)
    control.router.add_post("/reset", reset)
    runner = web.AppRunner(control, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"READY {smtp_port} {twilio.port} {runner.addresses[0][1]}", flush=True)
    async with server:
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sms-rate", type=float, default=None, help="messages a second per sender (429 above)")
    parser.add_argument("--sms-burst", type=int, default=1, help="the sender's bucket size")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.sms_rate, args.sms_burst))
    except KeyboardInterrupt:
        sys.exit(0)
