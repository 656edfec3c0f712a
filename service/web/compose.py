"""Compose: a new incident with its first notice, an update, a broadcast, publishing a draft.

Every form goes the same way: Preview runs the request through the real flow in a rehearsal
(`Store.rehearse()`) and shows what partners would receive; Publish runs it for real, and only if
the form is the one previewed (same digest) and the plan still reaches as many recipients as the
operator confirmed. Otherwise the page shows the preview again instead of sending.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys
from service import incidents as incident_flow
from service.acks import ack_link
from service.broadcasts import Broadcast, open_broadcast
from service.errors import HeraldError, NotFound
from service.incidents import TRANSITIONS, IncidentCreate, IncidentUpdate, Outcome
from service.notices import REQUIRED
from service.preview import Preview, preview_notice
from service.settings import SEVERITIES, Settings
from service.store import incidents as incident_store
from service.store.records import record_inbound
from service.web import words
from service.web.forms import (
    BROADCAST_KINDS,
    INCIDENT_LEVEL,
    UPDATE_KINDS,
    Form,
    drop_empty,
    kind_of,
    notice_fields,
    values_of,
)
from service.web.pages import render
from service.web.session import PREFIX, lang_of, page, principal_of

routes = web.RouteTableDef()
Work = Callable[[AsyncConnection, Any], Awaitable[Outcome]]


class AudienceChanged(Exception):
    def __init__(self, before: int, after: int) -> None:
        super().__init__(f"{before} -> {after}")
        self.before, self.after = before, after


def _settings(request: web.Request) -> Settings:
    return request.config_dict[appkeys.SETTINGS]


def _form(request: web.Request, values: dict[str, str]) -> Form:
    return Form(values, lang_of(request), ZoneInfo(_settings(request).company.timezone))


def _responsible_defaults(settings: Settings) -> dict[str, str]:
    """Our responsible contact, prefilled from the configuration (operators may change it)."""
    responsible = settings.ingest.responsible
    found: dict[str, str] = {}
    for name in ("name", "department"):
        value = getattr(responsible, name)
        if isinstance(value, dict):
            found.update({f"responsible.{name}.{lang}": text for lang, text in value.items()})
        elif value:
            found.update({f"responsible.{name}.{lang}": value for lang in words.LANGUAGES})
    found.update(drop_empty({"responsible.email": responsible.email, "responsible.phone": responsible.phone}))
    return found


async def _publish_or_preview(
    request: web.Request,
    form: Form,
    payload: dict[str, Any],
    model: type[BaseModel],
    work: Work,
    page_values: dict[str, Any],
    done: Callable[[Outcome], str],
) -> web.Response:
    validated = None if form.errors else form.validate(model, payload)
    if validated is None:
        return _page(request, form, page_values, status=422)
    note = None
    digest = form.digest(payload)
    if form.get("action") == "publish":
        if form.get("digest") != digest:
            note = words.say(form.lang, "preview_again")
        else:
            try:
                outcome = await _publish(request, form, payload, validated, work)
            except AudienceChanged as changed:
                note = words.say(form.lang, "audience_changed", before=changed.before, after=changed.after)
            except HeraldError as exc:
                form.refused(exc)
                return _page(request, form, page_values, status=422)
            else:
                if outcome.plan is not None and outcome.plan.total:
                    request.config_dict[appkeys.DISPATCHER_WAKE]()
                raise web.HTTPSeeOther(done(outcome))
    try:
        preview = await _rehearse(request, validated, work)
    except HeraldError as exc:
        form.refused(exc)
        return _page(request, form, page_values, status=422)
    return _page(request, form, {**page_values, "preview": preview, "digest": digest, "note": note})


async def _publish(request: web.Request, form: Form, payload: dict[str, Any], validated: Any, work: Work) -> Outcome:
    actor = principal_of(request).name
    async with request.config_dict[appkeys.STORE].begin() as conn:
        outcome = await work(conn, validated)
        expected = int(form.get("expected") or -1)
        if outcome.plan is not None and outcome.plan.contacts != expected:
            raise AudienceChanged(expected, outcome.plan.contacts)  # rolls the transaction back
        await record_inbound(
            conn,
            "console",
            json.dumps(payload, ensure_ascii=False),
            actor,
            "application/x-www-form-urlencoded",
            incident_id=outcome.incident_id,
            notice_id=outcome.notice_id,
        )
    return outcome


async def _rehearse(request: web.Request, validated: Any, work: Work) -> Preview:
    links = ack_link(_settings(request), request.config_dict[appkeys.ACK_SIGNER])
    async with request.config_dict[appkeys.STORE].rehearse() as conn:
        outcome = await work(conn, validated)
        return await preview_notice(conn, _settings(request), outcome.notice_id, outcome.plan, links)


def _required(kind: str, shown: list[str]) -> list[str]:
    return [name for name in REQUIRED[kind] if name in shown]


def _page(request: web.Request, form: Form, values: dict[str, Any], status: int = 200) -> web.Response:
    context = {
        "values": form.values,
        "errors": form.errors,
        "preview": None,
        "digest": None,
        "note": None,
        "severities": SEVERITIES,
        **values,
    }
    return render(request, "console/compose.html.j2", context, status=status)


# A new incident and its initial notice -------------------------------------------------------


def _new_incident_values(settings: Settings) -> dict[str, Any]:
    return {
        "mode": "incident",
        "nav": "compose",
        "action": f"{PREFIX}/compose",
        "kind": "initial",
        "kinds": (),
        "fields": notice_fields("initial", INCIDENT_LEVEL),
        "incident": None,
        "statuses": (),
        "zone": settings.company.timezone,
    }


@routes.get("/compose")
@page("operator")
async def compose_incident(request: web.Request) -> web.Response:
    settings = _settings(request)
    form = _form(request, {"severity": "critical", **_responsible_defaults(settings)})
    return _page(request, form, _new_incident_values(settings))


@routes.post("/compose")
@page("operator")
async def submit_incident(request: web.Request) -> web.Response:
    settings = _settings(request)
    form = _form(request, values_of(await request.post()))
    fields = notice_fields("initial", INCIDENT_LEVEL)
    payload = drop_empty(
        {
            "title": form.text("title"),
            "severity": form.plain("severity"),
            "components": form.listed("components"),
            "impact": form.text("impact"),
            "responsible": form.responsible(),
            "next_update_at": form.moment("next_update_at"),
            "notice": {"kind": "initial", "fields": form.fields(fields)},
        }
    )
    form.require(["title", "impact", "next_update_at"], payload)
    form.require(_required("initial", fields), payload["notice"]["fields"])
    actor = principal_of(request).name

    async def work(conn: AsyncConnection, body: IncidentCreate) -> Outcome:
        return await incident_flow.open_incident(conn, settings, body, actor, source="console")

    return await _publish_or_preview(
        request,
        form,
        payload,
        IncidentCreate,
        work,
        _new_incident_values(settings),
        lambda outcome: f"{PREFIX}/incidents/{outcome.incident_id}?flash=published",
    )


# An update of an open incident ------------------------------------------------------------------


async def _found_or_404(
    request: web.Request, get: Callable[[AsyncConnection, int], Awaitable[dict[str, Any] | None]], row_id: int
) -> dict[str, Any]:
    """The incident or notice a console URL names, or the console's own 404 page."""
    async with request.config_dict[appkeys.STORE].read() as conn:
        found = await get(conn, row_id)
    if found is None:
        raise NotFound(words.say(lang_of(request), "not_found"))
    return found


