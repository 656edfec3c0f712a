"""Herald alone in its own process, so a benchmark measures Herald's memory and not its own.

`python -m bench._herald_proc CONFIG.json [STATS.json]` builds the app exactly as `herald serve`
does (same factory, same JSON logging at INFO, to stderr), prints `READY <port>` once it listens,
and serves until SIGTERM or SIGINT, then shuts down cleanly (dispatcher stopped, store closed).

With STATS.json it counts the database round trips the process made, as SQLAlchemy sees them
(each statement or batch of an executemany, each BEGIN, COMMIT and ROLLBACK; pool checkouts too,
which are no round trip: Herald does not ping a connection on checkout), and writes them there on
exit; with HERALD_BENCH_STATEMENTS=1 also a count per statement (its first 90 characters), to see
which ones a change saved.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings

ROUND_TRIPS: Counter[str] = Counter()


def count_round_trips() -> None:
    def statement(conn: Any, cursor: Any, text: str, *_: Any) -> None:
        ROUND_TRIPS["statements"] += 1
        if os.environ.get("HERALD_BENCH_STATEMENTS"):
            ROUND_TRIPS[" ".join(text.split())[:90]] += 1

    def transaction(name: str) -> Any:
        def counted(*_: Any) -> None:
            ROUND_TRIPS[name] += 1

        return counted

    event.listen(Engine, "before_cursor_execute", statement)
    for name in ("begin", "commit", "rollback"):
        event.listen(Engine, name, transaction(name))
    event.listen(Pool, "checkout", transaction("checkouts"))


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
    stats = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if stats is not None:
        count_round_trips()
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    asyncio.run(serve(Settings.model_validate(config)))
    if stats is not None:
        stats.write_text(json.dumps(dict(ROUND_TRIPS)))
