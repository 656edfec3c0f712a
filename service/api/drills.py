"""Drills: run a scenario, list the runs, read a run's report (JSON or a printable page)."""

from __future__ import annotations

from aiohttp import web

from service import appkeys, drills
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import read_model
from service.api.idempotency import IDEMPOTENCY, idempotent
from service.api.params import path_id
from service.api.reports import HTML_HEADERS, ReportQuery, wants_html
from service.drill_report import build_drill_report, render_drill_html
from service.drills import DrillRequest
from service.store import drills as drill_store
from service.store.records import record_inbound

routes = web.RouteTableDef()

EXAMPLE = {
    "scenario_yaml": "scenario: order-api-outage\nname: 受発注API障害訓練\n...",
    "mode": "sandbox",
    "time_scale": 0.01,
}


@routes.post("/v1/drills")
@requires("operator")
@operation(
    "Run a drill scenario: a marked incident whose notices go at the scenario's times",
    {202: replies.DrillStarted},
    body=DrillRequest,
    headers=IDEMPOTENCY,
    errors=(409,),
    tag="drills",
    example=EXAMPLE,
    description="`mode` sandbox (default) keeps every message in the sandbox; real sends to the real contacts. "
    "Every message says 【訓練】/[DRILL]. `time_scale` compresses the scenario's clock.",
)
@idempotent
async def start_drill(request: web.Request) -> web.Response:
    body, raw = await read_model(request, DrillRequest)
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        started = await drills.start_drill(conn, request.app[appkeys.SETTINGS], body, actor)
        await record_inbound(conn, "api", raw, actor, request.content_type, incident_id=started["incident_id"])
    if started["planned"]:
        request.app[appkeys.DISPATCHER_WAKE]()
    return web.json_response(started, status=202)


@routes.get("/v1/drills")
@requires("operator")
@operation("Drill runs, newest first", {200: replies.DrillList}, tag="drills")
async def list_drills(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        found = await drill_store.list_drills(conn)
    return web.json_response({"items": [drills.drill_json(d) for d in found]})


@routes.get("/v1/drills/{id:\\d+}/report")
@requires("operator")
@operation(
    "A drill's report (JSON, or a printable page): per partner and tier, against the previous run",
    {200: (replies.DrillReport, "text/html")},
    query=ReportQuery,
    tag="drills",
)
async def drill_report(request: web.Request) -> web.Response:
    html = wants_html(request)
    async with request.app[appkeys.STORE].read() as conn:
        report = await build_drill_report(conn, path_id(request))
    if not html:
        return web.json_response(report, headers={"Cache-Control": "no-store"})
    page = render_drill_html(report, request.app[appkeys.SETTINGS].company.timezone)
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=HTML_HEADERS)
