"""Monitoring webhooks: Alertmanager and Grafana alerts in, incidents (and maybe notices) out.

Every accepted body is stored raw in inbound_events in the same transaction as its effect, before
the reply (service/ingest/writer.py commits webhooks in batches); a rejected one (400/415/422) is
stored too, marked "rejected:<status>", so nothing a source sent is lost. Replies are 202 with
`{"incident_id", "notice_id", "action"}`, or a list of those (one per alert) when
`ingest.incident_per = "fingerprint"`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from service import appkeys
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import ApiError, http_status, parse_json
from service.errors import HeraldError
from service.ingest import alertmanager, grafana
from service.ingest.config import IngestSettings
from service.ingest.events import IncidentEvent
from service.ingest.writer import Webhook
from service.settings import Settings
from service.store import Store
from service.store.records import record_inbound

routes = web.RouteTableDef()

Parser = Callable[[Any, IngestSettings], list[IncidentEvent]]


@routes.post("/v1/webhooks/alertmanager")
@requires("ingest")
@operation(
    "Prometheus Alertmanager webhook (version 4)",
    {202: replies.IngestReply},
    body=alertmanager.AlertmanagerWebhook,
    tag="ingest",
    example={
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="OrderApiDown"}',
        "status": "firing",
        "receiver": "herald",
        "groupLabels": {"alertname": "OrderApiDown"},
        "commonLabels": {"alertname": "OrderApiDown", "component": "order-api", "severity": "critical"},
        "commonAnnotations": {"summary": "Order API is not answering"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "OrderApiDown", "component": "order-api", "severity": "critical"},
                "annotations": {"summary": "Order API is not answering"},
                "startsAt": "2026-11-25T01:02:03Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "6f1c2a9b3e4d5c70",
            }
        ],
    },
    description="One incident per group (or per fingerprint with ingest.incident_per = fingerprint, then a list). "
    "A source may sign its body (HMAC-SHA256) instead of sending a token.",
)
async def alertmanager_webhook(request: web.Request) -> web.Response:
    return await _ingest(request, alertmanager.SOURCE, alertmanager.parse_events)


@routes.post("/v1/webhooks/grafana")
@requires("ingest")
@operation("Grafana alerting webhook", {202: replies.IngestReply}, body=grafana.GrafanaWebhook, tag="ingest")
async def grafana_webhook(request: web.Request) -> web.Response:
    return await _ingest(request, grafana.SOURCE, grafana.parse_events)


async def _ingest(request: web.Request, source: str, parse: Parser) -> web.Response:
    settings: Settings = request.app[appkeys.SETTINGS]
    store: Store = request.app[appkeys.STORE]
    raw = await read_raw_body(request)
    actor = principal_of(request).name
    try:
        events = parse(parse_json(raw, request.content_type), settings.ingest)
    except (ApiError, HeraldError) as exc:
        await _record_rejected(store, source, raw, actor, request.content_type, exc)
        raise
    webhook = Webhook(source, events, raw, actor, request.content_type)
    results = await request.app[appkeys.INGEST_WRITER].submit(webhook)
    if any(result.deliveries for result in results):
        request.app[appkeys.DISPATCHER_WAKE]()
    if settings.ingest.incident_per == "fingerprint":
        return web.json_response([result.as_json() for result in results], status=202)
    return web.json_response(results[0].as_json(), status=202)


async def read_raw_body(request: web.Request) -> bytes:
    """The exact bytes received (an HMAC hook may have read them already; aiohttp caches them).

    The app's client_max_size is server.max_body_bytes, so an oversized body is a 413.
    """
    limit = request.app[appkeys.SETTINGS].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
    return await request.read()


async def _record_rejected(
    store: Store, source: str, raw: bytes, actor: str, content_type: str, error: ApiError | HeraldError
) -> None:
    async with store.begin() as conn:
        await record_inbound(conn, source, raw, actor, content_type, outcome=f"rejected:{http_status(error)}")
