"""Priority under load: `python -m bench.priority [--partners 10000] [--posts 100] [--probes 1]
[--database URL] [--processes N]`.

Herald runs in processes of its own (`--processes`) on one database (`--database`, default a fresh
SQLite file; a PostgreSQL URL is emptied first). A broadcast to every partner (major severity: 3 deliveries
a partner, 30,000 at 10,000) is posted first; once 10% of it has been sent, `--posts` critical
incidents (config/sample-incident.json) are posted through `POST /v1/incidents`, spaced out over
the rest of the broadcast. Each names a component only the `--probes` probe partners subscribe to,
so it plans a few deliveries, among them one tier-1 SMS a probe partner (with the default one
probe partner, each incident gives one independent sample, so p99 over 100 posts means p99) (priority 0, ahead of the
broadcast's SMS at priority 100).

Measured for every tier-1 SMS of those incidents: `sent_at` (handed to the Twilio-compatible server)
minus the moment the driver began the POST, on the same machine clock. Also the POST's own answer
time (the plan is written inside the request) and how much of the broadcast was still queued when
each incident arrived: only posts made while broadcast SMS were still queued count as "under load".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    DeliveryLog,
    HeraldProcess,
    Sinks,
    backend_name,
    fresh_database,
    herald_processes,
    herald_settings,
    log_errors,
    percentile,
    post_json,
    settle_timeout,
    sinks,
    table,
    verdict,
)
from service.settings import ROOT
from tests.helpers.bulk import BROADCAST, insert_directory, partner_rows

PROBE_COMPONENT = "priority-probe"
BULK_COMPONENTS = ["order-api", "edi-gateway", "payments"]
SAMPLE_INCIDENT = ROOT / "config" / "sample-incident.json"
START_AT_SHARE = 0.10
AIM_P99_MS = 100
MIN_POSTS = 100


def directory_rows(partners: int, probes: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Bulk partners that never hear of the probe component, and probe partners that do."""
    bulk, bulk_contacts = partner_rows(partners)
    for partner in bulk:
        partner["components"] = BULK_COMPONENTS
    probe, probe_contacts = partner_rows(probes)
    renamed = {p["id"]: p["id"].replace("partner-", "probe-") for p in probe}
    for partner in probe:
        partner.update(id=renamed[partner["id"]], components=[PROBE_COMPONENT])
    for contact in probe_contacts:
        contact["partner_id"] = renamed[contact["partner_id"]]
    return bulk + probe, bulk_contacts + probe_contacts


def critical_incident(n: int) -> dict[str, Any]:
    body = json.loads(SAMPLE_INCIDENT.read_text(encoding="utf-8"))
    body["components"] = [PROBE_COMPONENT]
    body["title"] = {lang: f"{text} (#{n})" for lang, text in body["title"].items()}
    body["next_update_at"] = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()  # a promise ahead
    return dict(body)


SENT_SMS = "notice_id = :notice AND channel = 'sms' AND status = 'sent'"


