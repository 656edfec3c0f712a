"""Priority under load: `python -m bench.priority [--partners 10000] [--posts 20] [--probes 5]`.

Herald runs in its own process on SQLite. A broadcast to every partner (major severity: 3 deliveries
a partner, 30,000 at 10,000) is posted first; once 10% of it has been sent, `--posts` critical
incidents (config/sample-incident.json) are posted through `POST /v1/incidents`, spaced out over
the rest of the broadcast. Each names a component only the `--probes` probe partners subscribe to,
so it plans a few deliveries, among them one tier-1 SMS a probe partner (priority 0, ahead of the
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
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    DeliveryLog,
    Sinks,
    herald_process,
    herald_settings,
    log_errors,
    percentile,
    post_json,
    settle_timeout,
    sinks,
    table,
)
from service.settings import ROOT
from tests.helpers.bulk import BROADCAST, insert_directory, partner_rows

PROBE_COMPONENT = "priority-probe"
BULK_COMPONENTS = ["order-api", "edi-gateway", "payments"]
SAMPLE_INCIDENT = ROOT / "config" / "sample-incident.json"
START_AT_SHARE = 0.10
AIM_P99_MS = 250


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
    return dict(body)


SENT_SMS = "notice_id = ? AND channel = 'sms' AND status = 'sent'"


async def wait_for_share(log: DeliveryLog, notice_id: int, total: int, share: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while log.count(SENT_SMS, notice_id) < share * total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broadcast did not reach {share:.0%} sent in {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def sending_rate(log: DeliveryLog, notice_id: int, window: float = 0.5) -> float:
    before = log.count(SENT_SMS, notice_id)
    await asyncio.sleep(window)
    return max(1.0, (log.count(SENT_SMS, notice_id) - before) / window)


async def run(
    sink: Sinks, workdir: Path, partners: int, probes: int, posts: int, interval: float | None
) -> dict[str, Any]:
    settings = herald_settings(workdir / "herald.db", sink)
    await insert_directory(settings, *directory_rows(partners, probes))
    total = (partners + probes) * 3
    sms = partners + probes  # one tier-1 SMS a partner: the lane the critical SMS must jump
    log = DeliveryLog(workdir / "herald.db")
    try:
        async with herald_process(settings, workdir) as herald, aiohttp.ClientSession() as session:
            broadcast = await post_json(session, herald.base_url + "/v1/broadcasts", BROADCAST)
            await wait_for_share(log, broadcast["notice_id"], sms, START_AT_SHARE, settle_timeout(total))
            if interval is None:
                remaining = sms - log.count(SENT_SMS, broadcast["notice_id"])
                rate = await sending_rate(log, broadcast["notice_id"])
                interval = max(0.05, 0.6 * remaining / rate / posts)
            sent_posts = []
            for n in range(posts):
                posted_at = time.time()
                reply = await post_json(session, herald.base_url + "/v1/incidents", critical_incident(n))
                answered_at = time.time()
                sent_posts.append((reply["incident_id"], posted_at, answered_at))
                await asyncio.sleep(max(0.0, interval - (answered_at - posted_at)))
            await log.wait_until_settled(settle_timeout(total), herald)
            extra = {"interval": interval, "peak_rss": herald.peak_rss_mb(), "log_errors": log_errors(herald.log_path)}
        return measure(log, broadcast["notice_id"], sent_posts) | extra
    finally:
        log.close()


def measure(log: DeliveryLog, broadcast_id: int, sent_posts: list[tuple[int, float, float]]) -> dict[str, Any]:
    broadcast = log.rows("notice_id = ?", broadcast_id)
    broadcast_sms = sorted(r["sent_at"] or float("inf") for r in broadcast if r["channel"] == "sms")
    samples = []
    for incident_id, posted_at, answered_at in sent_posts:
        backlog = sum(1 for sent in broadcast_sms if sent > posted_at)
        for row in log.rows("incident_id = ? AND channel = 'sms' AND tier = 1", incident_id):
            samples.append(
                {
                    "incident": incident_id,
                    "lag": (row["sent_at"] or float("inf")) - posted_at,
                    "answer": answered_at - posted_at,
                    "backlog": backlog,
                    "status": row["status"],
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


def report(figures: dict[str, Any]) -> str:
    under_load, samples = figures["under_load"], figures["samples"]
    lags = [s["lag"] * 1000 for s in under_load]
    answers = list({s["incident"]: s["answer"] * 1000 for s in under_load}.values())
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
    ]
    p99 = percentile(lags, 0.99)
    verdict = "met" if p99 <= AIM_P99_MS else "MISSED"
    return "\n".join(
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
                f"all critical SMS sent: {all(s['status'] == 'sent' for s in samples)};"
                f" Herald peak RSS {figures['peak_rss']:.0f} MB; error lines in Herald's log: {figures['log_errors']}"
            ),
            f"p99 {p99:.0f} ms (aim ≤ {AIM_P99_MS} ms: {verdict})",
        ]
    )


async def main(partners: int, probes: int, posts: int, interval: float | None) -> None:
    started = time.perf_counter()
    async with sinks() as sink:
        with tempfile.TemporaryDirectory(prefix="herald-priority-") as tmp:
            figures = await run(sink, Path(tmp), partners, probes, posts, interval)
    print(report(figures))
    print(f"\n(wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10_000, help="bulk partners (3 broadcast deliveries each)")
    parser.add_argument("--probes", type=int, default=5, help="partners the critical incidents reach")
    parser.add_argument("--posts", type=int, default=20, help="critical incidents posted during the broadcast")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between posts (default: spread over 60%% of the broadcast's estimated rest)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.partners, args.probes, args.posts, args.interval))