async def _incident_or_404(request: web.Request, incident_id: int) -> dict[str, Any]:
    return await _found_or_404(request, incident_store.get_incident, incident_id)


def _update_values(settings: Settings, incident: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "mode": "update",
        "nav": "board",
        "action": f"{PREFIX}/incidents/{incident['id']}/update?kind={kind}",
        "kind": kind,
        "kinds": UPDATE_KINDS,
        "kind_url": f"{PREFIX}/incidents/{incident['id']}/update?kind=",
        "fields": notice_fields(kind, ("next_update_at",)),
        "incident": incident,
        "statuses": sorted(TRANSITIONS[incident["status"]]),
        "zone": settings.company.timezone,
    }


@routes.get("/incidents/{id:\\d+}/update")
@page("operator")
async def compose_update(request: web.Request) -> web.Response:
    settings = _settings(request)
    incident = await _incident_or_404(request, int(request.match_info["id"]))
    kind = kind_of(request.query.get("kind"), UPDATE_KINDS)
    form = _form(request, {})
    return _page(request, form, _update_values(settings, incident, kind))


@routes.post("/incidents/{id:\\d+}/update")
@page("operator")
async def submit_update(request: web.Request) -> web.Response:
    settings = _settings(request)
    incident_id = int(request.match_info["id"])
    incident = await _incident_or_404(request, incident_id)
    kind = kind_of(request.query.get("kind"), UPDATE_KINDS)
    form = _form(request, values_of(await request.post()))
    fields = notice_fields(kind, ("next_update_at",))
    payload = drop_empty(
        {
            "status": form.plain("status"),
            "next_update_at": form.moment("next_update_at"),
            "notice": {"kind": kind, "fields": form.fields(fields)},
        }
    )
    form.require(_required(kind, fields), payload["notice"]["fields"])
    if "next_update_at" in REQUIRED[kind]:  # the incident's promise is inherited when none is given
        form.require(
            ["next_update_at"], {"next_update_at": payload.get("next_update_at") or incident["next_update_at"]}
        )
    actor = principal_of(request).name

    async def work(conn: AsyncConnection, body: IncidentUpdate) -> Outcome:
        return await incident_flow.update_incident(conn, settings, incident_id, body, actor)

    return await _publish_or_preview(
        request,
        form,
        payload,
        IncidentUpdate,
        work,
        _update_values(settings, incident, kind),
        lambda outcome: f"{PREFIX}/incidents/{incident_id}?flash=published",
    )