async def wait_for_share(log: DeliveryLog, notice_id: int, total: int, share: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await log.count(SENT_SMS, notice=notice_id) < share * total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broadcast did not reach {share:.0%} sent in {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def sending_rate(log: DeliveryLog, notice_id: int, window: float = 0.5) -> float:
    before = await log.count(SENT_SMS, notice=notice_id)
    await asyncio.sleep(window)
    return max(1.0, (await log.count(SENT_SMS, notice=notice_id) - before) / window)


async def run(
    sink: Sinks,
    workdir: Path,
    partners: int,
    probes: int,
    posts: int,
    interval: float | None,
    database: str | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    url = await fresh_database(database, workdir)
    settings = herald_settings(url, sink)
    await insert_directory(settings, *directory_rows(partners, probes))
    total = (partners + probes) * 3
    sms = partners + probes  # one tier-1 SMS a partner: the lane the critical SMS must jump
    log = DeliveryLog(url)
    try:
        async with herald_processes(settings, workdir, processes) as heralds, aiohttp.ClientSession() as session:
            broadcast = await post_json(session, heralds[0].base_url + "/v1/broadcasts", BROADCAST)
            await wait_for_share(log, broadcast["notice_id"], sms, START_AT_SHARE, settle_timeout(total))
            if interval is None:
                remaining = sms - await log.count(SENT_SMS, notice=broadcast["notice_id"])
                rate = await sending_rate(log, broadcast["notice_id"])
                interval = max(0.1, 0.6 * remaining / rate / posts)
            sent_posts = await post_on_schedule(session, heralds, posts, interval)
            await log.wait_until_settled(settle_timeout(total), heralds)
        extra = {
            "interval": interval,
            "peak_rss": max(h.final_peak_rss for h in heralds),
            "log_errors": sum(log_errors(h.log_path) for h in heralds),
            "backend": backend_name(url),
            "processes": processes,
        }
        return await measure(log, broadcast["notice_id"], sent_posts) | extra
    finally:
        await log.close()


async def post_on_schedule(
    session: aiohttp.ClientSession, heralds: list[HeraldProcess], posts: int, interval: float
) -> list[tuple[int, float, float]]:
    """Post the incidents `interval` apart whether or not earlier ones were answered (independent
    incidents arrive independently), to every Herald process in turn."""

    async def post(n: int) -> tuple[int, float, float]:
        await asyncio.sleep(n * interval)
        posted_at = time.time()
        reply = await post_json(session, heralds[n % len(heralds)].base_url + "/v1/incidents", critical_incident(n))
        return reply["incident_id"], posted_at, time.time()

    return list(await asyncio.gather(*(post(n) for n in range(posts))))


async def measure(log: DeliveryLog, broadcast_id: int, sent_posts: list[tuple[int, float, float]]) -> dict[str, Any]:
    broadcast = await log.rows("notice_id = :notice", notice=broadcast_id)
    broadcast_sms = sorted(r["sent_at"] or float("inf") for r in broadcast if r["channel"] == "sms")
    samples = []
    for incident_id, posted_at, answered_at in sent_posts:
        backlog = sum(1 for sent in broadcast_sms if sent > posted_at)
        emails = await log.rows("incident_id = :incident AND channel = 'email' AND tier = 1", incident=incident_id)
        email_lags = [(row["sent_at"] or float("inf")) - posted_at for row in emails]
        for row in await log.rows("incident_id = :incident AND channel = 'sms' AND tier = 1", incident=incident_id):
            samples.append(
                {
                    "incident": incident_id,
                    "lag": (row["sent_at"] or float("inf")) - posted_at,
                    "answer": answered_at - posted_at,
                    "send": await log.send_seconds(row["id"]),
                    "backlog": backlog,
                    "status": row["status"],
                    "email_lag": max(email_lags, default=None),
                }
            )
    under_load = [s for s in samples if s["backlog"] > 0]
    broadcast_seconds = max(r["sent_at"] or r["updated_at"] for r in broadcast) - min(
        r["created_at"] for r in broadcast
    )
    return {
        "broadcast": len(broadcast),
        "broadcast_rate": len(broadcast) / broadcast_seconds,
        "posts": len(sent_posts),
        "samples": samples,
        "under_load": under_load,
    }


def report(figures: dict[str, Any]) -> tuple[str, bool]:
    under_load, samples = figures["under_load"], figures["samples"]
    lags = [s["lag"] * 1000 for s in under_load]
    answers = list({s["incident"]: s["answer"] * 1000 for s in under_load}.values())
    sends = [s["send"] * 1000 for s in under_load if s["send"] is not None]
    email_lags = [s["email_lag"] * 1000 for s in under_load if s["email_lag"] is not None]
    backlogs = [s["backlog"] for s in under_load]
    rows = [
        ("measure (posts made while broadcast SMS were queued)", "p50 ms", "p99 ms", "max ms", "samples"),
        (
            "critical tier-1 SMS: sent_at − POST began",
            f"{percentile(lags, 0.5):.0f}",
            f"{percentile(lags, 0.99):.0f}",
            f"{max(lags, default=float('nan')):.0f}",
            len(lags),
        ),
        (
            "POST /v1/incidents answered (plan written)",
            f"{percentile(answers, 0.5):.0f}",
            f"{percentile(answers, 0.99):.0f}",
            f"{max(answers, default=float('nan')):.0f}",
            len(answers),
        ),
        (
            "its tier-1 email: sent_at − POST began (not judged)",
            f"{percentile(email_lags, 0.5):.0f}",
            f"{percentile(email_lags, 0.99):.0f}",
            f"{max(email_lags, default=float('nan')):.0f}",
            len(email_lags),
        ),
        (
            "the SMS's own send (request to Twilio API answered)",
            f"{percentile(sends, 0.5):.0f}",
            f"{percentile(sends, 0.99):.0f}",
            f"{max(sends, default=float('nan')):.0f}",
            len(sends),
        ),
    ]
    p99 = percentile(lags, 0.99)
    all_sent = all(s["status"] == "sent" for s in samples)
    ok = p99 <= AIM_P99_MS and len(under_load) >= MIN_POSTS and all_sent
    judged = f"aim ≤ {AIM_P99_MS} ms over ≥ {MIN_POSTS} samples under load: {verdict(ok)}"
    text = "\n".join(
        [
            table(rows),
            "",
            (
                f"broadcast: {figures['broadcast']} deliveries at {figures['broadcast_rate']:.0f}/s;"
                f" {figures['posts']} critical incidents, one every {figures['interval']:.2f} s"
                f" after {START_AT_SHARE:.0%} of its SMS were sent"
            ),
            (
                f"under load: {len(under_load)} of {len(samples)} tier-1 SMS;"
                " broadcast SMS still queued at those posts:"
                f" min {min(backlogs, default=0)}, median {percentile(backlogs, 0.5):.0f}"
            ),
            (
                f"all critical SMS sent: {all_sent};"
                f" Herald peak RSS {figures['peak_rss']:.0f} MB; error lines in Herald's log: {figures['log_errors']}"
            ),
            f"{figures['backend']}, {figures['processes']} Herald process(es): p99 {p99:.0f} ms ({judged})",
        ]
    )
    return text, ok


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with sinks() as sink:
        with tempfile.TemporaryDirectory(prefix="herald-priority-") as tmp:
            figures = await run(
                sink, Path(tmp), args.partners, args.probes, args.posts, args.interval, args.database, args.processes
            )
    text, ok = report(figures)
    print(text)
    print(f"\n(wall time {time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10_000, help="bulk partners (3 broadcast deliveries each)")
    parser.add_argument("--probes", type=int, default=1, help="partners the critical incidents reach")
    parser.add_argument("--posts", type=int, default=MIN_POSTS, help="critical incidents posted during the broadcast")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between posts (default: spread over 60%% of the broadcast's estimated rest)",
    )
    parser.add_argument("--database", default=None, help="a PostgreSQL URL to run on (it is emptied); default SQLite")
    parser.add_argument("--processes", type=int, default=1, help="Herald processes on the one database")
    sys.exit(asyncio.run(main(parser.parse_args())))
