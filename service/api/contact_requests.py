"""Contact change requests from partner pages, as admins review them: list, approve (applied to the
directory, validated again), reject. Admin scope: the requests carry addresses and phone numbers."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from service import appkeys, partner_page
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import parse_json, read_body
from service.api.params import parse_query, path_id
from service.notices import iso
from service.store import partner_view
from service.validation import parse_model

routes = web.RouteTableDef()


class ContactRequestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["pending", "approved", "rejected"] | None = None
    partner: str | None = Field(None, min_length=1, max_length=64)


class Decision(BaseModel):
    """An optional note for the record (why a request was rejected, say)."""

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
@operation(
    "Contact changes partners requested from their pages",
    {200: replies.ContactRequestList},
    query=ContactRequestQuery,
    tag="partners",
)
async def list_requests(request: web.Request) -> web.Response:
    query = parse_query(request, ContactRequestQuery)
    async with request.app[appkeys.STORE].read() as conn:
        rows = await partner_view.list_requests(conn, query.state, query.partner)
    return web.json_response({"items": [request_json(r) for r in rows]})


async def _decide(request: web.Request, approve: bool) -> web.Response:
    request_id = path_id(request)
    raw = await read_body(request)
    decision = parse_model(Decision, parse_json(raw, request.content_type)) if raw else Decision(note=None)
    async with request.app[appkeys.STORE].begin() as conn:
        decided = await partner_page.decide(conn, request_id, approve, principal_of(request).name, decision.note)
    return web.json_response(request_json(decided))


@routes.post("/v1/contact-requests/{id:\\d+}/approve")
@requires("admin")
@operation(
    "Approve a contact change: the directory changes now (audited)",
    {200: replies.ContactRequest},
    body=Decision,
    errors=(409,),
    tag="partners",
)
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, approve=True)


@routes.post("/v1/contact-requests/{id:\\d+}/reject")
@requires("admin")
@operation(
    "Reject a contact change: the directory stays as it is",
    {200: replies.ContactRequest},
    body=Decision,
    errors=(409,),
    tag="partners",
)
async def reject(request: web.Request) -> web.Response:
    return await _decide(request, approve=False)
