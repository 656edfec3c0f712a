"""Ingest throughput: `python -m bench.ingest [--posts 5000] [--concurrency 32] [--groups 50]`.

Starts Herald in-process on a fresh database (`--database`, default SQLite; example partner
directory imported, so critical alerts plan real deliveries, and the dispatcher ON, sending them to
the sinks as in production), then posts
Alertmanager webhook v4 bodies from a concurrent aiohttp client: mostly repeat_interval re-sends of
`--groups` firing groups, plus a share of new groups (a few critical, most warning → drafts).
The client runs in a child process (its own CPU and event loop); Herald runs in this one.
Prints posts/s and latency percentiles, and the answers that were errors (non-2xx) apart from the
actions. Aim: ≥ 2,000 posts/s, p99 ≤ 50 ms, no errors; a miss exits 1.

With `--floor`, the same client then posts the same bodies to a bare aiohttp app in this process
that checks the token, reads each body as JSON and answers 202 with a small JSON, nothing else:
the rate any aiohttp service reaches on this machine, printed beside Herald's as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bench.common import Sinks, backend_name, fresh_database, herald_settings, sinks, verdict
from service.app import create_app
from service.settings import Settings, Token

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-ingest-token-0123456789"
AIM_POSTS_PER_SECOND = 2000
AIM_P99_MS = 50
WEBHOOK_PATH = "/v1/webhooks/alertmanager"
COMPONENTS = ["order-api", "edi-gateway", "payments", "web-portal", "warehouse-sync", "billing"]


def bench_settings(database_url: str, sink: Sinks) -> Settings:
    """The example directory imported, the dispatcher on and sending to the sinks: what a critical
    alert plans goes out during the storm, as it would in production."""
    return herald_settings(
        database_url,
        sink,
        extra={
            "auth": {"tokens": [Token(name="bench", scopes=["ingest"], secret=SecretStr(TOKEN))]},
            "directory": {"path": str(ROOT / "config" / "partners.example.yaml"), "import_on_start": True},
        },
    )


def webhook(group: int, severity: str) -> bytes:
    component = COMPONENTS[group % len(COMPONENTS)]
    labels = {
        "alertname": f"BenchAlert{group}",
        "component": component,
        "severity": severity,
        "instance": f"{component}-{group}:8080",
        "job": component,
    }
    annotations = {"summary": f"{component} alert {group}", "description": f"Synthetic alert {group} for the bench."}
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="BenchAlert{group}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "herald",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-11-25T01:02:03Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.com/graph",
                "fingerprint": f"{group:016x}",
            }
        ],
    }
    return json.dumps(body).encode()


def workload(posts: int, groups: int, new_share: float, seed: int = 7) -> list[bytes]:
    """The known groups first (they open incidents), then re-sends mixed with new groups."""
    rng = random.Random(seed)
    bodies = [webhook(g, "critical" if g % 10 == 0 else "warning") for g in range(groups)]
    next_group = groups
    while len(bodies) < posts:
        if rng.random() < new_share:
            bodies.append(webhook(next_group, "critical" if next_group % 10 == 0 else "warning"))
            next_group += 1
        else:
            bodies.append(bodies[rng.randrange(groups)])  # a repeat_interval re-send
    return bodies[:posts]


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], Counter[str], float]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []  # answered requests, successful or not
    outcomes: Counter[str] = Counter()  # the action of each 2xx answer, "error <status>" otherwise
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                reply = await response.json()
            latencies.append(time.perf_counter() - started)
            ok = 200 <= response.status < 300
            outcomes[reply.get("action", "ok") if ok else f"error {response.status}"] += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, outcomes, elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def client_process(url: str, bodies: list[bytes], concurrency: int, out: Any) -> None:
    """The load generator, in its own process so it does not share Herald's CPU and event loop."""
    latencies, outcomes, elapsed = asyncio.run(post_all(url, bodies, concurrency))
    out.send((latencies, dict(outcomes), elapsed))
    out.close()


async def run(
    posts: int,
    concurrency: int,
    groups: int,
    new_share: float,
    preopen: bool = False,
    database: str | None = None,
    floor: bool = False,
) -> int:
    async with sinks() as sink:
        with tempfile.TemporaryDirectory() as tmp:
            url = await fresh_database(database, Path(tmp))
            latencies, outcomes, elapsed, cpu = await measure(
                bench_settings(url, sink), posts, concurrency, groups, new_share, preopen
            )
    code = print_table(backend_name(url), posts, concurrency, latencies, outcomes, elapsed, cpu)
    if floor:
        bare, bare_elapsed, bare_cpu = await measure_floor(posts, concurrency, groups, new_share)
        print(
            f"floor: bare aiohttp (token, JSON body, 202) {posts / bare_elapsed:,.0f} posts/s,"
            f" p50 {percentile(bare, 0.50) * 1000:.1f} ms, p99 {percentile(bare, 0.99) * 1000:.1f} ms,"
            f" {bare_cpu / posts * 1e6:,.0f} µs CPU a post; Herald / floor: {bare_elapsed / elapsed:.2f}× the rate,"
            f" {cpu / bare_cpu:.1f}× the CPU a post"
        )
    return code


