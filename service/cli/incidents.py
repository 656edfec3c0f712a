"""`herald incident open|update|list|show`: incidents over the API."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli import exits
from service.cli.client import HeraldApi, add_connection_options, remote
from service.cli.output import as_json, table, text_in
from service.cli.texts import add_text_option, minutes_from_now, read_json_file, set_if_given, text_value

SEVERITIES = ("critical", "major", "minor", "maintenance")
STATUSES = ("investigating", "identified", "recovering", "monitoring", "resolved", "recovery_failed")
NOTICE_TEXTS = ("summary", "current_status", "outlook", "next_steps", "cause", "countermeasures")


def register(commands: Any) -> None:
    group = commands.add_parser("incident", help="open, update, list and show incidents (over the API)")
    verbs = group.add_subparsers(dest="incident_command", required=True)

    opening = verbs.add_parser("open", help="open an incident; its initial notice goes out before the reply")
    add_connection_options(opening)
    opening.add_argument("--file", help="the request body as JSON (as POST /v1/incidents takes it; - for stdin)")
    add_text_option(opening, "title", "the incident's title")
    opening.add_argument("--severity", choices=SEVERITIES)
    opening.add_argument("--component", action="append", help="an affected component (repeat for more)")
    _notice_options(opening)
    opening.add_argument("--draft", action="store_true", help="keep the notice as a draft for `notice publish`")
    opening.set_defaults(run=remote(_open))

    updating = verbs.add_parser("update", help="change an incident; a state change sends the matching notice")
    add_connection_options(updating)
    updating.add_argument("id", type=int)
    updating.add_argument("--file", help="the request body as JSON (as POST /v1/incidents/ID/updates takes it)")
    updating.add_argument("--status", choices=STATUSES)
    updating.add_argument("--severity", choices=SEVERITIES)
    updating.add_argument("--component", action="append", help="the affected components now (repeat)")
    updating.add_argument("--kind", help="the notice kind (default: what the change calls for)")
    updating.add_argument("--stage", choices=("started", "progress", "completed"), help="recovery stage")
    updating.add_argument("--progress", type=int, metavar="PERCENT", help="recovery progress in percent")
    _notice_options(updating)
    updating.add_argument("--silent", action="store_true", help="change the incident without telling partners")
    updating.set_defaults(run=remote(_update))

    listing = verbs.add_parser("list", help="incidents, newest first")
    add_connection_options(listing)
    listing.add_argument("--status", action="append", choices=STATUSES)
    listing.add_argument("--severity", action="append", choices=SEVERITIES)
    listing.add_argument("--component")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--lang", choices=("ja", "en"), default="ja", help="language of titles (default ja)")
    listing.set_defaults(run=remote(_list))

    showing = verbs.add_parser("show", help="an incident with its timeline of notices")
    add_connection_options(showing)
    showing.add_argument("id", type=int)
    showing.add_argument("--lang", choices=("ja", "en"), default="ja")
    showing.set_defaults(run=remote(_show))


def _notice_options(parser: argparse.ArgumentParser) -> None:
    add_text_option(parser, "impact", "who and what is affected")
    for name in NOTICE_TEXTS:
        add_text_option(parser, name.replace("_", "-"), f"the notice's {name.replace('_', ' ')}")
    add_text_option(parser, "responsible", "our responsible contact's name (named in every notice)")
    parser.add_argument("--responsible-email")
    parser.add_argument("--responsible-phone")
    parser.add_argument("--next-update", type=float, metavar="MINUTES", help="promise the next update in MINUTES")


def _common(args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    set_if_given(body, "severity", args.severity)
    set_if_given(body, "components", args.component)
    set_if_given(body, "impact", text_value(args.impact))
    set_if_given(body, "next_update_at", minutes_from_now(args.next_update))
    if args.responsible:
        responsible: dict[str, Any] = {"name": text_value(args.responsible)}
        set_if_given(responsible, "email", args.responsible_email)
        set_if_given(responsible, "phone", args.responsible_phone)
        body["responsible"] = responsible
    notice = body.get("notice")
    notice = dict(notice) if isinstance(notice, dict) else {}
    fields = dict(notice.get("fields") or {})
    for name in NOTICE_TEXTS:
        set_if_given(fields, name, text_value(getattr(args, name)))
    if fields:
        notice["fields"] = fields
    if notice or "notice" in body:
        body["notice"] = notice
    return body


def _open(args: argparse.Namespace, api: HeraldApi) -> int:
    body = _common(args, read_json_file(args.file))
    set_if_given(body, "title", text_value(args.title))
    if args.draft:
        body.setdefault("notice", {})["publish"] = False
    answer = api.post("/v1/incidents", body)
    if args.json:
        print(as_json(answer))
        return exits.OK
    print(f"Incident #{answer['incident_id']} opened.")
    print_outcome(answer)
    return exits.OK


def _update(args: argparse.Namespace, api: HeraldApi) -> int:
    body = _common(args, read_json_file(args.file))
    set_if_given(body, "status", args.status)
    if args.silent:
        body["notice"] = None
    elif args.kind or args.stage or args.progress is not None:
        notice = body.setdefault("notice", {})
        set_if_given(notice, "kind", args.kind)
        fields = notice.setdefault("fields", {})
        set_if_given(fields, "stage", args.stage)
        set_if_given(fields, "progress_percent", args.progress)
    answer = api.post(f"/v1/incidents/{args.id}/updates", body)
    if args.json:
        print(as_json(answer))
        return exits.OK
    print(f"Incident #{answer['incident_id']} updated.")
    print_outcome(answer)
    return exits.OK


def print_outcome(answer: dict[str, Any]) -> None:
    if answer.get("notice_id") is None:
        print("No notice: partners were not told.")
        return
    plan = answer.get("deliveries")
    state = answer.get("state") or "draft"
    print(f"Notice #{answer['notice_id']} (version {answer.get('version')}) is {state}.")
    if plan is None:
        print(f"Publish it with: herald notice publish {answer['notice_id']}")
        return
    print(f"{plan['total']} deliveries planned for {plan['partners']} partners.")
    rows = [[f"tier {tier}", count] for tier, count in sorted(plan.get("by_tier", {}).items())]
    rows += [[channel, count] for channel, count in sorted(plan.get("by_channel", {}).items())]
    rows += [[f"({reason})", count] for reason, count in sorted(plan.get("by_reason", {}).items())]
    if rows:
        print(table(["", "deliveries"], rows))
    if plan["total"]:
        print(f"Follow them: herald deliveries watch {answer['notice_id']}")


def _list(args: argparse.Namespace, api: HeraldApi) -> int:
    answer = api.get(
        "/v1/incidents", status=args.status, severity=args.severity, component=args.component, limit=args.limit
    )
    if args.json:
        print(as_json(answer))
        return exits.OK
    rows = [
        [
            item["id"],
            item["severity"],
            item["status"],
            text_in(item["title"], args.lang),
            item["components"],
            item["next_update_at"],
            item["updated_at"],
        ]
        for item in answer["items"]
    ]
    print(table(["id", "severity", "status", "title", "components", "next update", "updated"], rows))
    if answer.get("next_cursor"):
        print(f"(more: --limit {args.limit * 2})")
    return exits.OK


def _show(args: argparse.Namespace, api: HeraldApi) -> int:
    incident = api.get(f"/v1/incidents/{args.id}")
    if args.json:
        print(as_json(incident))
        return exits.OK
    lang = args.lang
    print(f"Incident #{incident['id']}: {text_in(incident['title'], lang)}")
    details = [
        ["severity", incident["severity"]],
        ["status", incident["status"]],
        ["components", incident["components"]],
        ["impact", text_in(incident.get("impact"), lang)],
        ["responsible", text_in((incident.get("responsible") or {}).get("name"), lang)],
        ["next update", incident.get("next_update_at")],
        ["opened", incident.get("created_at")],
        ["resolved", incident.get("resolved_at")],
    ]
    print(table(["", ""], details).split("\n", 1)[1])
    rows = [
        [
            notice["id"],
            notice["version"],
            notice["kind"],
            notice["state"],
            notice.get("published_at"),
            " ".join(f"{status} {count}" for status, count in sorted((notice.get("deliveries") or {}).items())),
        ]
        for notice in incident.get("timeline", [])
    ]
    print()
    print(table(["notice", "version", "kind", "state", "published", "deliveries"], rows))
    return exits.OK
