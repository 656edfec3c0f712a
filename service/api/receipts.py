"""Receipt endpoints: Twilio status callbacks (signed by Twilio) and bounce reports (ingest token)."""

from __future__ import annotations

import logging
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from service import appkeys, receipts
from service.api import replies
from service.api.auth import open_route, principal_of, requires
from service.api.contract import FORM, operation
from service.api.errors import ApiError, read_body
from service.errors import InvalidInput, NotFound
from service.settings import Settings
from service.store.records import audit

log = logging.getLogger("herald.receipts")
routes = web.RouteTableDef()

BOUNCE_CONTENT_TYPES = ("message/rfc822", "text/plain")


class TwilioStatus(BaseModel):
    """The fields of a status callback Herald reads (Twilio sends more; all are signed)."""

    model_config = ConfigDict(extra="allow")

    MessageSid: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    MessageStatus: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    ErrorCode: Annotated[str, StringConstraints(max_length=16)] | None = None


def signed_url(settings: Settings, request: web.Request) -> str:
    """The URL Twilio called, as Twilio saw it.

    Twilio's signature covers the full URL it requested plus the form fields. Behind a proxy or a
    load balancer the URL this process sees (scheme, host, port) is not that one, so the signed URL
    is rebuilt from `server.public_base_url` — the same base the StatusCallback was built from —
    and the path and query exactly as received.
    """
    return settings.server.public_base_url.rstrip("/") + request.raw_path


def twilio_signature_valid(settings: Settings, request: web.Request, form: object) -> bool:
    signature = request.headers.get(SIGNATURE_HEADER)
    token = settings.twilio.auth_token.get_secret_value() if settings.twilio.auth_token else ""
    if not signature or not token:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    return bool(RequestValidator(token).validate(signed_url(settings, request), form, signature, algorithm))


@routes.post("/v1/receipts/twilio")
@open_route
@operation(
    "A Twilio SMS status callback (signed by Twilio)",
    {200: replies.ReceiptOutcome, 202: replies.ReceiptOutcome},
    body=TwilioStatus,
    body_media=FORM,
    errors=(403,),
    tag="receipts",
    example={"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32},
    description="Authenticated by X-Twilio-Signature over the public URL. A report for a message Herald has "
    "not stored yet is kept (202) and applied when the dispatcher stores its SID.",
)
async def twilio_status_callback(request: web.Request) -> web.Response:
    """A Twilio message status callback. Open route: the X-Twilio-Signature authenticates it."""
    settings: Settings = request.app[appkeys.SETTINGS]
    form = await request.post()
    if not twilio_signature_valid(settings, request, form):
        log.warning("rejected a Twilio status callback with a missing or invalid signature")
        raise ApiError(403, "invalid_signature", "the X-Twilio-Signature header does not match this request")
    sid, status = str(form.get("MessageSid") or ""), str(form.get("MessageStatus") or "")
    if not sid or not status:
        raise InvalidInput("a status callback needs MessageSid and MessageStatus")
    error_code = str(form.get("ErrorCode") or "") or None
    async with request.app[appkeys.STORE].begin() as conn:
        outcome = await receipts.receive_twilio_status(conn, sid, status, error_code)
    if outcome is None:
        return web.json_response(
            {"delivery_id": None, "status": None, "applied": False, "duplicate": False}, status=202
        )
    if outcome.applied:
        log.info("delivery %s: Twilio reports %s", outcome.delivery_id, status)
    return web.json_response(outcome.as_json())


@routes.post("/v1/receipts/bounce")
@requires("ingest")
@operation(
    "An RFC 3464 bounce (DSN) as received by the bounce mailbox",
    {200: replies.BounceOutcome},
    raw_body=BOUNCE_CONTENT_TYPES,
    tag="receipts",
)
async def bounce_report(request: web.Request) -> web.Response:
    """A raw RFC 3464 DSN as received by the bounce mailbox (piped in by the mail system)."""
    if request.content_type not in BOUNCE_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", "send the raw DSN as message/rfc822 or text/plain")
    body = await read_body(request)
    try:
        bounce = receipts.parse_dsn(body)
    except receipts.NotADsn as exc:
        raise InvalidInput(str(exc), code="not_a_dsn") from exc
    async with request.app[appkeys.STORE].begin() as conn:
        delivery = await receipts.find_bounced_delivery(conn, bounce)
        if delivery is None:
            log.warning(
                "bounce (status %s) matches no delivery: %d Message-IDs, %d VERP ids tried",
                bounce.status,
                len(bounce.message_ids),
                len(bounce.verp_delivery_ids),
            )
            raise NotFound("the DSN names no message Herald sent", code="unknown_message")
        outcome = await receipts.apply_bounce(conn, delivery, bounce)
        if outcome.applied:
            await audit(
                conn,
                "delivery.bounced",
                "delivery",
                delivery["id"],
                principal_of(request).name,
                {"status": bounce.status, "action": bounce.action},
            )
    effect = "applied" if outcome.applied else "recorded"
    log.info("delivery %s: bounce %s (%s)", outcome.delivery_id, bounce.status, effect)
    return web.json_response({**outcome.as_json(), "bounce_status": bounce.status, "permanent": bounce.permanent})