# Publishing a draft (e.g. from a non-critical alert) ---------------------------------------------


async def _draft_or_404(request: web.Request, notice_id: int) -> dict[str, Any]:
    return await _found_or_404(request, incident_store.get_notice, notice_id)


def _draft_values(notice: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": "draft",
        "nav": "board",
        "action": f"{PREFIX}/notices/{notice['id']}/publish",
        "kind": notice["kind"],
        "kinds": (),
        "fields": [],
        "incident": None,
        "statuses": (),
        "draft": notice,
        "zone": "",
    }


@routes.get("/notices/{id:\\d+}/publish")
@page("operator")
async def review_draft(request: web.Request) -> web.Response:
    notice = await _draft_or_404(request, int(request.match_info["id"]))
    form = _form(request, {})
    return await _draft_page(request, form, notice)


async def _draft_page(
    request: web.Request, form: Form, notice: dict[str, Any], note: str | None = None
) -> web.Response:
    actor = principal_of(request).name
    preview = await _rehearse(request, None, _draft_work(_settings(request), notice["id"], actor))
    incident = None
    if notice["incident_id"] is not None:
        incident = await _incident_or_404(request, notice["incident_id"])
    values = {**_draft_values(notice), "incident": incident, "preview": preview, "digest": str(notice["id"])}
    values["note"] = note
    return _page(request, form, values)


def _draft_work(settings: Settings, notice_id: int, actor: str) -> Work:
    async def work(conn: AsyncConnection, _: Any) -> Outcome:
        return await incident_flow.publish_draft(conn, settings, notice_id, actor)

    return work


@routes.post("/notices/{id:\\d+}/publish")
@page("operator")
async def publish_draft(request: web.Request) -> web.Response:
    notice = await _draft_or_404(request, int(request.match_info["id"]))
    form = _form(request, values_of(await request.post()))
    work = _draft_work(_settings(request), notice["id"], principal_of(request).name)
    try:
        outcome = await _publish(request, form, {"publish": notice["id"]}, None, work)
    except AudienceChanged as changed:
        note = words.say(form.lang, "audience_changed", before=changed.before, after=changed.after)
        return await _draft_page(request, form, notice, note)
    if outcome.plan is not None and outcome.plan.total:
        request.config_dict[appkeys.DISPATCHER_WAKE]()
    target = f"{PREFIX}/incidents/{outcome.incident_id}" if outcome.incident_id else f"{PREFIX}/"
    raise web.HTTPSeeOther(f"{target}?flash=published")


# Broadcasts: notices without an incident -----------------------------------------------------------


def _broadcast_values(settings: Settings, kind: str) -> dict[str, Any]:
    return {
        "mode": "broadcast",
        "nav": "broadcast",
        "action": f"{PREFIX}/broadcast?kind={kind}",
        "kind": kind,
        "kinds": BROADCAST_KINDS,
        "kind_url": f"{PREFIX}/broadcast?kind=",
        "fields": notice_fields(kind),
        "incident": None,
        "statuses": (),
        "zone": settings.company.timezone,
    }


@routes.get("/broadcast")
@page("operator")
async def compose_broadcast(request: web.Request) -> web.Response:
    settings = _settings(request)
    kind = kind_of(request.query.get("kind"), BROADCAST_KINDS)
    defaults = {"severity": "maintenance", "audience": "all", **_responsible_defaults(settings)}
    return _page(request, _form(request, defaults), _broadcast_values(settings, kind))


@routes.post("/broadcast")
@page("operator")
async def submit_broadcast(request: web.Request) -> web.Response:
    settings = _settings(request)
    kind = kind_of(request.query.get("kind"), BROADCAST_KINDS)
    posted = await request.post()
    form = _form(request, values_of(posted))
    fields = notice_fields(kind)
    chosen = form.plain("audience") or "all"
    tiers = sorted(int(str(t)) for t in posted.getall("tiers", []) if str(t) in ("1", "2", "3"))
    form.known.update({"audience.partners", "audience.components", "tiers"})
    audience = {
        "all_partners": chosen == "all",
        "partners": form.listed("audience.partners") if chosen == "partners" else [],
        "components": form.listed("audience.components") if chosen == "components" else [],
        "tiers": tiers,
    }
    if chosen in ("partners", "components") and not audience[chosen]:
        form.errors[f"audience.{chosen}"] = words.say(form.lang, "err_required")
    notice_values = {**form.fields(fields), "responsible": form.responsible()}
    payload: dict[str, Any] = {
        "kind": kind,
        "severity": form.plain("severity") or "maintenance",
        "fields": drop_empty(notice_values),
        "audience": audience,
    }
    form.require(_required(kind, fields), payload["fields"])
    actor = principal_of(request).name

    async def work(conn: AsyncConnection, draft: Broadcast) -> Outcome:
        return await open_broadcast(conn, settings, draft, actor)

    return await _publish_or_preview(
        request,
        form,
        payload,
        Broadcast,
        work,
        _broadcast_values(settings, kind),
        lambda outcome: f"{PREFIX}/?flash=published",
    )
