"""The directory (admins): partners and their contacts, search, and coverage gaps."""

from __future__ import annotations

from aiohttp import web

from service import appkeys
from service.errors import NotFound
from service.store import partners as partner_store
from service.web import words
from service.web.pages import render
from service.web.session import lang_of, page

routes = web.RouteTableDef()
PAGE_SIZE = 50


@routes.get("/directory")
@page("admin")
async def directory(request: web.Request) -> web.Response:
    text = request.query.get("q", "").strip()[:100]
    after = request.query.get("after") or None
    async with request.config_dict[appkeys.STORE].read() as conn:
        found = await partner_store.search_partners(conn, text or None, after, PAGE_SIZE)
        gaps = await partner_store.coverage_gaps(conn)
    next_after = found[-1]["id"] if len(found) == PAGE_SIZE else None
    return render(
        request,
        "console/directory.html.j2",
        {"nav": "directory", "q": text, "partners": found, "next_after": next_after, "after": after, "gaps": gaps},
    )


@routes.get("/directory/{id}")
@page("admin")
async def partner(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.STORE].read() as conn:
        found = await partner_store.get_partner(conn, request.match_info["id"])
    if found is None:
        raise NotFound(words.say(lang_of(request), "not_found"))
    return render(request, "console/partner.html.j2", {"nav": "directory", "partner": found})
