"""The published contract: /openapi.json (OpenAPI 3.1) and /docs, a page Herald renders itself.

/docs loads nothing from another host: it is rendered on the server from the same document.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service import appkeys
from service.api import replies
from service.api.auth import open_route
from service.api.contract import openapi_document, operation
from service.render import DEFAULT_TEMPLATES_DIR

routes = web.RouteTableDef()

_pages = Environment(loader=FileSystemLoader(DEFAULT_TEMPLATES_DIR / "web"), autoescape=select_autoescape(default=True))
_pages.filters["tojson_pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def contract(app: web.Application) -> dict[str, Any]:
    """Built once per app, from its router: routes do not change after start-up."""
    cache: dict[str, Any] = app[appkeys.OPENAPI]
    if not cache:
        cache.update(openapi_document(app))
    return cache


@routes.get("/openapi.json")
@open_route
@operation("This API's contract (OpenAPI 3.1)", {200: replies.ApiDocument}, tag="contract")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(contract(request.app))


@routes.get("/docs")
@open_route
@operation("This API's contract as a page", {200: "text/html"}, tag="contract")
async def docs_page(request: web.Request) -> web.Response:
    document = contract(request.app)
    page = _pages.get_template("docs.html.j2").render(doc=document, schemas=document["components"]["schemas"])
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)
