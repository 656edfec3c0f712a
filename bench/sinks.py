"""The far side of the wire for benchmarks, in its own process so it does not share Herald's CPU:
an aiosmtpd SMTP sink that accepts and discards, and the Twilio-compatible server from the tests.

`python -m bench.sinks` prints `READY <smtp_port> <twilio_port>` and serves until killed.
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.smtp import SMTP

from tests.fakes.twilio import TwilioFake

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token"


class Discard:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        return f"250 2.0.0 Ok: queued as B{self.count}"


async def serve() -> None:
    loop = asyncio.get_running_loop()
    handler = Discard()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.local", data_size_limit=10_000_000), "127.0.0.1", 0
    )
    smtp_port = server.sockets[0].getsockname()[1]
    twilio = TwilioFake(ACCOUNT_SID, AUTH_TOKEN)
    twilio.requests = _Forgetful()
    twilio.messages = _Forgetful()
    await twilio.start()
    print(f"READY {smtp_port} {twilio.port}", flush=True)
    async with server:
        await asyncio.Event().wait()


class _Forgetful(list):
    """Counts what the fake would record, without keeping 100,000 dicts."""

    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)
