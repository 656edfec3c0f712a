"""The incident room: the timeline of notice versions and what changed, live delivery progress,
tier-1 partners that have not acknowledged, failures (admins re-queue them), the evidence report."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from service import appkeys
from service.api.reports import HTML_HEADERS
from service.dispatcher import requeue_delivery
from service.errors import NotFound
from service.notices import DATETIME_FIELDS, localise
from service.report import build_report, render_html
from service.settings import Settings
from service.store import incidents as incident_store
from service.store import progress as progress_store
from service.web import words
from service.web.pages import render
from service.web.session import PREFIX, lang_of, page, principal_of, safe_next

routes = web.RouteTableDef()
UNACKNOWLEDGED_LISTED = 100


def _settings(request: web.Request) -> Settings:
    return request.config_dict[appkeys.SETTINGS]


def shown(value: Any, name: str, lang: str, zone: ZoneInfo) -> str:
    """A stored notice field as the operator reads it."""
    if value is None:
        return ""
    if name in DATETIME_FIELDS and isinstance(value, str):
        return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if name == "stage":
        return words.stage_label(lang, str(value))
    if name == "responsible" and isinstance(value, dict):
        return " / ".join(
            str(localise(value.get(k), lang) or "") for k in ("name", "department", "email") if value.get(k)
        )
    return str(localise(value, lang))


def changes(
    previous: dict[str, Any] | None, current: dict[str, Any], lang: str, zone: ZoneInfo
) -> list[dict[str, str]]:
    if previous is None:
        return []
    names = [n for n in dict.fromkeys([*current, *previous]) if current.get(n) != previous.get(n)]
    return [
        {
            "name": name,
            "before": shown(previous.get(name), name, lang, zone),
            "after": shown(current.get(name), name, lang, zone),
        }
        for name in names
    ]


async def _progress_context(conn: Any, notices: list[dict[str, Any]]) -> dict[str, Any]:
    published = [n for n in notices if n["state"] == "published"]
    latest = published[-1] if published else None
    if latest is None:
        return {"latest": None, "rows": [], "totals": {}, "state": "none", "unacknowledged": (0, [])}
    rows = await progress_store.progress(conn, latest["id"])
    keys = ("planned", "waiting", "sent", "delivered", "failed", "acknowledged")
    totals = {key: sum(row[key] for row in rows) for key in keys}
    state = "none" if not totals["planned"] else ("sending" if totals["waiting"] else "sent")
    unacknowledged = await progress_store.unacknowledged_tier1(conn, latest["id"], UNACKNOWLEDGED_LISTED)
    return {"latest": latest, "rows": rows, "totals": totals, "state": state, "unacknowledged": unacknowledged}


async def _load(request: web.Request, incident_id: int) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    async with request.config_dict[appkeys.STORE].read() as conn:
        incident = await incident_store.get_incident(conn, incident_id)
        if incident is None:
            raise NotFound(words.say(lang_of(request), "not_found"))
        notices = await incident_store.notices_of(conn, incident_id)
        progress = await _progress_context(conn, notices)
        counts = await incident_store.delivery_counts_by_notice(conn, [n["id"] for n in notices])
        failures = await progress_store.failures(conn, incident_id)
    return incident, notices, {"progress": progress, "counts": counts, "failures": failures}


@routes.get("/incidents/{id:\\d+}")
@page("operator")
async def incident_room(request: web.Request) -> web.Response:
    incident_id = int(request.match_info["id"])
    incident, notices, loaded = await _load(request, incident_id)
    lang, zone = lang_of(request), ZoneInfo(_settings(request).company.timezone)
    versions = {n["id"]: n["version"] for n in notices}
    timeline, previous = [], None
    for notice in notices:
        timeline.append(
            {
                **notice,
                "changes": changes(previous, notice["fields"], lang, zone),
                "corrects_version": versions.get(notice["corrects_id"]),
                "counts": loaded["counts"].get(notice["id"], {}),
            }
        )
        if notice["state"] == "published":
            previous = notice["fields"]
    return render(
        request,
        "console/room.html.j2",
        {
            "nav": "board",
            "incident": incident,
            "timeline": list(reversed(timeline)),
            "failures": loaded["failures"],
            "progress_url": f"{PREFIX}/incidents/{incident_id}/progress",
            **loaded["progress"],
        },
    )


@routes.get("/incidents/{id:\\d+}/progress")
@page("operator")
async def live_progress(request: web.Request) -> web.Response:
    """The progress fragment the room's script polls."""
    _, _, loaded = await _load(request, int(request.match_info["id"]))
    return render(request, "console/_progress.html.j2", loaded["progress"])


@routes.get("/incidents/{id:\\d+}/report")
@page("operator")
async def evidence_report(request: web.Request) -> web.Response:
    incident_id = int(request.match_info["id"])
    async with request.config_dict[appkeys.STORE].read() as conn:
        report = await build_report(conn, incident_id)
    if report is None:
        raise NotFound(words.say(lang_of(request), "not_found"))
    html = render_html(report, _settings(request).company.timezone)
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=HTML_HEADERS)


@routes.post("/deliveries/{id:\\d+}/retry")
@page("admin")
async def requeue(request: web.Request) -> web.Response:
    form = await request.post()
    async with request.config_dict[appkeys.STORE].begin() as conn:
        await requeue_delivery(conn, int(request.match_info["id"]), principal_of(request).name)
    request.config_dict[appkeys.DISPATCHER_WAKE]()
    target = safe_next(form.get("next"))
    raise web.HTTPSeeOther(target + ("&" if "?" in target else "?") + "flash=requeued")
