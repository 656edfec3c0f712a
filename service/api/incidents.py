"""Incident API: open, update, list, read with its timeline; drafts; broadcasts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys
from service import incidents as incident_flow
from service.acks import ack_link
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import read_model
from service.api.idempotency import IDEMPOTENCY, idempotent
from service.api.params import DryRunQuery, Limit, QueryId, QueryTime, dry_run_arg, parse_query, path_id, timestamp
from service.broadcasts import Broadcast, open_broadcast
from service.corrections import CorrectionRequest
from service.corrections import correct_notice as correct
from service.dispatcher import Leased
from service.errors import NotFound
from service.incidents import IncidentCreate, IncidentUpdate, Outcome, Status, incident_json
from service.notices import Component, notice_json
from service.preview import preview_notice
from service.promises import promise_json
from service.settings import Severity
from service.store import incidents as incident_store
from service.store import promises as promise_store
from service.store.records import record_inbound

routes = web.RouteTableDef()

INCIDENT_EXAMPLE = {
    "title": {"ja": "受発注APIの応答遅延・エラー", "en": "Order API slow responses and errors"},
    "severity": "critical",
    "components": ["order-api"],
    "impact": {"ja": "発注登録の約40%がタイムアウトしています。", "en": "About 40% of order submissions time out."},
    "responsible": {"name": {"ja": "山田 太郎", "en": "Taro Yamada"}, "email": "incident-desk@example.com"},
    "next_update_at": "2026-11-25T16:00:00+09:00",
    "notice": {
        "kind": "initial",
        "fields": {
            "summary": {"ja": "受発注APIで応答遅延が発生しています。", "en": "The Order API is responding slowly."},
            "current_status": "調査中です / Investigating",
            "outlook": "復旧見込みは未定です / No estimate yet",
        },
    },
}


async def _lease_urgent(request: web.Request, conn: AsyncConnection, outcome: Outcome) -> Leased:
    """Critical tier-1 work the request planned is leased in its own transaction and handed to
    the dispatcher as it commits (see Dispatcher.lease_urgent)."""
    if outcome.plan is None or not outcome.plan.total:
        return Leased()
    return await request.app[appkeys.DISPATCHER].lease_urgent(conn)


def _accepted(request: web.Request, outcome: Outcome, status: int = 202) -> web.Response:
    if outcome.plan is not None and outcome.plan.total:
        request.app[appkeys.DISPATCHER_WAKE]()
    return web.json_response(outcome.as_json(), status=status)


async def write_or_preview(
    request: web.Request, work: Callable[[AsyncConnection], Awaitable[Outcome]], status: Callable[[Outcome], int]
) -> web.Response:
    """Do the work and answer with its outcome, or with `?dry_run=true` do the very same work in a
    transaction that is rolled back and answer 200 with the preview of what it would send."""
    store = request.app[appkeys.STORE]
    if not dry_run_arg(request):
        async with store.begin() as conn:
            outcome = await work(conn)
            urgent = await _lease_urgent(request, conn, outcome)
        request.app[appkeys.DISPATCHER].hand_over(urgent)
        return _accepted(request, outcome, status(outcome))
    settings = request.app[appkeys.SETTINGS]
    links = ack_link(settings, request.app[appkeys.ACK_SIGNER])
    async with store.rehearse() as conn:
        outcome = await work(conn)
        preview = await preview_notice(conn, settings, outcome.notice_id, outcome.plan, links)
    return web.json_response(preview.as_json(), status=200)


DRY_RUN = "With `?dry_run=true`: the same checks, nothing written, 200 with the preview of what would be sent."


@routes.post("/v1/incidents")
@requires("operator")
@operation(
    "Open an incident; its initial notice is planned before the reply",
    {200: replies.Preview, 201: replies.NoticeOutcome, 202: replies.NoticeOutcome},
    body=IncidentCreate,
    query=DryRunQuery,
    headers=IDEMPOTENCY,
    tag="incidents",
    example=INCIDENT_EXAMPLE,
    description="202 with the deliveries planned per tier and channel; 201 when the notice is kept as a draft. "
    + DRY_RUN,
)
@idempotent
async def create_incident(request: web.Request) -> web.Response:
    body, raw = await read_model(request, IncidentCreate)
    actor = principal_of(request).name

    async def work(conn: AsyncConnection) -> Outcome:
        outcome = await incident_flow.open_incident(conn, request.app[appkeys.SETTINGS], body, actor)
        await record_inbound(
            conn, "api", raw, actor, request.content_type, incident_id=outcome.incident_id, notice_id=outcome.notice_id
        )
        return outcome

    return await write_or_preview(request, work, lambda outcome: 201 if outcome.plan is None else 202)


@routes.post("/v1/incidents/{id:\\d+}/updates")
@requires("operator")
@operation(
    "Change an incident; a state change partners should hear about produces its notice",
    {200: replies.OutcomeOrPreview, 202: replies.NoticeOutcome},
    body=IncidentUpdate,
    query=DryRunQuery,
    headers=IDEMPOTENCY,
    errors=(409,),
    tag="incidents",
    example={
        "status": "recovering",
        "notice": {"fields": {"current_status": "切り戻し中です", "next_update_at": "2026-11-25T17:00:00+09:00"}},
    },
    description='409 on a transition the state machine does not allow; `"notice": null` changes silently (200). '
    + DRY_RUN,
)
@idempotent
async def update_incident(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    body, raw = await read_model(request, IncidentUpdate)
    actor = principal_of(request).name

    async def work(conn: AsyncConnection) -> Outcome:
        outcome = await incident_flow.update_incident(conn, request.app[appkeys.SETTINGS], incident_id, body, actor)
        await record_inbound(
            conn, "api", raw, actor, request.content_type, incident_id=incident_id, notice_id=outcome.notice_id
        )
        return outcome

    return await write_or_preview(request, work, lambda outcome: 200 if outcome.plan is None else 202)


class IncidentQuery(BaseModel):
    limit: Limit = 50
    cursor: QueryId | None = Field(None, description="`next_cursor` of the previous page")
    status: list[Status] = []
    severity: list[Severity] = []
    component: Component | None = None
    since: QueryTime | None = Field(None, description="opened at or after (ISO 8601 with a zone)")
    until: QueryTime | None = Field(None, description="opened before (ISO 8601 with a zone)")
    drill: bool = Field(False, description="true: drills' incidents instead of real ones")


@routes.get("/v1/incidents")
@requires("operator")
@operation("List incidents, newest first", {200: replies.IncidentPage}, query=IncidentQuery, tag="incidents")
async def list_incidents(request: web.Request) -> web.Response:
    query = parse_query(request, IncidentQuery)
    async with request.app[appkeys.STORE].read() as conn:
        rows = await incident_store.list_incidents(
            conn,
            status=query.status,
            severity=query.severity,
            component=query.component,
            since=timestamp(query.since),
            until=timestamp(query.until),
            before_id=query.cursor,
            limit=query.limit,
            drill=query.drill,
        )
    next_cursor = rows[-1]["id"] if len(rows) == query.limit else None
    return web.json_response({"items": [incident_json(r) for r in rows], "next_cursor": next_cursor})


@routes.get("/v1/incidents/{id:\\d+}")
@requires("operator")
@operation("An incident with its timeline of notices", {200: replies.IncidentWithTimeline}, tag="incidents")
async def get_incident(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    async with request.app[appkeys.STORE].read() as conn:
        incident = await incident_store.get_incident(conn, incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        notices = await incident_store.notices_of(conn, incident_id)
        counts = await incident_store.delivery_counts_by_notice(conn, [n["id"] for n in notices])
        promised = await promise_store.of_incident(conn, incident_id)
    body = incident_json(incident)
    body["timeline"] = [notice_json(n, counts.get(n["id"])) for n in notices]
    now, settings = time.time(), request.app[appkeys.SETTINGS]
    body["promises"] = [promise_json(p, settings, now) for p in promised]
    body["promise"] = body["promises"][-1] if body["promises"] else None
    return web.json_response(body)


@routes.get("/v1/notices/drafts")
@requires("operator")
@operation("Notices waiting for an operator to publish them", {200: replies.NoticeList}, tag="notices")
async def list_drafts(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        drafts = await incident_store.list_drafts(conn)
    return web.json_response({"items": [notice_json(n) for n in drafts]})


class PublishQuery(DryRunQuery):
    allow_language_fallback: bool = Field(
        False, description="publish although a language its recipients read has no text (they get the other one)"
    )


@routes.post("/v1/notices/{id:\\d+}/publish")
@requires("operator")
@operation(
    "Publish a draft notice",
    {200: replies.Preview, 202: replies.NoticeOutcome},
    query=PublishQuery,
    headers=IDEMPOTENCY,
    errors=(409,),
    tag="notices",
    description=DRY_RUN,
)
@idempotent
async def publish_draft(request: web.Request) -> web.Response:
    notice_id = path_id(request)
    actor = principal_of(request).name
    fallback = parse_query(request, PublishQuery).allow_language_fallback

    async def work(conn: AsyncConnection) -> Outcome:
        return await incident_flow.publish_draft(conn, request.app[appkeys.SETTINGS], notice_id, actor, fallback)

    return await write_or_preview(request, work, lambda outcome: 202)


@routes.post("/v1/notices/{id:\\d+}/discard")
@requires("operator")
@operation(
    "Set a draft aside: it is kept, marked discarded, and never published",
    {200: replies.Discarded},
    errors=(409,),
    tag="notices",
)
async def discard_draft(request: web.Request) -> web.Response:
    notice_id = path_id(request)
    async with request.app[appkeys.STORE].begin() as conn:
        await incident_flow.discard_draft(conn, notice_id, principal_of(request).name)
    return web.json_response({"notice_id": notice_id, "state": "discarded"})


@routes.post("/v1/notices/{id:\\d+}/corrections")
@requires("operator")
@operation(
    "Correct a published notice with only the fields that change",
    {202: replies.NoticeOutcome},
    body=CorrectionRequest,
    headers=IDEMPOTENCY,
    errors=(409,),
    tag="notices",
    example={
        "fields": {"impact": {"ja": "発注登録の約10%がタイムアウトしています。", "en": "About 10% of orders time out."}}
    },
    description="The correction (【訂正】/[Correction]) goes to every contact and channel the corrected notice "
    "reached; 422 `nothing_to_correct` when no field changes, 409 `not_published` for a draft or held notice.",
)
@idempotent
async def correct_notice(request: web.Request) -> web.Response:
    notice_id = path_id(request)
    body, raw = await read_model(request, CorrectionRequest)
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        outcome = await correct(conn, request.app[appkeys.SETTINGS], notice_id, body, actor)
        await record_inbound(
            conn, "api", raw, actor, request.content_type, incident_id=outcome.incident_id, notice_id=outcome.notice_id
        )
        urgent = await _lease_urgent(request, conn, outcome)
    request.app[appkeys.DISPATCHER].hand_over(urgent)
    return _accepted(request, outcome)


@routes.post("/v1/broadcasts")
@requires("operator")
@operation(
    "A notice without an incident: maintenance, a BCP revision, a general notice",
    {200: replies.Preview, 202: replies.NoticeOutcome},
    body=Broadcast,
    query=DryRunQuery,
    headers=IDEMPOTENCY,
    tag="notices",
    description=DRY_RUN,
    example={
        "kind": "maintenance",
        "fields": {
            "summary": "定期メンテナンスのお知らせ",
            "impact": "受発注APIが停止します",
            "window_start": "2026-12-05T01:00:00+09:00",
            "window_end": "2026-12-05T03:00:00+09:00",
            "responsible": {"name": "山田 太郎", "email": "incident-desk@example.com"},
        },
        "audience": {"components": ["order-api"]},
    },
)
@idempotent
async def create_broadcast(request: web.Request) -> web.Response:
    draft, raw = await read_model(request, Broadcast)
    actor = principal_of(request).name

    async def work(conn: AsyncConnection) -> Outcome:
        outcome = await open_broadcast(conn, request.app[appkeys.SETTINGS], draft, actor)
        await record_inbound(conn, "api", raw, actor, request.content_type, notice_id=outcome.notice_id)
        return outcome

    return await write_or_preview(request, work, lambda outcome: 202)
