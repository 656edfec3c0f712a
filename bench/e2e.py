"""End to end: `python -m bench.e2e [--partners 10000] [--apprise 2000] [--timeout S]`.

One broadcast (major severity: tier-1 email + tier-1 SMS + tier-2 email, so 3 deliveries a partner;
30,000 at 10,000 partners) through Herald running in a process of its own on SQLite, to the aiosmtpd
sink and the Twilio-compatible server in another child process. Reports deliveries/s,
created→submitted p50/p99 (`deliveries.created_at` → `sent_at`) and Herald's peak RSS.

In the same run, one after the other so they never share the CPU with Herald:
  * raw aiosmtplib pushing as many pre-built emails into the same sink over 8 connections
    (no persistence, no rendering): the ceiling;
  * Apprise sending `--apprise` emails (a subset: it connects once per message) from a pool of
    8 threads, each message through its own `mailto://` URL, as an Apprise user notifying
    contacts one by one would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import apprise

from bench.common import (
    DeliveryLog,
    Sinks,
    broadcast_figures,
    herald_process,
    herald_settings,
    log_errors,
    post_json,
    settle_timeout,
    sinks,
    table,
)
from bench.dispatch import run_raw_smtp, sample_email
from channels.base import OutboundMessage
from tests.helpers.bulk import BROADCAST, seed_directory

DELIVERIES_PER_PARTNER = 3  # BROADCAST is major: tier-1 email, tier-1 SMS, tier-2 email
APPRISE_THREADS = 8  # as many as Herald's SMTP pool and the raw client's connections
AIM_VS_APPRISE = 5.0
AIM_VS_RAW = 0.5
AIM_RSS_MB = 250
AIM_RSS_AT = 30_000


async def herald_broadcast(sink: Sinks, workdir: Path, partners: int, timeout: float | None = None) -> dict[str, Any]:
    """Seed `partners`, start Herald in its own process, post BROADCAST, wait until it settles."""
    settings = herald_settings(workdir / "herald.db", sink)
    seed_started = time.perf_counter()
    await seed_directory(settings, partners)
    seeded = time.perf_counter() - seed_started
    expected = partners * DELIVERIES_PER_PARTNER
    log = DeliveryLog(workdir / "herald.db")
    try:
        async with herald_process(settings, workdir) as herald:
            idle_rss = herald.rss_mb()
            async with aiohttp.ClientSession() as session:
                posted_at = time.time()
                await post_json(session, herald.base_url + "/v1/broadcasts", BROADCAST)
                accepted = time.time() - posted_at
            await log.wait_until_settled(timeout or settle_timeout(expected), herald)
            figures = broadcast_figures(log, posted_at)
            figures.update(
                idle_rss=idle_rss,
                peak_rss=herald.peak_rss_mb(),
                accepted=accepted,
                seeded=seeded,
                log_errors=log_errors(herald.log_path),
            )
        figures["sample"] = await sample_email(settings)
    finally:
        log.close()
    return figures


def apprise_jobs(sink: Sinks, count: int, sample: OutboundMessage) -> list[tuple[apprise.Apprise, str, str]]:
    """One Apprise object per message: a reused email plugin instance throttles itself (5.5 s).
    Each sends the subject and HTML Herald sent, so both push the same content."""
    jobs = []
    for n in range(count):
        notifier = apprise.Apprise()
        url = (
            f"mailto://127.0.0.1:{sink.smtp_port}?smtp=127.0.0.1&mode=insecure"
            f"&from=incident@herald.example.com&name=Herald&to=contact{n}@partner{n}.example.jp"
        )
        if not notifier.add(url):
            raise RuntimeError(f"Apprise rejected {url}")
        jobs.append((notifier, sample.subject or "", sample.html or sample.text))
    return jobs


def run_apprise(sink: Sinks, count: int, sample: OutboundMessage) -> dict[str, Any]:
    """Apprise's email plugin is synchronous smtplib: one connection a notification, so a thread pool."""
    logging.getLogger("apprise").setLevel(logging.ERROR)
    jobs = apprise_jobs(sink, count, sample)  # built before the clock starts: Apprise's set-up is not charged

    def notify(job: tuple[apprise.Apprise, str, str]) -> bool:
        notifier, title, body = job
        return bool(notifier.notify(body=body, title=title, body_format=apprise.NotifyFormat.HTML))

    started = time.perf_counter()
    with ThreadPoolExecutor(APPRISE_THREADS) as pool:
        results = list(pool.map(notify, jobs))
    elapsed = time.perf_counter() - started
    return {"deliveries": count, "sent": sum(results), "seconds": elapsed, "rate": count / elapsed}


