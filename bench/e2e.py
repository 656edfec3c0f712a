"""End to end: `python -m bench.e2e [--partners 10000] [--email-only] [--database URL] [--processes 1,2,4]
[--against-sqlite] [--repeat 3] [--apprise 2000] [--timeout S]`.

One broadcast through Herald running in processes of its own (`--processes`, all on one database:
`--database`, default a fresh SQLite file; a PostgreSQL URL is emptied first) to the aiosmtpd sink
and the Twilio-compatible server in another child process. The broadcast is major severity: tier-1
email + tier-1 SMS + tier-2 email, 3 deliveries a partner (`--email-only`: 2 emails a partner).

Every figure is counted at the far side of the wire: each lane's sink keys what it received by
message (email: recipient and Message-ID; SMS: To and Body), and a run where any expected message
is missing, arrived twice or was never planned fails the command. A lane's rate is its messages
divided by the time from the POST to its last arrival.

Baselines, one lane each and in the same run: raw aiosmtplib pushing the same email bytes into the
same sink over as many connections as Herald's SMTP pool; a raw aiohttp client posting the same SMS
body to the same Twilio-compatible server over as many connections as Herald's SMS lane. Raw and
Herald runs alternate `--repeat` times (Herald first, then raw first, ...), each ratio is taken
within one repeat, and the median ratio is judged. `--against-sqlite` adds a SQLite run to each
repeat when `--database` is PostgreSQL and judges PostgreSQL (one process) / SQLite.

Aims: email-only broadcast, email lane ≥ 0.8× raw; mixed broadcast, email lane ≥ 0.6× raw and SMS
lane ≥ 0.8× raw; PostgreSQL ≥ 0.9× SQLite. A missed aim exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import apprise

from bench.common import (
    DeliveryLog,
    Sinks,
    backend_name,
    broadcast_figures,
    cpu_seconds,
    fresh_database,
    herald_processes,
    herald_settings,
    lane_figures,
    log_errors,
    median,
    post_json,
    settle_timeout,
    sinks,
    table,
    verdict,
    wire_problems,
)
from bench.dispatch import run_raw_sms, run_raw_smtp, sample_message
from channels.base import OutboundMessage
from tests.helpers.bulk import BROADCAST, seed_directory

DELIVERIES_PER_PARTNER = 3  # BROADCAST is major: tier-1 email, tier-1 SMS, tier-2 email
APPRISE_THREADS = 8  # as many as Herald's SMTP pool and the raw client's connections
SMS_CONNECTIONS = 64  # Herald's SMS lane concurrency (dispatch.concurrency.sms)
AIM_VS_APPRISE = 5.0
AIM_EMAIL_ONLY = 0.8
AIM_EMAIL_MIXED = 0.6
AIM_SMS_MIXED = 0.8
AIM_VS_SQLITE = 0.9


@dataclass(frozen=True)
class HeraldRun:
    """One Herald configuration measured in every repeat."""

    database: str | None  # None: a fresh SQLite file
    processes: int

    @property
    def label(self) -> str:
        backend = "SQLite" if self.database is None else backend_name(self.database)
        return f"Herald, {backend}, {self.processes} process{'es' if self.processes > 1 else ''}"


def round_trips(stats: list[dict[str, int]], postgres: bool) -> int:
    """Statements and transaction control; on PostgreSQL BEGIN is a round trip of its own (on
    SQLite our BEGIN is a statement already counted). A pool checkout is none: no liveness ping."""
    keys = ("statements", "commit", "rollback") + (("begin",) if postgres else ())
    return sum(s.get(k, 0) for s in stats for k in keys)


async def herald_broadcast(
    sink: Sinks,
    workdir: Path,
    partners: int,
    run: HeraldRun = HeraldRun(None, 1),
    email_only: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Seed `partners` into a fresh database, start Herald, post BROADCAST, wait until it settles,
    and count what the sinks received."""
    url = await fresh_database(run.database, workdir)
    settings = herald_settings(url, sink)
    seed_started = time.perf_counter()
    phones = 0 if email_only else 1
    await seed_directory(settings, partners, emails=2, phones=phones)
    seeded = time.perf_counter() - seed_started
    expected = {"email": partners * 2, "sms": partners * phones}
    log = DeliveryLog(url)
    try:
        await sink.reset()
        async with herald_processes(settings, workdir, run.processes) as heralds:
            idle_rss = max(h.rss_mb() for h in heralds)
            async with aiohttp.ClientSession() as session:
                posted_at = time.time()
                await post_json(session, heralds[0].base_url + "/v1/broadcasts", BROADCAST)
                accepted = time.time() - posted_at
            await log.wait_until_settled(timeout or settle_timeout(sum(expected.values())), heralds)
            counts = await sink.counts()
            figures = await broadcast_figures(log, posted_at)
        lanes = {name: lane_figures(counts[name], expected[name], posted_at) for name in expected}
        wire = [lane for lane in lanes.values() if lane["expected"]]
        seconds = max(lane["seconds"] for lane in wire)
        figures.update(
            lanes=lanes,
            rate=sum(lane["expected"] - lane["missing"] for lane in wire) / seconds,
            seconds=seconds,
            idle_rss=idle_rss,
            peak_rss=max(h.final_peak_rss for h in heralds),
            cpu_ms=sum(h.cpu_seconds for h in heralds) * 1000,
            accepted=accepted,
            seeded=seeded,
            log_errors=sum(log_errors(h.log_path) for h in heralds),
            round_trips=round_trips([h.stats for h in heralds], not url.startswith("sqlite")),
            problems=[p for name, lane in lanes.items() for p in wire_problems(name, lane)],
        )
        figures["samples"] = {name: await sample_message(settings, name) for name in expected if expected[name]}
    finally:
        await log.close()
    return figures


