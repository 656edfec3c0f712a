"""Incident API: open, update, list, read with its timeline; drafts; broadcasts."""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import ConfigDict

from service import incidents as incident_flow
from service.api.auth import principal_of, requires
from service.api.errors import read_model
from service.api.idempotency import idempotent
from service.api.params import int_arg, path_id, time_arg
from service.errors import MissingField, NotFound
from service.incidents import IncidentCreate, IncidentUpdate, NoticeDraft, Outcome, incident_json
from service.notices import Audience, check_required, notice_json
from service.planner import check_audience, publish
from service.promises import promise_json
from service.settings import Severity
from service.store import incidents as incident_store
from service.store import promises as promise_store
from service.store.records import audit, record_inbound

routes = web.RouteTableDef()


def _accepted(request: web.Request, outcome: Outcome, status: int = 202) -> web.Response:
    if outcome.plan is not None and outcome.plan.total:
        request.app["dispatcher_wake"]()
    return web.json_response(outcome.as_json(), status=status)


@routes.post("/v1/incidents")
@requires("operator")
@idempotent
async def create_incident(request: web.Request) -> web.Response:
    body, raw = await read_model(request, IncidentCreate)
    actor = principal_of(request).name
    async with request.app["store"].begin() as conn:
        outcome = await incident_flow.open_incident(conn, request.app["settings"], body, actor)
        await record_inbound(
            conn, "api", raw, actor, request.content_type, incident_id=outcome.incident_id, notice_id=outcome.notice_id
        )
    return _accepted(request, outcome, 201 if outcome.plan is None else 202)


@routes.post("/v1/incidents/{id:\\d+}/updates")
@requires("operator")
@idempotent
async def update_incident(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    body, raw = await read_model(request, IncidentUpdate)
    actor = principal_of(request).name
    async with request.app["store"].begin() as conn:
        outcome = await incident_flow.update_incident(conn, request.app["settings"], incident_id, body, actor)
        await record_inbound(
            conn, "api", raw, actor, request.content_type, incident_id=incident_id, notice_id=outcome.notice_id
        )
    return _accepted(request, outcome, 200 if outcome.plan is None else 202)


@routes.get("/v1/incidents")
@requires("operator")
async def list_incidents(request: web.Request) -> web.Response:
    limit = int_arg(request, "limit", 50) or 50
    cursor = int_arg(request, "cursor", None, 1, 2**62)
    query = request.query
    async with request.app["store"].read() as conn:
        rows = await incident_store.list_incidents(
            conn,
            status=query.getall("status", []),
            severity=query.getall("severity", []),
            component=query.get("component"),
            since=time_arg(request, "since"),
            until=time_arg(request, "until"),
            before_id=cursor,
            limit=limit,
        )
    next_cursor = rows[-1]["id"] if len(rows) == limit else None
    return web.json_response({"items": [incident_json(r) for r in rows], "next_cursor": next_cursor})


@routes.get("/v1/incidents/{id:\\d+}")
@requires("operator")
async def get_incident(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    async with request.app["store"].read() as conn:
        incident = await incident_store.get_incident(conn, incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        notices = await incident_store.notices_of(conn, incident_id)
        counts = await incident_store.delivery_counts_by_notice(conn, [n["id"] for n in notices])
        promised = await promise_store.of_incident(conn, incident_id)
    body = incident_json(incident)
    body["timeline"] = [notice_json(n, counts.get(n["id"])) for n in notices]
    now, settings = time.time(), request.app["settings"]
    body["promises"] = [promise_json(p, settings, now) for p in promised]
    body["promise"] = body["promises"][-1] if body["promises"] else None
    return web.json_response(body)


@routes.get("/v1/notices/drafts")
@requires("operator")
async def list_drafts(request: web.Request) -> web.Response:
    async with request.app["store"].read() as conn:
        drafts = await incident_store.list_drafts(conn)
    return web.json_response({"items": [notice_json(n) for n in drafts]})


@routes.post("/v1/notices/{id:\\d+}/publish")
@requires("operator")
@idempotent
async def publish_draft(request: web.Request) -> web.Response:
    notice_id = path_id(request)
    async with request.app["store"].begin() as conn:
        outcome = await incident_flow.publish_draft(
            conn,
            request.app["settings"],
            notice_id,
            principal_of(request).name,
            request.query.get("allow_language_fallback") in ("1", "true"),
        )
    return _accepted(request, outcome)


class Broadcast(NoticeDraft):
    """A notice not tied to an incident: scheduled maintenance, a BCP revision, a general notice."""

    model_config = ConfigDict(extra="forbid")
    severity: Severity = "maintenance"
    audience: Audience = Audience(all_partners=True)


@routes.post("/v1/broadcasts")
@requires("operator")
@idempotent
async def create_broadcast(request: web.Request) -> web.Response:
    draft, raw = await read_model(request, Broadcast)
    if draft.kind is None:
        raise MissingField("a broadcast names its notice kind", "kind")
    check_required(draft.kind, draft.fields)
    actor = principal_of(request).name
    async with request.app["store"].begin() as conn:
        await check_audience(conn, draft.audience, "audience")
        notice = {
            "incident_id": None,
            "kind": draft.kind,
            "version": 1,
            "corrects_id": None,
            "state": "draft",
            "severity": draft.severity,
            "status": None,
            "fields": draft.fields.model_dump(mode="json", exclude_none=True),
            "audience": draft.audience.model_dump(),
            "next_update_at": None,
            "created_by": actor,
            "allow_language_fallback": draft.allow_language_fallback,
        }
        notice["id"] = await incident_store.insert_notice(conn, notice)
        await audit(conn, "notice.created", "notice", notice["id"], actor, {"kind": draft.kind, "broadcast": True})
        plan = await publish(conn, request.app["settings"], notice) if draft.publish else None
        await record_inbound(conn, "api", raw, actor, request.content_type, notice_id=notice["id"])
    outcome = Outcome(None, notice["id"], 1, "published" if plan else "draft", plan)  # type: ignore[arg-type]
    return _accepted(request, outcome)
