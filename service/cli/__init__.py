"""`herald`: one verb group per module.

Verbs that run Herald itself (serve, demo, db, directory, templates) read the configuration;
operator verbs (incident, notice, broadcast, deliveries, report) talk to a running Herald over its
HTTP API (`--url`/HERALD_URL, `--token`/HERALD_TOKEN), so they work against a remote one.
Exit codes are listed in `service/cli/exits.py`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.cli import broadcast, deliveries, directory, drill, incidents, notices, report, server, templates

VERB_GROUPS = (server, directory, templates, incidents, notices, broadcast, deliveries, report, drill)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description="Tell partners, promptly and provably.")
    parser.add_argument("--config", help="TOML configuration file (default: config/herald.toml or HERALD_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in VERB_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
