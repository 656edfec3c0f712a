"""`herald notice drafts|preview|publish`: notices waiting for an operator."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli import exits
from service.cli.client import HeraldApi, add_connection_options, remote
from service.cli.incidents import print_outcome
from service.cli.output import as_json, table, text_in


def register(commands: Any) -> None:
    group = commands.add_parser("notice", help="notices waiting for an operator (over the API)")
    verbs = group.add_subparsers(dest="notice_command", required=True)
    drafts = verbs.add_parser("drafts", help="notices waiting to be published")
    add_connection_options(drafts)
    drafts.add_argument("--lang", choices=("ja", "en"), default="ja")
    drafts.set_defaults(run=remote(_drafts))
    preview = verbs.add_parser(
        "preview", help="what publishing a draft would send, to whom, in how many SMS segments (writes nothing)"
    )
    add_connection_options(preview)
    preview.add_argument("id", type=int, help="the notice id")
    preview.add_argument(
        "--allow-language-fallback", action="store_true", help="partners may read a field in the other language"
    )
    preview.set_defaults(run=remote(_preview))
    publish = verbs.add_parser("publish", help="publish a draft notice: its deliveries are planned before the reply")
    add_connection_options(publish)
    publish.add_argument("id", type=int, help="the notice id")
    publish.add_argument(
        "--allow-language-fallback", action="store_true", help="partners may read a field in the other language"
    )
    publish.set_defaults(run=remote(_publish))


def _drafts(args: argparse.Namespace, api: HeraldApi) -> int:
    answer = api.get("/v1/notices/drafts")
    if args.json:
        print(as_json(answer))
        return exits.OK
    rows = [
        [
            n["id"],
            n["incident_id"],
            n["kind"],
            n["version"],
            n["severity"],
            text_in(n["fields"].get("summary"), args.lang),
        ]
        for n in answer["items"]
    ]
    print(table(["notice", "incident", "kind", "version", "severity", "summary"], rows))
    return exits.OK


def _preview(args: argparse.Namespace, api: HeraldApi) -> int:
    query = {"dry_run": "true"}
    if args.allow_language_fallback:
        query["allow_language_fallback"] = "true"
    answer = api.post(f"/v1/notices/{args.id}/publish", {}, **query)
    if args.json:
        print(as_json(answer))
        return exits.OK
    print(preview_text(answer))
    return exits.OK


def preview_text(preview: dict[str, Any]) -> str:
    """A dry-run answer as an operator reads it: each language's subject and SMS, the audience, warnings."""
    lines: list[str] = []
    for lang, message in preview.get("messages", {}).items():
        sms = message["sms"]
        lines += [
            f"[{lang}] email subject: {message['email']['subject']}",
            f"[{lang}] SMS ({sms['length']} chars, {sms['encoding']}, {sms['segments']} segment(s)"
            + (", cut to fit" if sms["cut"] else "")
            + "):",
            *(f"    {line}" for line in sms["text"].splitlines()),
            "",
        ]
    audience = preview.get("audience", {})
    rows = [
        [tier, channel, count]
        for tier, channels in sorted(audience.get("by_tier_channel", {}).items())
        for channel, count in sorted(channels.items())
    ]
    if rows:
        lines += [table(["tier", "channel", "deliveries"], rows), ""]
    lines.append(
        f"{audience.get('contacts', 0)} contact(s), {audience.get('deliveries', 0)} deliveries, "
        f"{audience.get('sms_segments', 0)} SMS segment(s) in all. Nothing was sent or stored."
    )
    lines += [f"warning: {w.get('code')}: {w.get('detail', '')}" for w in preview.get("warnings", [])]
    return "\n".join(lines)


def _publish(args: argparse.Namespace, api: HeraldApi) -> int:
    query = {"allow_language_fallback": "true"} if args.allow_language_fallback else {}
    answer = api.post(f"/v1/notices/{args.id}/publish", {}, **query)
    if args.json:
        print(as_json(answer))
        return exits.OK
    print_outcome(answer)
    return exits.OK
