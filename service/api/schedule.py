"""Scheduled notices: list them, change them, cancel them, until they go."""

from __future__ import annotations

from aiohttp import web

from service import appkeys, scheduled
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import read_model
from service.api.idempotency import IDEMPOTENCY, idempotent
from service.api.params import path_id
from service.notices import notice_json
from service.scheduled import NoticeEdit
from service.store import incidents as incident_store

routes = web.RouteTableDef()


@routes.get("/v1/notices/scheduled")
@requires("operator")
@operation("Notices waiting for their send_at, soonest first", {200: replies.NoticeList}, tag="notices")
async def list_scheduled(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        found = await incident_store.list_scheduled(conn)
    return web.json_response({"items": [notice_json(n) for n in found]})


@routes.patch("/v1/notices/{id:\\d+}")
@requires("operator")
@operation(
    "Change a scheduled notice before it goes (send_at, fields, audience: only what changes)",
    {200: replies.Notice},
    body=NoticeEdit,
    errors=(409,),
    tag="notices",
    example={"send_at": "2026-12-05T00:30:00+09:00", "fields": {"window_start": "2026-12-05T02:00:00+09:00"}},
    description="409 `not_scheduled` once the notice has gone or was cancelled. Moving a maintenance window "
    "moves the reminder and completion notices it scheduled.",
)
async def edit_scheduled(request: web.Request) -> web.Response:
    change, _raw = await read_model(request, NoticeEdit)
    async with request.app[appkeys.STORE].begin() as conn:
        notice = await scheduled.edit(
            conn, request.app[appkeys.SETTINGS], path_id(request), change, principal_of(request).name
        )
    return web.json_response(notice_json(notice))


@routes.post("/v1/notices/{id:\\d+}/cancel")
@requires("operator")
@operation(
    "Cancel a scheduled notice and the follow-ups it scheduled",
    {200: replies.Cancelled},
    headers=IDEMPOTENCY,
    errors=(409,),
    tag="notices",
)
@idempotent
async def cancel_scheduled(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].begin() as conn:
        cancelled = await scheduled.cancel(conn, path_id(request), principal_of(request).name)
    return web.json_response({"cancelled": cancelled})
