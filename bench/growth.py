"""Growth with size: `python -m bench.growth [--sizes 1000,10000,100000]`.

For each size, a fresh SQLite file and a fresh Herald process: seed size/3 partners (2 email + 1 SMS
contacts each), post one broadcast (3 deliveries a partner), wait until every delivery has settled.
Reports the time from the POST to the last outcome written, deliveries/s, created→submitted p99,
and the Herald process's RSS idle after start and at its peak (VmHWM). If memory tracks the size
of a broadcast rather than the size of a batch, the last column shows it.

Aim: peak RSS ≤ 150 MB at every size (100,000 deliveries included), every delivery sent; a miss,
or a broadcast that does not settle within `--timeout` (default 60 s + 10 ms a delivery), exits 1.
At 100,000 deliveries expect several minutes (seeding 33,334 partners is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench.common import settle_timeout, sinks, table, verdict
from bench.e2e import DELIVERIES_PER_PARTNER, herald_broadcast

DEFAULT_SIZES = "1000,10000,100000"
AIM_PEAK_RSS_MB = 150


async def main(sizes: list[int], timeout_factor: float) -> int:
    rows: list[tuple[object, ...]] = [
        (
            "deliveries",
            "partners",
            "settle s",
            "deliveries/s",
            "created→sent p99 s",
            "idle RSS MB",
            "peak RSS MB",
            "peak − idle MB",
            "all sent",
            "log errors",
        )
    ]
    started = time.perf_counter()
    ok = True
    async with sinks() as sink:
        for size in sizes:
            partners = max(1, round(size / DELIVERIES_PER_PARTNER))
            timeout = settle_timeout(partners * DELIVERIES_PER_PARTNER) * timeout_factor
            with tempfile.TemporaryDirectory(prefix="herald-growth-") as tmp:
                try:
                    f = await herald_broadcast(sink, Path(tmp), partners, timeout=timeout)
                except TimeoutError as exc:
                    print(f"  {partners * DELIVERIES_PER_PARTNER} deliveries: {exc}", flush=True)
                    ok = False
                    continue
            ok &= f["peak_rss"] <= AIM_PEAK_RSS_MB and f["sent"] == f["deliveries"]
            rows.append(
                (
                    f["deliveries"],
                    partners,
                    f"{f['seconds']:.1f}",
                    f"{f['rate']:.0f}",
                    f"{f['p99']:.2f}",
                    f"{f['idle_rss']:.0f}",
                    f"{f['peak_rss']:.0f}",
                    f"{f['peak_rss'] - f['idle_rss']:.0f}",
                    f["sent"] == f["deliveries"],
                    f["log_errors"],
                )
            )
            print(f"  {f['deliveries']} deliveries settled in {f['seconds']:.1f} s", flush=True)
    print()
    print(table(rows))
    print(f"\npeak RSS ≤ {AIM_PEAK_RSS_MB} MB at every size, every delivery sent: {verdict(ok)}")
    print(f"(wall time {time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


def parse_sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes(DEFAULT_SIZES),
        help=f"comma-separated delivery counts (default {DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--timeout-factor", type=float, default=1.0, help="multiply the settle bound (a shared, busy machine)"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.sizes, args.timeout_factor)))
