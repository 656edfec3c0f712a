"""The delivery log (admins): filters, pages, CSV download, one delivery with its receipts.

Filters are the API's own query parameters (`incident`, `notice`, `partner`, `channel`, `status`,
`tier`, `since`, `until`), read by the same model, so a console URL and an API URL agree."""

from __future__ import annotations

from typing import get_args

from aiohttp import web
from pydantic import ValidationError

from service import appkeys
from service.api.deliveries import Channel, DeliveryQuery, DeliveryStatus, stream_csv
from service.api.errors import ApiError
from service.api.params import QueryId
from service.errors import NotFound
from service.store import deliveries as delivery_store
from service.store import log as log_store
from service.web import words
from service.web.pages import render
from service.web.session import lang_of, page

routes = web.RouteTableDef()
PAGE_SIZE = 100
STATUSES = get_args(DeliveryStatus)
CHANNELS = get_args(Channel)


class LogPageQuery(DeliveryQuery):
    cursor: QueryId | None = None


def log_query(request: web.Request) -> LogPageQuery:
    """The API's delivery filters, read from the console's form (an empty field means "any")."""
    data: dict[str, object] = {}
    for name, spec in LogPageQuery.model_fields.items():
        values = [v for v in request.query.getall(name, []) if v]
        if values:
            data[name] = values if isinstance(spec.default, list) else values[-1]
    try:
        return LogPageQuery.model_validate(data)
    except ValidationError as exc:
        name = str(exc.errors()[0]["loc"][0])
        raise ApiError(400, "invalid_query", f"{name}: {exc.errors()[0]['msg']}", name) from None


@routes.get("/deliveries")
@page("admin")
async def delivery_log(request: web.Request) -> web.Response:
    query = log_query(request)
    cursor = query.cursor
    async with request.config_dict[appkeys.STORE].read() as conn:
        rows = await log_store.list_deliveries(conn, query.where(), before_id=cursor, limit=PAGE_SIZE)
    shown = {k: v for k, v in request.query.items() if k != "cursor" and v}
    return render(
        request,
        "console/deliveries.html.j2",
        {
            "nav": "deliveries",
            "rows": rows,
            "query": shown,
            "next_cursor": rows[-1]["id"] if len(rows) == PAGE_SIZE else None,
            "cursor": cursor,
            "statuses": STATUSES,
            "channels": CHANNELS,
        },
    )


@routes.get("/deliveries.csv")
@page("admin")
async def delivery_csv(request: web.Request) -> web.StreamResponse:
    return await stream_csv(request, log_query(request).where())


@routes.get("/deliveries/{id:\\d+}")
@page("admin")
async def delivery(request: web.Request) -> web.Response:
    delivery_id = int(request.match_info["id"])
    async with request.config_dict[appkeys.STORE].read() as conn:
        found = await delivery_store.get_delivery(conn, delivery_id)
        if found is None:
            raise NotFound(words.say(lang_of(request), "not_found"))
        receipts = await log_store.receipts_of(conn, delivery_id)
    return render(request, "console/delivery.html.j2", {"nav": "deliveries", "d": found, "receipts": receipts})