async def measure_floor(
    posts: int, concurrency: int, groups: int, new_share: float
) -> tuple[list[float], float, float]:
    """The bare aiohttp app's latencies, elapsed seconds and CPU seconds for the same workload."""

    async def accept(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized()
        body = await request.json()
        return web.json_response({"action": "accepted", "alerts": len(body.get("alerts", []))}, status=202)

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, accept)
    async with serving(app) as url:
        latencies, _, elapsed, cpu = await post_from_child(url, workload(posts, groups, new_share), concurrency)
    return latencies, elapsed, cpu


async def measure(
    settings: Settings, posts: int, concurrency: int, groups: int, new_share: float, preopen: bool
) -> tuple[list[float], Counter[str], float, float]:
    """Latencies, actions, elapsed seconds, and the CPU seconds Herald's process spent meanwhile."""
    async with serving(create_app(settings)) as url:
        await post_all(url, workload(50, 5, 0.0, seed=1), 4)  # warm-up on groups of their own
        if preopen:  # steady state: the groups are already open, as in a storm's later minutes
            await post_all(url, workload(groups, groups, 0.0), 4)
        return await post_from_child(url, workload(posts, groups, new_share), concurrency)


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` listening on a free port of 127.0.0.1: the URL its Alertmanager webhook is posted to."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site.port}{WEBHOOK_PATH}"
    finally:
        await runner.cleanup()


async def post_from_child(
    url: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], Counter[str], float, float]:
    """Post `bodies` from a client in a child process: its latencies, actions and elapsed seconds,
    and the CPU seconds this process spent meanwhile."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    spawn = multiprocessing.get_context("spawn")
    client = spawn.Process(target=client_process, args=(url, bodies, concurrency, sender))
    cpu_before = time.process_time()
    client.start()
    await asyncio.to_thread(receiver.poll, None)  # until the client process reports
    latencies, outcomes, elapsed = receiver.recv()
    cpu = time.process_time() - cpu_before
    client.join()
    return latencies, Counter(outcomes), elapsed, cpu


def print_table(
    backend: str,
    posts: int,
    concurrency: int,
    latencies: list[float],
    outcomes: Counter[str],
    elapsed: float,
    cpu: float,
) -> int:
    errors = sum(n for action, n in outcomes.items() if action.startswith("error"))
    rate, p99 = posts / elapsed, percentile(latencies, 0.99) * 1000
    rows = [
        ("posts", f"{posts}"),
        ("concurrency", f"{concurrency}"),
        ("elapsed", f"{elapsed:.2f} s"),
        ("posts/s", f"{posts / elapsed:,.0f}"),
        ("p50 latency", f"{percentile(latencies, 0.50) * 1000:.1f} ms"),
        ("p99 latency", f"{percentile(latencies, 0.99) * 1000:.1f} ms"),
        ("max latency", f"{max(latencies) * 1000:.1f} ms"),
        # What the work costs whatever else the machine runs: the rate a free core would allow.
        ("Herald CPU", f"{cpu:.2f} s, {cpu / posts * 1e6:,.0f} µs a post ({posts / cpu:,.0f} posts per CPU-second)"),
        ("actions", ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()) if not k.startswith("error"))),
        ("errors", ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()) if k.startswith("error")) or "0"),
    ]
    print(f"Herald ingest bench (Herald in-process on {backend}, dispatcher on; client in a child process)")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    ok = rate >= AIM_POSTS_PER_SECOND and p99 <= AIM_P99_MS and not errors
    print(
        f"posts/s ≥ {AIM_POSTS_PER_SECOND:,}, p99 ≤ {AIM_P99_MS} ms and no errors: {verdict(ok)}"
        f" ({rate:,.0f}/s, p99 {p99:.1f} ms, {errors} errors)"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--new-share", type=float, default=0.05, help="share of posts that start a new group")
    parser.add_argument("--preopen", action="store_true", help="open the groups before the clock starts")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL to run on (it is emptied); default SQLite")
    parser.add_argument("--floor", action="store_true", help="then the same posts to a bare aiohttp app, as a ratio")
    args = parser.parse_args()
    return asyncio.run(
        run(args.posts, args.concurrency, args.groups, args.new_share, args.preopen, args.database, args.floor)
    )


if __name__ == "__main__":
    sys.exit(main())
