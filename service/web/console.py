"""The console: a sub-application at /console/ with its own session and CSRF middleware, so
other pages (acknowledgement links, partner pages) live beside it untouched."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from service.settings import Settings
from service.web import board, compose, deliveries, directory, pages, room, session, signin
from service.web.session import PUBLIC, page

STATIC = Path(__file__).with_name("static")
STATIC_FILES = frozenset(p.name for p in STATIC.iterdir() if p.suffix in (".css", ".js"))
PAGE_MODULES = [signin, board, compose, room, directory, deliveries]


def create_console(settings: Settings) -> web.Application:
    console = web.Application()
    session.setup(console, settings)
    pages.setup(console, settings)
    for module in PAGE_MODULES:
        console.router.add_routes(module.routes)
    console.router.add_get("/static/{name}", static_file)
    return console


@page(PUBLIC)
async def static_file(request: web.Request) -> web.FileResponse:
    """The console's own CSS and script (nothing is loaded from another host)."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "max-age=300"})


@page(PUBLIC)
async def to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound(session.PREFIX + "/")


def add_console(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/", to_console)
    app.router.add_get(session.PREFIX, to_console)
    app.add_subapp(session.PREFIX + "/", create_console(settings))
