"""Suppressed addresses, as admins see and clear them (admin scope: they are addresses).

An admin clears a suppression after fixing the contact (a new address, or the partner confirmed
the mailbox works again); the row stays, with who cleared it and when.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from service import appkeys
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.params import parse_query, path_id
from service.errors import Conflict, NotFound
from service.notices import iso
from service.store import suppressions as suppression_store
from service.store.records import audit

routes = web.RouteTableDef()


class SuppressionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_cleared: bool = False


def suppression_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "address": row["address"],
        "reason": row["reason"],
        "code": row["code"],
        "source": row["source"],
        "delivery_id": row["delivery_id"],
        "created_at": iso(row["created_at"]),
        "cleared_at": iso(row["cleared_at"]),
        "cleared_by": row["cleared_by"],
    }


@routes.get("/v1/suppressions")
@requires("admin")
@operation(
    "Addresses Herald no longer writes to (hard bounces, numbers refused for good)",
    {200: replies.SuppressionList},
    query=SuppressionQuery,
    tag="partners",
)
async def list_suppressions(request: web.Request) -> web.Response:
    query = parse_query(request, SuppressionQuery)
    async with request.app[appkeys.STORE].read() as conn:
        rows = await suppression_store.list_suppressions(conn, query.include_cleared)
    return web.json_response({"items": [suppression_json(r) for r in rows]})


@routes.delete("/v1/suppressions/{id:\\d+}")
@requires("admin")
@operation("Clear a suppression once the contact is fixed", {200: replies.Suppression}, errors=(409,), tag="partners")
async def clear_suppression(request: web.Request) -> web.Response:
    suppression_id = path_id(request)
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        found = await suppression_store.get_suppression(conn, suppression_id)
        if found is None:
            raise NotFound(f"no suppression {suppression_id}")
        if not await suppression_store.clear(conn, suppression_id, actor):
            raise Conflict(f"suppression {suppression_id} was cleared already", code="already_cleared")
        await audit(conn, "address.unsuppressed", "suppression", suppression_id, actor, {"channel": found["channel"]})
        cleared = await suppression_store.get_suppression(conn, suppression_id)
    return web.json_response(suppression_json(cleared or found))
