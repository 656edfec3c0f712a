"""Contact change requests from partner pages, as admins review them: list, approve (applied to the
directory, validated again), reject. Admin scope: the requests carry addresses and phone numbers."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from service import appkeys, partner_page
from service.api.auth import principal_of, requires
from service.api.errors import ApiError, parse_json, parse_model, read_body
from service.notices import iso
from service.store import partner_view

routes = web.RouteTableDef()
STATES = ("pending", "approved", "rejected")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=2000)


def request_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "partner_id": row["partner_id"],
        "requested_by_contact_id": row["requested_by"],
        "contact_key": row["contact_key"],
        "change": row["change"],
        "state": row["state"],
        "created_at": iso(row["created_at"]),
        "decided_at": iso(row["decided_at"]),
        "decided_by": row["decided_by"],
        "note": row["note"],
    }


@routes.get("/v1/contact-requests")
@requires("admin")
async def list_requests(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise ApiError(400, "invalid_query", f"state must be one of: {', '.join(STATES)}", "state")
    async with request.app[appkeys.STORE].read() as conn:
        rows = await partner_view.list_requests(conn, state, request.query.get("partner") or None)
    return web.json_response({"items": [request_json(r) for r in rows]})


async def _decide(request: web.Request, approve: bool) -> web.Response:
    request_id = int(request.match_info["id"])
    raw = await read_body(request)
    decision = parse_model(Decision, parse_json(raw, request.content_type)) if raw else Decision(note=None)
    try:
        async with request.app[appkeys.STORE].begin() as conn:
            decided = await partner_page.decide(conn, request_id, approve, principal_of(request).name, decision.note)
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except partner_page.ChangeRefused as exc:
        raise ApiError(409, "already_decided", exc.message, exc.field) from None
    return web.json_response(request_json(decided))


@routes.post("/v1/contact-requests/{id:\\d+}/approve")
@requires("admin")
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, approve=True)


@routes.post("/v1/contact-requests/{id:\\d+}/reject")
@requires("admin")
async def reject(request: web.Request) -> web.Response:
    return await _decide(request, approve=False)
