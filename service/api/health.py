"""Liveness and readiness: open to anyone (load balancers carry no tokens)."""

from __future__ import annotations

from aiohttp import web

from service import appkeys
from service.api import replies
from service.api.auth import open_route
from service.api.contract import operation

routes = web.RouteTableDef()


@routes.get("/healthz")
@open_route
@operation("Liveness", {200: replies.Status}, tag="operations")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@open_route
@operation("Readiness: could a write start now?", {200: replies.Readiness}, tag="operations")
async def readyz(request: web.Request) -> web.Response:
    """Ready when a write could start now: PostgreSQL answers, or the SQLite write lock is free.
    Not ready is the usual error shape: 503 `unavailable` with Retry-After."""
    await request.app[appkeys.STORE].check_ready()
    # Configuration an operator should fix (no token, loopback public URL, ...): ready all the same.
    warnings = [warning.as_dict() for warning in request.app[appkeys.CONFIG_WARNINGS]]
    return web.json_response({"status": "ready", "warnings": warnings})
