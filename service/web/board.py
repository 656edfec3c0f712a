"""The board: open incidents with their promised next update, and drafts waiting for an operator."""

from __future__ import annotations

from aiohttp import web

from service import appkeys
from service import incidents as incident_flow
from service.store import incidents as incident_store
from service.web.pages import render
from service.web.session import PREFIX, page, principal_of

routes = web.RouteTableDef()


@routes.get("/")
@page("operator")
async def board(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.STORE].read() as conn:
        incidents = await incident_store.open_incidents(conn)
        last = await incident_store.last_published(conn, [i["id"] for i in incidents])
        drafts = await incident_store.list_drafts(conn)
        titles = {}
        for draft in drafts:
            if draft["incident_id"] is not None and draft["incident_id"] not in titles:
                found = await incident_store.get_incident(conn, draft["incident_id"])
                titles[draft["incident_id"]] = found["title"] if found else None
    for incident in incidents:
        incident["last_notice_at"] = last.get(incident["id"])
    return render(
        request,
        "console/board.html.j2",
        {"nav": "board", "incidents": incidents, "drafts": drafts, "titles": titles},
    )


@routes.post("/notices/{id:\\d+}/discard")
@page("operator")
async def discard(request: web.Request) -> web.Response:
    async with request.config_dict[appkeys.STORE].begin() as conn:
        await incident_flow.discard_draft(conn, int(request.match_info["id"]), principal_of(request).name)
    raise web.HTTPSeeOther(f"{PREFIX}/?flash=discarded")
