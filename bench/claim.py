"""The claim's plan: `python -m bench.claim [--partners 10000] [--database URL]`.

Plans a broadcast (3 deliveries a partner) with the dispatcher off, so every delivery is pending,
then runs the dispatcher's claim of one batch under `EXPLAIN ANALYZE` (PostgreSQL; SQLite gets
`EXPLAIN QUERY PLAN`) inside a transaction that is rolled back, and times `--claims` real claims
(also rolled back). What to look for on PostgreSQL: an Index Scan on ix_deliveries_due under a
Limit, with no Sort of all pending rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from bench.common import backend_name, fresh_database, herald_process, herald_settings, post_json, sinks
from service.store import Store
from service.store import deliveries as delivery_store
from tests.helpers.bulk import BROADCAST, seed_directory

BATCH = 32  # what one bulk loop of a lane claims (concurrency 64 over 2 loops)


async def plan_broadcast(url: str, partners: int, workdir: Path) -> None:
    async with sinks() as sink:
        settings = herald_settings(url, sink, enabled=False)
        await seed_directory(settings, partners)
        async with herald_process(settings, workdir) as herald, aiohttp.ClientSession() as session:
            await post_json(session, herald.base_url + "/v1/broadcasts", BROADCAST)


class Captured(Exception):
    pass


async def explain(store: Store) -> str:
    """The claim statement as the dispatcher issues it, explained, then rolled back."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    from sqlalchemy import event

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with store.engine.connect() as conn:
            transaction = await conn.begin()
            await delivery_store.claim_due(conn, ["email"], BATCH, "explain", 60)
            await transaction.rollback()
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)
    statement, parameters = statements[-1]
    async with store.engine.connect() as conn:
        transaction = await conn.begin()
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if store.is_sqlite:
            cursor = await driver.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            lines = [" ".join(str(c) for c in row) for row in await cursor.fetchall()]
        else:
            rows = await driver.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *parameters)
            lines = [row[0] for row in rows]
        await transaction.rollback()
    return "\n".join(lines)


async def time_claims(store: Store, claims: int) -> list[float]:
    times = []
    for _ in range(claims):
        async with store.engine.connect() as conn:
            transaction = await conn.begin()
            started = time.perf_counter()
            batch = await delivery_store.claim_due(conn, ["email"], BATCH, "timing", 60)
            times.append(time.perf_counter() - started)
            assert len(batch) == BATCH, len(batch)
            await transaction.rollback()
    return times


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="herald-claim-") as tmp:
        url = await fresh_database(args.database, Path(tmp))
        await plan_broadcast(url, args.partners, Path(tmp))
        store = Store(url)
        try:
            async with store.read() as conn:
                pending = (
                    await conn.execute(text("SELECT count(*) FROM deliveries WHERE status = 'pending'"))
                ).scalar()
            print(f"{backend_name(url)}: {pending} deliveries pending; the claim of {BATCH} email deliveries:\n")
            print(await explain(store))
            times = await time_claims(store, args.claims)
        finally:
            await store.close()
    print(
        f"\n{args.claims} claims of {BATCH}: median {statistics.median(times) * 1000:.2f} ms,"
        f" max {max(times) * 1000:.2f} ms (one statement each; rolled back)"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10_000, help="partners (3 pending deliveries each)")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL to run on (it is emptied); default SQLite")
    parser.add_argument("--claims", type=int, default=20, help="claims to time")
    sys.exit(asyncio.run(main(parser.parse_args())))
