"""`herald report ID --html FILE`: an incident's evidence report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.cli import exits
from service.cli.client import HeraldApi, add_connection_options, remote
from service.cli.output import as_json, table, text_in


def register(commands: Any) -> None:
    parser = commands.add_parser("report", help="an incident's evidence report (over the API)")
    add_connection_options(parser)
    parser.add_argument("id", type=int, help="the incident id")
    parser.add_argument("--html", metavar="FILE", help="write the printable HTML report to FILE")
    parser.set_defaults(run=remote(_report))


def _report(args: argparse.Namespace, api: HeraldApi) -> int:
    if args.html:
        html = api.get_text(f"/v1/incidents/{args.id}/report", format="html")
        Path(args.html).write_text(html, encoding="utf-8")
        if not args.json:
            print(f"Wrote the evidence report of incident #{args.id} to {args.html} ({len(html.encode())} bytes).")
            return exits.OK
    report = api.get(f"/v1/incidents/{args.id}/report")
    if args.json:
        print(as_json(report))
        return exits.OK
    incident, totals = report["incident"], report["totals"]
    print(
        f"Incident #{incident['id']}: {text_in(incident['title'], 'ja')} ({incident['severity']}, {incident['status']})"
    )
    rows = [
        [notice["id"], notice.get("version"), notice.get("kind"), notice.get("published_at")]
        for notice in report.get("notices", [])
    ]
    print(table(["notice", "version", "kind", "published"], rows))
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(totals["by_status"].items()))
    print(f"{totals['deliveries']} deliveries: {statuses or 'none'}")
    return exits.OK
