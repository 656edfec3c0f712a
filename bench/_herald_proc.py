"""Herald alone in its own process, so a benchmark measures Herald's memory and not its own.

`python -m bench._herald_proc CONFIG.json` builds the app exactly as `herald serve` does (same
factory, same JSON logging at INFO, to stderr), prints `READY <port>` once it listens, and serves
until SIGTERM or SIGINT, then shuts down cleanly (dispatcher stopped, store closed).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings


async def serve(settings: Settings) -> None:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {runner.addresses[0][1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    configure_logging()
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    asyncio.run(serve(Settings.model_validate(config)))