async def raw_runs(sink: Sinks, samples: dict[str, OutboundMessage], expected: dict[str, int]) -> dict[str, Any]:
    """Each lane's raw client alone, checked at the sink like Herald's runs."""
    results: dict[str, Any] = {}
    await sink.reset()
    started, cpu = time.time(), cpu_seconds()
    email = await run_raw_smtp(sink, expected["email"], 8, samples["email"])
    email["cpu_ms"] = (cpu_seconds() - cpu) * 1000
    email["wire"] = lane_figures((await sink.counts())["email"], expected["email"], started)
    results["email"] = email
    if expected.get("sms"):
        await sink.reset()
        started, cpu = time.time(), cpu_seconds()
        sms = await run_raw_sms(sink.twilio_url, expected["sms"], SMS_CONNECTIONS, samples["sms"].text)
        sms["cpu_ms"] = (cpu_seconds() - cpu) * 1000
        sms["wire"] = lane_figures((await sink.counts())["sms"], expected["sms"], started)
        results["sms"] = sms
    return results


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


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    runs = [HeraldRun(args.database, p) for p in args.processes]
    postgres = args.database is not None and backend_name(args.database) == "PostgreSQL"
    if args.against_sqlite and postgres:
        runs.append(HeraldRun(None, 1))
    expected = {"email": args.partners * 2, "sms": 0 if args.email_only else args.partners}
    heralds: dict[HeraldRun, list[dict[str, Any]]] = {run: [] for run in runs}
    raws: list[dict[str, Any]] = []
    samples: dict[str, OutboundMessage] = {}
    async with sinks() as sink:
        with tempfile.TemporaryDirectory(prefix="herald-e2e-") as tmp:
            for repeat in range(args.repeat):
                raw_first = repeat % 2 == 1  # the first repeat needs Herald's bytes for the raw clients
                if raw_first:
                    raws.append(await raw_runs(sink, samples, expected))
                for run in runs:
                    figures = await herald_broadcast(sink, Path(tmp), args.partners, run, args.email_only, args.timeout)
                    heralds[run].append(figures)
                    samples = figures["samples"]
                    print(f"  repeat {repeat + 1}: {run.label}: {figures['rate']:.0f}/s", file=sys.stderr, flush=True)
                if not raw_first:
                    raws.append(await raw_runs(sink, samples, expected))
            ap = await asyncio.to_thread(run_apprise, sink, args.apprise, samples["email"]) if args.apprise else None
    text, ok = report(args, runs, heralds, raws, ap)
    print(text)
    print(f"\n(wall time {time.perf_counter() - started:.0f} s; seeding not counted)")
    return 0 if ok else 1


