"""Provider limits: `python -m bench.paced [--rate 50] [--partners 1500] [--database URL]`.

The Twilio-compatible server enforces a sender's rate as Twilio does (`--rate` messages a second
for our from number, a burst of `--burst`, 429 code 20429 above it), and Herald is configured with
the same rate (`[rate_limits.senders]`, a burst of `--herald-burst`, below the server's, so an
event loop that ran late may catch up by a token without going over). One broadcast sends one SMS to each of
`--partners` partners; while it runs, `--critical` critical incidents each plan one tier-1 SMS at
priority 0 for a probe partner.

Measured at the server: the SMS rate from the first to the last arrival, every message exactly
once, and the 429s it answered; from the delivery log, how long each critical SMS took from its
POST (priority 0 takes the next token, so about one token's time, not the broadcast's backlog).
Aim: the rate within 5% of `--rate`, no 429, nothing missing or duplicated; a miss exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    DeliveryLog,
    backend_name,
    fresh_database,
    herald_processes,
    herald_settings,
    lane_figures,
    log_errors,
    post_json,
    settle_timeout,
    sinks,
    verdict,
    wire_problems,
)
from bench.priority import PROBE_COMPONENT, critical_incident
from tests.helpers.bulk import BROADCAST, insert_directory, partner_rows

FROM_NUMBER = "+15005550006"
AIM_RATE_ERROR = 0.05


def directory(partners: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`partners` with one SMS contact each, and one probe partner only the critical incidents reach."""
    bulk, bulk_contacts = partner_rows(partners, emails=0, phones=1)
    for partner in bulk:
        partner["components"] = ["order-api"]
    probe, probe_contacts = partner_rows(1, emails=0, phones=1)
    probe[0].update(id="probe-000000", components=[PROBE_COMPONENT])
    probe_contacts[0].update(partner_id="probe-000000", phone="+819099999999")
    return bulk + probe, bulk_contacts + probe_contacts


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with sinks(sms_rate=args.rate, sms_burst=args.burst) as sink:
        with tempfile.TemporaryDirectory(prefix="herald-paced-") as tmp:
            url = await fresh_database(args.database, Path(tmp))
            limits = {"senders": {FROM_NUMBER: {"per_second": args.rate, "burst": args.herald_burst}}}
            settings = herald_settings(url, sink, extra={"rate_limits": limits})
            await insert_directory(settings, *directory(args.partners))
            log = DeliveryLog(url)
            try:
                await sink.reset()
                async with herald_processes(settings, Path(tmp), 1) as heralds, aiohttp.ClientSession() as session:
                    posted_at = time.time()
                    await post_json(session, heralds[0].base_url + "/v1/broadcasts", BROADCAST)
                    await asyncio.sleep(min(2.0, args.partners / args.rate / 3))  # well into the broadcast
                    critical = []
                    for n in range(args.critical):
                        started = time.time()
                        reply = await post_json(session, heralds[0].base_url + "/v1/incidents", critical_incident(n))
                        critical.append((reply["incident_id"], started))
                        await asyncio.sleep(0.5)
                    await log.wait_until_settled(settle_timeout(args.partners) + args.partners / args.rate, heralds)
                    counts = await sink.counts()
                lags = []
                for incident_id, started in critical:
                    for row in await log.rows("incident_id = :i AND channel = 'sms'", i=incident_id):
                        lags.append((row["sent_at"] or float("inf")) - started)
                expected = args.partners + 1 + args.critical  # the probe partner hears the broadcast too
                return {
                    "backend": backend_name(url),
                    "sms": counts["sms"],
                    "lane": lane_figures(counts["sms"], expected, posted_at),
                    "lags": lags,
                    "log_errors": log_errors(heralds[0].log_path),
                }
            finally:
                await log.close()


def report(args: argparse.Namespace, figures: dict[str, Any]) -> tuple[str, bool]:
    sms = figures["sms"]
    held = (sms["distinct"] - 1) / (sms["last"] - sms["first"]) if sms["distinct"] > 1 else float("nan")
    error = abs(held - args.rate) / args.rate
    problems = wire_problems("sms", figures["lane"])
    ok = error <= AIM_RATE_ERROR and sms["refused_429"] == 0 and not problems
    lags = ", ".join(f"{lag * 1000:.0f}" for lag in figures["lags"])
    lines = [
        f"{figures['backend']}: configured {args.rate:g} SMS/s for {FROM_NUMBER} (the server enforces it, burst"
        f" {args.burst}); {sms['distinct']} SMS arrived",
        f"held rate, first to last arrival: {held:.2f}/s = {held / args.rate:.3f}× configured"
        f"   (aim within {AIM_RATE_ERROR:.0%}: {verdict(error <= AIM_RATE_ERROR)})",
        f"429 answered by the server: {sms['refused_429']}   (aim 0: {verdict(sms['refused_429'] == 0)})",
        f"critical tier-1 SMS during the broadcast, POST → handed over, ms: {lags}"
        f" (one token every {1000 / args.rate:.0f} ms)",
        "every expected message arrived exactly once: " + ("yes" if not problems else "NO: " + "; ".join(problems)),
        f"error lines in Herald's log: {figures['log_errors']}",
    ]
    return "\n".join(lines), ok


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.burst is None:  # the server tolerates 100 ms of network and scheduling jitter
        args.burst = max(3, round(args.rate / 10))
    text, ok = report(args, await run(args))
    print(text)
    print(f"\n(wall time {time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="messages a second for the sender")
    parser.add_argument(
        "--burst", type=int, default=None, help="what the server lets through at once (default: 0.1 s of the rate, ≥ 3)"
    )
    parser.add_argument("--herald-burst", type=int, default=2, help="Herald's bucket size (below the server's)")
    parser.add_argument("--partners", type=int, default=1500, help="broadcast SMS (one a partner)")
    parser.add_argument("--critical", type=int, default=5, help="critical incidents posted during the broadcast")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL to run on (it is emptied); default SQLite")
    sys.exit(asyncio.run(main(parser.parse_args())))
