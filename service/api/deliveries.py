"""Deliveries as admins see them: the log, and re-queuing a delivery that gave up."""

from __future__ import annotations

from aiohttp import web

from service.api.auth import principal_of, requires
from service.api.errors import ApiError
from service.store import deliveries as delivery_store
from service.store.records import audit

routes = web.RouteTableDef()


@routes.post("/v1/deliveries/{id:\\d+}/retry")
@requires("admin")
async def retry_delivery(request: web.Request) -> web.Response:
    delivery_id = int(request.match_info["id"])
    async with request.app["store"].begin() as conn:
        delivery = await delivery_store.get_delivery(conn, delivery_id)
        if delivery is None:
            raise ApiError(404, "not_found", f"no delivery {delivery_id}")
        if not await delivery_store.requeue(conn, delivery_id):
            raise ApiError(409, "not_retryable", f"delivery {delivery_id} is {delivery['status']}; only dead or failed deliveries are re-queued")
        await audit(conn, "delivery.requeued", "delivery", delivery_id, principal_of(request).name,
                    {"was": delivery["status"], "last_error": delivery["last_error"]})
    request.app["dispatcher_wake"]()
    return web.json_response({"id": delivery_id, "status": "pending"}, status=202)
