"""The evidence report of an incident: JSON by default, a printable HTML page on request."""

from __future__ import annotations

from aiohttp import web

from service.api.auth import requires
from service.api.errors import ApiError
from service.api.params import path_id
from service.errors import NotFound
from service.report import build_report, render_html

routes = web.RouteTableDef()

FORMATS = ("json", "html")
# The page shows partners' addresses: keep it out of caches, and let it load nothing but itself.
HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def wants_html(request: web.Request) -> bool:
    """`?format=` decides; without it, a browser asking for text/html gets the page."""
    chosen = request.query.get("format")
    if chosen is not None and chosen not in FORMATS:
        raise ApiError(400, "invalid_query", f"format must be one of: {', '.join(FORMATS)}", "format")
    if chosen is not None:
        return chosen == "html"
    return "text/html" in request.headers.get("Accept", "")


@routes.get("/v1/incidents/{id:\\d+}/report")
@requires("operator")
async def incident_report(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    html = wants_html(request)
    async with request.app["store"].read() as conn:
        report = await build_report(conn, incident_id)
    if report is None:
        raise NotFound(f"no incident {incident_id}")
    if not html:
        return web.json_response(report, headers={"Cache-Control": "no-store"})
    page = render_html(report, request.app["settings"].company.timezone)
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=HTML_HEADERS)
