"""Deliveries as admins see them: the log (JSON pages, a streamed CSV export, one delivery with its
receipts), status summaries of an incident or a notice, and re-queuing a delivery that gave up.

Admin scope throughout: the log carries partners' addresses and phone numbers.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from service import appkeys
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.params import Limit, QueryId, QueryTime, parse_query, path_id, timestamp
from service.dispatcher import requeue_delivery
from service.errors import NotFound
from service.notices import iso
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store import log as log_store
from service.store.log import DeliveryFilter
from service.volume import explain

routes = web.RouteTableDef()

DeliveryStatus = Literal[
    "pending", "sending", "sent", "delivered", "failed", "undelivered", "bounced", "acknowledged", "dead",
    "skipped", "merged",
]  # fmt: skip
Channel = Literal["email", "sms", "webhook"]
# partner: notices to partners (the default, and the only rows any figure counts); internal: account
# owners' copies; answer: answers to partners' questions; operator: messages to our on-call operators.
Purpose = Literal["partner", "internal", "answer", "operator"]

# The JSON item and the CSV row share these names, in this order.
FIELDS = (
    "id", "notice_id", "incident_id", "partner_id", "contact_id", "tier", "channel", "address", "language",
    "status", "reason", "attempts", "priority", "escalation_step", "provider_id", "provider_status", "error_code",
    "last_error", "message_id", "created_at", "updated_at", "next_attempt_at", "sent_at", "delivered_at",
    "failed_at", "acknowledged_at", "purpose",
)  # fmt: skip
TIMES = frozenset(f for f in FIELDS if f.endswith("_at"))
# Text that comes from providers. A cell starting with = + - @ is a formula to a spreadsheet, so
# these get a leading apostrophe; our own columns (addresses, ids) are validated and left alone.
FOREIGN_TEXT = frozenset({"provider_id", "provider_status", "error_code", "last_error"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    return {name: iso(row[name]) if name in TIMES else row[name] for name in FIELDS}


def delivery_with_reason(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON item: the CSV's columns plus why the plan shaped the row (capped, merged, held...)."""
    return {**delivery_json(row), "detail": row["detail"], "reason_text": explain(row["reason"], row["detail"])}


def receipt_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source"],
        "status": row["status"],
        "error_code": row["error_code"],
        "detail": row["detail"],
        "received_at": iso(row["received_at"]),
    }


def attempt_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "at": iso(row["at"]),
        "outcome": row["outcome"],
        "error": row["error"],
        "error_code": row["error_code"],
        "provider_id": row["provider_id"],
    }


class DeliveryQuery(BaseModel):
    incident: QueryId | None = None
    notice: QueryId | None = None
    partner: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    contact: QueryId | None = None
    channel: list[Channel] = []
    status: list[DeliveryStatus] = []
    tier: list[Annotated[int, Field(ge=1, le=3)]] = []
    since: QueryTime | None = Field(None, description="created at or after (ISO 8601 with a zone)")
    until: QueryTime | None = Field(None, description="created before (ISO 8601 with a zone)")
    purpose: list[Purpose] = Field([], description="partner (default), internal, answer, operator")
    drill: bool | None = Field(
        None,
        description="true: drill deliveries only; false: real ones only (the default, unless an incident or "
        "notice is named)",
    )

    def where(self) -> DeliveryFilter:
        return DeliveryFilter(
            incident_id=self.incident,
            notice_id=self.notice,
            partner_id=self.partner,
            contact_id=self.contact,
            channels=tuple(self.channel),
            statuses=tuple(self.status),
            tiers=tuple(self.tier),
            since=timestamp(self.since),
            until=timestamp(self.until),
            purposes=tuple(self.purpose) or ("partner",),
            drill=self.drill if self.drill is not None else (None if self.incident or self.notice else False),
        )


class DeliveryPageQuery(DeliveryQuery):
    limit: Limit = 100
    cursor: QueryId | None = Field(None, description="`next_cursor` of the previous page")


@routes.get("/v1/deliveries")
@requires("admin")
@operation(
    "The delivery log: filters and cursor pages", {200: replies.DeliveryPage}, query=DeliveryPageQuery, tag="deliveries"
)
async def list_deliveries(request: web.Request) -> web.Response:
    query = parse_query(request, DeliveryPageQuery)
    async with request.app[appkeys.STORE].read() as conn:
        rows = await log_store.list_deliveries(conn, query.where(), before_id=query.cursor, limit=query.limit)
    next_cursor = rows[-1]["id"] if len(rows) == query.limit else None
    return web.json_response({"items": [delivery_with_reason(r) for r in rows], "next_cursor": next_cursor})


