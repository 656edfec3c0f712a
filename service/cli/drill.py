"""`herald drill run FILE`: run a drill scenario on a running Herald (over its HTTP API).

The file is checked here first, so a mistake is reported with the file, the line (YAML) or the
field path, before anything is sent. `--wait` follows the run and prints the drill report's figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from service.cli import exits
from service.cli.client import HeraldApi, add_connection_options, remote
from service.cli.output import as_json
from service.errors import HeraldError


def register(commands: Any) -> None:
    group = commands.add_parser("drill", help="drills (訓練): run a scenario, marked 【訓練】/[DRILL] everywhere")
    verbs = group.add_subparsers(dest="drill_command", required=True)
    run = verbs.add_parser("run", help="run a scenario file (YAML; see config/drills/) on a running Herald")
    add_connection_options(run)
    run.add_argument("file", help="the scenario, e.g. config/drills/order-api-outage.yaml")
    run.add_argument("--real", action="store_true", help="send to the real contacts (default: the sandbox only)")
    run.add_argument("--time-scale", type=float, default=1.0, help="compress the scenario's clock (0.01 = 100× faster)")
    run.add_argument("--wait", action="store_true", help="follow the run and print the report's figures")
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # Loaded here, not at import: it brings the planner and the composer, which every other verb
    # (`herald directory import` among them) would otherwise load at start for nothing.
    from service.drills import check_scenario, load_scenario

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        check_scenario(load_scenario(text, str(path)))
    except OSError as exc:
        print(f"herald: {path}: {exc.strerror}", file=sys.stderr)
        return exits.USAGE
    except HeraldError as exc:  # a YAML error names the file and line already; a field error its path
        print(f"herald: {exc.detail if exc.field == str(path) else f'{path}: {exc.detail}'}", file=sys.stderr)
        return exits.PROBLEMS
    if not 0 < args.time_scale <= 1:
        print("herald: --time-scale must be more than 0 and at most 1", file=sys.stderr)
        return exits.USAGE
    args.scenario_yaml = text
    return remote(_start)(args)


def _start(args: argparse.Namespace, api: HeraldApi) -> int:
    body = {
        "scenario_yaml": args.scenario_yaml,
        "mode": "real" if args.real else "sandbox",
        "time_scale": args.time_scale,
    }
    started = api.post("/v1/drills", body)
    report_path = f"/v1/drills/{started['drill_id']}/report"
    if args.json and not args.wait:
        print(as_json(started))
        return exits.OK
    print(
        f"drill #{started['drill_id']} started ({started['mode']}): incident #{started['incident_id']}, "
        f"{started['steps']} steps; report: {api.url}{report_path}?format=html"
    )
    if not args.wait:
        return exits.OK
    report = _when_done(api, report_path, started["steps"])
    print(as_json({"summary": report["summary"], "comparison": report["comparison"]}))
    return exits.OK


def _when_done(api: HeraldApi, path: str, steps: int, poll: float = 1.0) -> dict[str, Any]:
    """The report once every step has gone (read over the API, like an operator would)."""
    while True:
        report = api.get(path)
        if report["summary"]["notices"] >= steps:
            return dict(report)
        time.sleep(poll)
