"""The evidence report of an incident: JSON by default, a printable HTML page on request."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from service import appkeys
from service.api import replies
from service.api.auth import requires
from service.api.contract import operation
from service.api.params import parse_query, path_id
from service.errors import NotFound
from service.report import build_report, render_html

routes = web.RouteTableDef()


class ReportQuery(BaseModel):
    format: Literal["json", "html"] | None = Field(None, description="without it, Accept: text/html gets the page")


# The page shows partners' addresses: keep it out of caches, and let it load nothing but itself.
HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def wants_html(request: web.Request) -> bool:
    """`?format=` decides; without it, a browser asking for text/html gets the page."""
    chosen = parse_query(request, ReportQuery).format
    if chosen is not None:
        return chosen == "html"
    return "text/html" in request.headers.get("Accept", "")


@routes.get("/v1/incidents/{id:\\d+}/report")
@requires("operator")
@operation(
    "The evidence report (JSON, or a printable page)",
    {200: (replies.Report, "text/html")},
    query=ReportQuery,
    tag="incidents",
    description="With `format=html` (or Accept: text/html) the answer is a printable text/html page.",
)
async def incident_report(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    html = wants_html(request)
    async with request.app[appkeys.STORE].read() as conn:
        report = await build_report(conn, incident_id)
    if report is None:
        raise NotFound(f"no incident {incident_id}")
    if not html:
        return web.json_response(report, headers={"Cache-Control": "no-store"})
    page = render_html(report, request.app[appkeys.SETTINGS].company.timezone)
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=HTML_HEADERS)
