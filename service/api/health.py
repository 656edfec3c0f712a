"""Liveness and readiness: open to anyone (load balancers carry no tokens)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from service.api.auth import open_route

routes = web.RouteTableDef()


@routes.get("/healthz")
@open_route
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@open_route
async def readyz(request: web.Request) -> web.Response:
    try:
        async with request.app["store"].read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return web.json_response({"status": "unavailable", "detail": type(exc).__name__}, status=503)
    # Configuration an operator should fix (no token, loopback public URL, ...): ready all the same.
    warnings = [warning.as_dict() for warning in request.app["config_warnings"]]
    return web.json_response({"status": "ready", "warnings": warnings})