@routes.get("/v1/deliveries.csv")
@requires("admin")
@operation("The filtered delivery log as CSV (streamed)", {200: "text/csv"}, query=DeliveryQuery, tag="deliveries")
async def export_deliveries(request: web.Request) -> web.StreamResponse:
    """The filtered log as CSV, written page by page while the pages are read: the export of a
    large incident never sits in memory whole."""
    where = parse_query(request, DeliveryQuery).where()  # before prepare(): a bad filter is still a JSON 400
    return await stream_csv(request, where)


async def stream_csv(request: web.Request, where: DeliveryFilter) -> web.StreamResponse:
    """The filtered log as CSV (the API's export and the console's download)."""
    page_size = log_store.EXPORT_PAGE_SIZE
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    response = web.StreamResponse(
        headers={
            "Content-Disposition": f'attachment; filename="herald-deliveries-{stamp}.csv"',
            "Cache-Control": "no-store",
        }
    )
    response.content_type = "text/csv"
    response.charset = "utf-8"
    await response.prepare(request)
    await response.write(csv_lines([FIELDS]))
    async for page in log_store.delivery_pages(request.config_dict[appkeys.STORE], where, page_size):
        await response.write(csv_lines(csv_row(row) for row in page))
    await response.write_eof()
    return response


def csv_row(row: dict[str, Any]) -> list[Any]:
    values = delivery_json(row)
    for name in FOREIGN_TEXT:
        text = values[name]
        if isinstance(text, str) and text.startswith(FORMULA_START):
            values[name] = "'" + text
    return [values[name] for name in FIELDS]


def csv_lines(rows: Any) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


@routes.get("/v1/deliveries/{id:\\d+}")
@requires("admin")
@operation("One delivery with every attempt and every receipt", {200: replies.DeliveryDetail}, tag="deliveries")
async def get_delivery(request: web.Request) -> web.Response:
    delivery_id = path_id(request)
    async with request.app[appkeys.STORE].read() as conn:
        delivery = await delivery_store.get_delivery(conn, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        found = await log_store.receipts_of(conn, delivery_id)
        attempts = await delivery_store.attempts_of(conn, delivery_id)
    return web.json_response(
        {
            **delivery_with_reason(delivery),
            "attempt_history": [attempt_json(a) for a in attempts],
            "receipts": [receipt_json(r) for r in found],
        }
    )


@routes.get("/v1/incidents/{id:\\d+}/summary")
@requires("operator")  # counts only: an operator follows a notice going out
@operation(
    "Delivery counts of an incident by status, channel, tier and tier × channel",
    {200: replies.Summary},
    tag="deliveries",
)
async def incident_summary(request: web.Request) -> web.Response:
    incident_id = path_id(request)
    async with request.app[appkeys.STORE].read() as conn:
        if await incident_store.get_incident(conn, incident_id) is None:
            raise NotFound(f"no incident {incident_id}")
        summary = await log_store.summarise(conn, DeliveryFilter(incident_id=incident_id, drill=None))
    return web.json_response({"incident_id": incident_id, **summary})


@routes.get("/v1/notices/{id:\\d+}/summary")
@requires("operator")  # counts only: an operator follows a notice going out
@operation(
    "Delivery counts of a notice by status, channel, tier and tier × channel", {200: replies.Summary}, tag="deliveries"
)
async def notice_summary(request: web.Request) -> web.Response:
    notice_id = path_id(request)
    async with request.app[appkeys.STORE].read() as conn:
        notice = await incident_store.get_notice(conn, notice_id)
        if notice is None:
            raise NotFound(f"no notice {notice_id}")
        summary = await log_store.summarise(conn, DeliveryFilter(notice_id=notice_id, drill=None))
    return web.json_response({"notice_id": notice_id, "incident_id": notice["incident_id"], **summary})


@routes.post("/v1/deliveries/{id:\\d+}/retry")
@requires("admin")
@operation("Re-queue a dead or failed delivery", {202: replies.Requeued}, errors=(409,), tag="deliveries")
async def retry_delivery(request: web.Request) -> web.Response:
    delivery_id = path_id(request)
    async with request.app[appkeys.STORE].begin() as conn:
        await requeue_delivery(conn, delivery_id, principal_of(request).name)
    request.app[appkeys.DISPATCHER_WAKE]()
    return web.json_response({"id": delivery_id, "status": "pending"}, status=202)
