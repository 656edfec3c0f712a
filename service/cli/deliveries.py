"""`herald deliveries watch ID`: a notice's deliveries, live, per tier × channel, until settled."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from service.cli import exits
from service.cli.client import HeraldApi, add_connection_options, remote
from service.cli.output import pad, table

IN_FLIGHT = ("pending", "sending")
FAILED = ("failed", "dead", "bounced", "undelivered")
BAR = 24


def register(commands: Any) -> None:
    group = commands.add_parser("deliveries", help="a notice's deliveries (over the API)")
    verbs = group.add_subparsers(dest="deliveries_command", required=True)
    watch = verbs.add_parser(
        "watch",
        help="progress per tier × channel until nothing is pending or sending; "
        "exit 0 when all went out, 1 when some failed, 6 when still sending at --for",
    )
    add_connection_options(watch)
    watch.add_argument("id", type=int, help="the notice id (`incident open` prints it)")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between looks (default 1)")
    watch.add_argument("--for", dest="limit", type=float, metavar="SECONDS", help="give up after SECONDS")
    watch.set_defaults(run=remote(_watch))


def _watch(args: argparse.Namespace, api: HeraldApi) -> int:
    screen = LiveScreen(sys.stdout, json_lines=args.json)
    deadline = None if args.limit is None else time.monotonic() + args.limit
    while True:
        summary = api.get(f"/v1/notices/{args.id}/summary")
        done = settled(summary)
        screen.show(summary, progress_lines(summary), done)
        if done:
            break
        if deadline is not None and time.monotonic() >= deadline:
            screen.finish(f"still sending after {args.limit:g} s")
            return exits.STILL_SENDING
        time.sleep(args.interval)
    failures = sum(summary["by_status"].get(status, 0) for status in FAILED)
    screen.finish(f"settled: {summary['total'] - failures} of {summary['total']} out, {failures} failed")
    return exits.PROBLEMS if failures else exits.OK


def settled(summary: dict[str, Any]) -> bool:
    return not any(summary["by_status"].get(status, 0) for status in IN_FLIGHT)


def progress_lines(summary: dict[str, Any]) -> list[str]:
    rows = []
    for tier, channels in summary.get("by_tier_channel", {}).items():
        for channel, counts in sorted(channels.items()):
            total = sum(counts.values())
            finished = total - sum(counts.get(status, 0) for status in IN_FLIGHT)
            filled = BAR * finished // total if total else BAR
            statuses = " ".join(f"{status} {count}" for status, count in sorted(counts.items()))
            rows.append([f"tier {tier}", channel, "█" * filled + "░" * (BAR - filled), f"{finished}/{total}", statuses])
    if not rows:
        return ["no deliveries (a draft, or nobody to tell)"]
    return table(["tier", "channel", pad("progress", BAR), "done", "statuses"], rows).splitlines()


class LiveScreen:
    """On a terminal the table is redrawn in place; otherwise (a pipe, a CI log) a new table is
    printed only when a count changed; with --json, one JSON summary per line."""

    def __init__(self, stream: TextIO, json_lines: bool) -> None:
        self.stream = stream
        self.json_lines = json_lines
        self.redraw = stream.isatty() and not json_lines
        self._shown: list[str] = []

    def show(self, summary: dict[str, Any], lines: list[str], done: bool) -> None:
        if self.json_lines:
            self.stream.write(json.dumps({**summary, "settled": done}, ensure_ascii=False) + "\n")
        elif lines != self._shown:
            if self.redraw and self._shown:
                self.stream.write(f"\x1b[{len(self._shown)}F\x1b[J")
            elif self._shown:
                self.stream.write("\n")
            self.stream.write("\n".join(lines) + "\n")
            self._shown = lines
        self.stream.flush()

    def finish(self, message: str) -> None:
        if not self.json_lines:
            self.stream.write(message + "\n")
            self.stream.flush()
        else:
            print(message, file=sys.stderr)