async def main(partners: int, apprise_count: int, timeout: float | None) -> None:
    started = time.perf_counter()
    async with sinks() as sink:
        with tempfile.TemporaryDirectory(prefix="herald-e2e-") as tmp:
            herald = await herald_broadcast(sink, Path(tmp), partners, timeout)
        raw = await run_raw_smtp(sink, herald["emails"], 8, herald["sample"])
        subset = min(apprise_count, herald["emails"])
        ap = await asyncio.to_thread(run_apprise, sink, subset, herald["sample"])
    print(report(herald, raw, ap))
    print(
        f"\n(wall time {time.perf_counter() - started:.0f} s; seeding {herald['seeded']:.1f} s not counted;"
        f" POST /v1/broadcasts answered in {herald['accepted'] * 1000:.0f} ms, planning included)"
    )


def report(herald: dict[str, Any], raw: dict[str, Any], ap: dict[str, Any]) -> str:
    rows = [
        ("run", "deliveries", "seconds", "deliveries/s", "created→sent p50 ms", "p99 ms", "peak RSS MB"),
        (
            "Herald, email+SMS (own process, SQLite)",
            herald["deliveries"],
            f"{herald['seconds']:.2f}",
            f"{herald['rate']:.0f}",
            f"{herald['p50'] * 1000:.0f}",
            f"{herald['p99'] * 1000:.0f}",
            f"{herald['peak_rss']:.0f}",
        ),
        ("  of which the email lane", herald["emails"], "-", f"{herald['email_rate']:.0f}", "-", "-", "-"),
        (
            "raw aiosmtplib, 8 connections (no persistence)",
            raw["deliveries"],
            f"{raw['seconds']:.2f}",
            f"{raw['rate']:.0f}",
            "-",
            "-",
            "-",
        ),
        (
            f"Apprise mailto://, {APPRISE_THREADS} threads (subset of {ap['deliveries']})",
            ap["deliveries"],
            f"{ap['seconds']:.2f}",
            f"{ap['rate']:.0f}",
            "-",
            "-",
            "-",
        ),
    ]
    vs_apprise = herald["rate"] / ap["rate"]
    vs_raw = herald["rate"] / raw["rate"]
    rss_verdict = (
        verdict(herald["peak_rss"] <= AIM_RSS_MB)
        if herald["deliveries"] >= AIM_RSS_AT
        else f"not judged below {AIM_RSS_AT:,} deliveries"
    )
    all_sent = herald["sent"] == herald["deliveries"] and ap["sent"] == ap["deliveries"]
    return "\n".join(
        [
            table(rows),
            "",
            (
                f"Herald / Apprise: {vs_apprise:.1f}×"
                f"   (aim ≥ {AIM_VS_APPRISE:.0f}×: {verdict(vs_apprise >= AIM_VS_APPRISE)})"
            ),
            (
                f"Herald / raw:     {vs_raw:.0%}   (aim ≥ {AIM_VS_RAW:.0%}: {verdict(vs_raw >= AIM_VS_RAW)});"
                f" email lane alone / raw: {herald['email_rate'] / raw['rate']:.0%}"
            ),
            (
                f"Herald peak RSS:  {herald['peak_rss']:.0f} MB (idle after start {herald['idle_rss']:.0f} MB)"
                f"   (aim ≤ {AIM_RSS_MB} MB at {AIM_RSS_AT:,}: {rss_verdict})"
            ),
            (
                f"all sent: {all_sent} (Herald {herald['sent']}/{herald['deliveries']},"
                f" Apprise {ap['sent']}/{ap['deliveries']});"
                f" error lines in Herald's log: {herald['log_errors']}"
            ),
        ]
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10_000, help="partners (3 deliveries each)")
    parser.add_argument("--apprise", type=int, default=2_000, help="emails Apprise sends (a subset)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for Herald to settle (default: 60 + 10 ms a delivery)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.partners, args.apprise, args.timeout))
