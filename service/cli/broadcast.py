"""`herald broadcast`: a notice without an incident (maintenance, BCP revision, a general notice)."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli import exits
from service.cli.client import HeraldApi, add_connection_options, remote
from service.cli.incidents import SEVERITIES, print_outcome
from service.cli.output import as_json
from service.cli.texts import add_text_option, read_json_file, set_if_given, text_value

KINDS = ("maintenance", "bcp_revision", "custom", "root_cause", "estimate")
TEXTS = ("summary", "impact", "changes", "subject", "body")


def register(commands: Any) -> None:
    parser = commands.add_parser("broadcast", help="send a notice without an incident (over the API)")
    add_connection_options(parser)
    parser.add_argument("--file", help="the request body as JSON (as POST /v1/broadcasts takes it; - for stdin)")
    parser.add_argument("--kind", choices=KINDS, help="the notice kind (maintenance, bcp_revision, custom, ...)")
    parser.add_argument("--severity", choices=SEVERITIES, help="decides the channels per tier (default maintenance)")
    for name in TEXTS:
        add_text_option(parser, name, f"the notice's {name}")
    parser.add_argument(
        "--window-start", metavar="ISO8601", help="maintenance window start, e.g. 2026-12-05T01:00+09:00"
    )
    parser.add_argument("--window-end", metavar="ISO8601")
    add_text_option(parser, "responsible", "our responsible contact's name (named in every notice)")
    parser.add_argument("--partner", action="append", help="only this partner (repeat); default: all partners")
    parser.add_argument("--component", action="append", help="only partners subscribed to this component (repeat)")
    parser.add_argument("--tier", action="append", type=int, choices=(1, 2, 3), help="only contacts of this tier")
    parser.add_argument("--draft", action="store_true", help="keep it as a draft for `notice publish`")
    parser.set_defaults(run=remote(_broadcast))


def _broadcast(args: argparse.Namespace, api: HeraldApi) -> int:
    body = read_json_file(args.file)
    set_if_given(body, "kind", args.kind)
    set_if_given(body, "severity", args.severity)
    fields = dict(body.get("fields") or {})
    for name in TEXTS:
        set_if_given(fields, name, text_value(getattr(args, name)))
    set_if_given(fields, "window_start", args.window_start)
    set_if_given(fields, "window_end", args.window_end)
    if args.responsible:
        fields["responsible"] = {"name": text_value(args.responsible)}
    body["fields"] = fields
    if args.partner or args.component or args.tier:
        audience = dict(body.get("audience") or {})
        set_if_given(audience, "partners", args.partner)
        set_if_given(audience, "components", args.component)
        set_if_given(audience, "tiers", args.tier)
        body["audience"] = audience
    if args.draft:
        body["publish"] = False
    answer = api.post("/v1/broadcasts", body)
    if args.json:
        print(as_json(answer))
        return exits.OK
    print_outcome(answer)
    return exits.OK