def report(
    args: argparse.Namespace,
    runs: list[HeraldRun],
    heralds: dict[HeraldRun, list[dict[str, Any]]],
    raws: list[dict[str, Any]],
    ap: dict[str, Any] | None,
) -> tuple[str, bool]:
    lanes = ["email"] if args.email_only else ["email", "sms"]
    header = ("run (median of repeats)", "deliveries", "email/s", "SMS/s", "all/s", "created→sent p99 ms")
    rows: list[tuple[str, ...]] = [
        (*header, "CPU ms/message", "peak RSS MB", "round trips/delivery", "log errors"),
        (
            "raw aiosmtplib, 8 connections",
            str(raws[0]["email"]["deliveries"]),
            f"{median([r['email']['wire']['rate'] for r in raws]):.0f}",
            "-",
            "-",
            "-",
            f"{median([r['email']['cpu_ms'] / r['email']['deliveries'] for r in raws]):.2f}",
            "-",
            "-",
            "-",
        ),
    ]
    if "sms" in lanes:
        rows.append(
            (
                f"raw aiohttp → Twilio API, {SMS_CONNECTIONS} connections",
                str(raws[0]["sms"]["deliveries"]),
                "-",
                f"{median([r['sms']['wire']['rate'] for r in raws]):.0f}",
                "-",
                "-",
                f"{median([r['sms']['cpu_ms'] / r['sms']['deliveries'] for r in raws]):.2f}",
                "-",
                "-",
                "-",
            )
        )
    for run in runs:
        figures = heralds[run]
        rows.append(
            (
                run.label,
                str(figures[0]["deliveries"]),
                f"{median([f['lanes']['email']['rate'] for f in figures]):.0f}",
                f"{median([f['lanes']['sms']['rate'] for f in figures]):.0f}" if "sms" in lanes else "-",
                f"{median([f['rate'] for f in figures]):.0f}",
                f"{median([f['p99'] for f in figures]) * 1000:.0f}",
                f"{median([f['cpu_ms'] / f['deliveries'] for f in figures]):.2f}",
                f"{max(f['peak_rss'] for f in figures):.0f}",
                f"{median([f['round_trips'] / f['deliveries'] for f in figures]):.2f}",
                str(sum(f["log_errors"] for f in figures)),
            )
        )
    lines = [table(rows), ""]
    ok = True
    main_run = runs[0]
    aims = [("email", AIM_EMAIL_ONLY)] if args.email_only else [("email", AIM_EMAIL_MIXED), ("sms", AIM_SMS_MIXED)]
    for lane, aim in aims:
        ratios = [
            f["lanes"][lane]["rate"] / raw[lane]["wire"]["rate"] for f, raw in zip(heralds[main_run], raws, strict=True)
        ]
        met = median(ratios) >= aim
        ok &= met
        lines.append(
            f"{main_run.label}: {lane} lane / raw {lane}: {median(ratios):.2f}× median of"
            f" {', '.join(f'{r:.2f}' for r in ratios)}   (aim ≥ {aim}×: {verdict(met)})"
        )
    for run in runs[1:]:
        for lane in lanes:
            ratios = [
                f["lanes"][lane]["rate"] / raw[lane]["wire"]["rate"] for f, raw in zip(heralds[run], raws, strict=True)
            ]
            lines.append(f"{run.label}: {lane} lane / raw {lane}: {median(ratios):.2f}× (not judged)")
    sqlite_run = next((r for r in runs if r.database is None), None)
    if sqlite_run is not None and sqlite_run is not main_run:
        ratios = [p["rate"] / s["rate"] for p, s in zip(heralds[main_run], heralds[sqlite_run], strict=True)]
        met = median(ratios) >= AIM_VS_SQLITE
        ok &= met
        lines.append(
            f"{main_run.label} / SQLite: {median(ratios):.2f}× median of {', '.join(f'{r:.2f}' for r in ratios)}"
            f"   (aim ≥ {AIM_VS_SQLITE}×: {verdict(met)})"
        )
    if len(args.processes) > 1:
        base = median([f["rate"] for f in heralds[main_run]])
        curve = ", ".join(
            f"{run.processes}: {median([f['rate'] for f in heralds[run]]) / base:.2f}×"
            for run in runs
            if run.database == args.database
        )
        lines.append(f"scaling with processes on one database (all/s over 1 process): {curve}")
    if ap is not None:
        email = median([f["lanes"]["email"]["rate"] for f in heralds[main_run]])
        met = email / ap["rate"] >= AIM_VS_APPRISE
        ok &= met
        lines.append(
            f"email lane / Apprise ({ap['deliveries']} emails, {APPRISE_THREADS} threads, {ap['rate']:.0f}/s):"
            f" {email / ap['rate']:.1f}×   (aim ≥ {AIM_VS_APPRISE:.0f}×: {verdict(met)})"
        )
    problems = [p for figures in heralds.values() for f in figures for p in f["problems"]]
    problems += [p for raw in raws for lane in raw.values() for p in wire_problems("raw", lane["wire"])]
    lines.append(
        "every expected message arrived exactly once: "
        + ("yes" if not problems else "NO: " + "; ".join(sorted(set(problems))))
    )
    ok &= not problems
    return "\n".join(lines), ok


def parse_processes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10_000, help="3 deliveries each (--email-only: 2)")
    parser.add_argument("--email-only", action="store_true", help="two email contacts a partner, no SMS")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL to run on (it is emptied); default SQLite")
    parser.add_argument("--processes", type=parse_processes, default=[1], help="Herald processes, e.g. 1,2,4")
    parser.add_argument("--against-sqlite", action="store_true", help="also run SQLite each repeat and compare")
    parser.add_argument("--repeat", type=int, default=3, help="alternating raw and Herald runs; medians judged")
    parser.add_argument("--apprise", type=int, default=0, help="emails Apprise sends once at the end (a subset)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to settle (default 60 + 10 ms each)")
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser().parse_args())))
