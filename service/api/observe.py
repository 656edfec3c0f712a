"""Request ids, request counts and the /metrics endpoint."""

from __future__ import annotations

import re
import time
import uuid

from aiohttp import web

from service import appkeys
from service.api.auth import open_route
from service.api.contract import operation
from service.api.errors import Handler
from service.logs import request_id
from service.store import deliveries as delivery_store
from service.store import promises as promise_store

routes = web.RouteTableDef()
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id (the caller's X-Request-Id when sane), echoed and put in each log line."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if _VALID_ID.match(given) else uuid.uuid4().hex
    token = request_id.set(rid)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request_id.reset(token)
        metrics = request.app[appkeys.METRICS]
        metrics.requests.labels(request.method, str(status)).inc()
        if request.path.startswith("/v1/webhooks/"):
            metrics.webhooks.labels(request.path.rsplit("/", 1)[-1], str(status)).inc()


@routes.get("/metrics")
@open_route
@operation("Prometheus metrics", {200: "text/plain"}, tag="operations")
async def metrics(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        depth = await delivery_store.queue_depth(conn)
        overdue = await promise_store.count_overdue(conn, time.time())
    request.app[appkeys.METRICS].set_queue_depth(depth)
    request.app[appkeys.METRICS].promises_overdue.set(overdue)
    return web.Response(
        body=request.app[appkeys.METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )
