"""Receipts: what Twilio and bouncing mail servers report about a Delivery after it left.

Twilio status callbacks arrive out of order and sometimes twice, so each report is ranked and a
Delivery only ever moves forward: queued < sending < sent < delivered / undelivered / failed, and
an Acknowledgement outranks them all. Every report is kept in `receipts`, except exact repeats.

Bounces are RFC 3464 delivery status notifications (DSN). They are matched to a Delivery by:
1. the original Message-ID (primary): from the returned `text/rfc822-headers` or `message/rfc822`
   part, else an `Original-Message-ID` field, else the DSN's own `In-Reply-To` / `References`;
2. a VERP return path: `bounces+d<delivery id>@<domain>` (any local part before the `+`), looked
   for in the DSN's `X-Original-To`, `Delivered-To`, `Envelope-To`, `To` and in the
   `Original-Recipient` / `Final-Recipient` fields. The email channel's envelope sender is fixed
   today, so only a mail system that rewrites the return path into this form produces it.
A permanent failure (Status 5.x.x) marks the Delivery `bounced` and suppresses the address
(service/suppression.py); a transient one (4.x.x, the
remote server still retries) is recorded and leaves the Delivery as it is.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import time
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import suppression
from service.store import deliveries as delivery_store
from service.store import receipts as receipt_store
from service.store.models import Delivery
from service.suppression import PERMANENT_SMS_CODES

log = logging.getLogger("herald.receipts")

# Twilio MessageStatus → rank; a report never moves a Delivery to a lower rank.
TWILIO_RANK = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4,
}  # fmt: skip
ACKNOWLEDGED_RANK = 5
# The Delivery status a final Twilio report sets; earlier reports only update provider_status.
TWILIO_FINAL_STATUS = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}

# Twilio error codes a status callback carries, in words an operator can act on
# (https://www.twilio.com/docs/api/errors).
TWILIO_ERRORS = {
    "21211": "Invalid 'To' phone number",
    "21408": "Permission to send an SMS has not been enabled for the region",
    "21610": "The recipient unsubscribed (replied STOP)",
    "21612": "The 'To' number is not reachable via SMS from this 'From' number",
    "21614": "The 'To' number is not a mobile number",
    "30001": "Queue overflow: too many messages queued for the sender",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset (switched off or out of coverage)",
    "30004": "Message blocked by the recipient or the carrier",
    "30005": "Unknown destination handset (the number does not exist)",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier as spam",
    "30008": "Unknown error reported by the carrier",
    "30009": "Missing segment of a multi-part message",
    "30010": "Message price exceeds the configured max price",
    "30032": "Toll-free number has not been verified",
    "30034": "Message from an unregistered US A2P 10DLC number",
}


@dataclass(frozen=True)
class ReceiptOutcome:
    delivery_id: int
    status: str  # the Delivery's status after the report
    applied: bool  # did the report change the Delivery?
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "status": self.status,
            "applied": self.applied,
            "duplicate": self.duplicate,
        }


def twilio_error_text(status: str, error_code: str | None) -> str:
    if not error_code:
        return f"Twilio reported the message {status}"
    meaning = TWILIO_ERRORS.get(error_code)
    return f"Twilio {error_code}: {meaning}" if meaning else f"Twilio error {error_code} (message {status})"


def _current_rank(delivery: dict[str, Any]) -> int:
    if delivery["status"] == "acknowledged":
        return ACKNOWLEDGED_RANK
    return TWILIO_RANK.get(delivery["provider_status"] or "", -1)


async def apply_twilio_status(
    conn: AsyncConnection,
    delivery: dict[str, Any],
    message_status: str,
    error_code: str | None,
    now: float | None = None,
) -> ReceiptOutcome:
    """Record a status callback and move the Delivery forward if the report is newer than its state."""
    now = time.time() if now is None else now
    error_code = error_code or None
    if await receipt_store.has_receipt(conn, delivery["id"], "twilio", message_status, error_code):
        return ReceiptOutcome(delivery["id"], delivery["status"], applied=False, duplicate=True)
    rank = TWILIO_RANK.get(message_status)
    current = TWILIO_RANK.get(delivery["provider_status"] or "", -1)
    applied = rank is not None and rank > current
    await receipt_store.record_receipt(
        conn,
        delivery["id"],
        "twilio",
        message_status,
        error_code,
        {"applied": applied, "previous": delivery["provider_status"]},
        now,
    )
    if not applied:
        return ReceiptOutcome(delivery["id"], delivery["status"], applied=False)
    values = _twilio_changes(delivery, message_status, error_code, now)
    await receipt_store.update_delivery(conn, delivery["id"], values)
    if message_status in ("undelivered", "failed") and error_code in PERMANENT_SMS_CODES:
        await suppression.suppress_for(
            conn, Delivery.from_row(delivery), twilio_error_text(message_status, error_code), error_code, "twilio", now
        )
    return ReceiptOutcome(delivery["id"], values.get("status", delivery["status"]), applied=True)


async def receive_twilio_status(
    conn: AsyncConnection, sid: str, message_status: str, error_code: str | None, now: float | None = None
) -> ReceiptOutcome | None:
    """A status callback for message `sid`: applied to its Delivery, or, when the dispatcher has not
    stored that SID yet (Twilio can call back before `create` returned to us), kept and applied when
    it does (None). Twilio does not retry a callback we refuse, so refusing would lose the report."""
    now = time.time() if now is None else now
    await receipt_store.serialise_provider_ids(conn, [sid])
    delivery = await receipt_store.delivery_by_provider_id(conn, sid)
    if delivery is None:
        await receipt_store.keep_early_report(conn, sid, "twilio", message_status, error_code or None, now)
        log.info("Twilio status %s for message %s arrived before its SID was stored; kept", message_status, sid)
        return None
    return await apply_twilio_status(conn, delivery, message_status, error_code, now)


async def apply_early_reports(conn: AsyncConnection, sids: list[str]) -> int:
    """Apply the kept reports for SIDs the dispatcher has just stored (call in the same transaction,
    after `serialise_provider_ids` for those SIDs). Returns how many were applied or recorded."""
    applied = 0
    for report in await receipt_store.take_early_reports(conn, sids):
        delivery = await receipt_store.delivery_by_provider_id(conn, report["provider_id"])
        if delivery is None:  # the worker lost its lease; the next attempt sends under a new SID
            continue
        await apply_twilio_status(conn, delivery, report["status"], report["error_code"], report["received_at"])
        applied += 1
    return applied


def _twilio_changes(
    delivery: dict[str, Any], message_status: str, error_code: str | None, now: float
) -> dict[str, Any]:
    """provider_status always advances; the Delivery status only on a final report, and never
    away from `acknowledged`."""
    values: dict[str, Any] = {"provider_status": message_status, "updated_at": now}
    final = TWILIO_FINAL_STATUS.get(message_status)
    if final == "delivered":
        values["delivered_at"] = now
    elif final is not None:
        values.update(error_code=error_code, last_error=twilio_error_text(message_status, error_code), failed_at=now)
    if final is not None and _current_rank(delivery) < ACKNOWLEDGED_RANK:
        values["status"] = final
    return values


# --- bounces (RFC 3464) ---------------------------------------------------------------------------

VERP = re.compile(r"bounces\+d(\d+)@", re.IGNORECASE)
_STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_VERP_HEADERS = ("X-Original-To", "Delivered-To", "Envelope-To", "To")
_VERP_FIELDS = ("Original-Recipient", "Final-Recipient")
_ACTION_ORDER = ("failed", "delayed")


class NotADsn(ValueError):
    """The body has no machine-readable delivery status (message/delivery-status part)."""


@dataclass(frozen=True)
class Bounce:
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    action: str | None
    diagnostic: str | None
    message_ids: tuple[str, ...] = ()
    verp_delivery_ids: tuple[int, ...] = ()
    reporting_mta: str | None = None

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5.")

    @property
    def transient(self) -> bool:
        return self.status.startswith("4.")


def parse_dsn(raw: bytes) -> Bounce:
    """Read an RFC 3464 DSN with the stdlib email parser."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    report = next((p for p in message.walk() if p.get_content_type() == "message/delivery-status"), None)
    payload = report.get_payload() if report is not None else None
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    if len(blocks) < 2:
        raise NotADsn("the body has no message/delivery-status part with a per-recipient block")
    per_message, recipients = blocks[0], blocks[1:]
    recipient = _reported_recipient(recipients)
    status = _clean(recipient.get("Status"))
    if status is None or not _STATUS.match(status):
        raise NotADsn(f"the delivery status has no valid Status field (got {status!r})")
    return Bounce(
        status=status,
        action=(_clean(recipient.get("Action")) or "").lower() or None,
        diagnostic=_clean(recipient.get("Diagnostic-Code")),
        message_ids=_original_message_ids(message, per_message, recipient),
        verp_delivery_ids=_verp_ids(message, recipient),
        reporting_mta=_clean(per_message.get("Reporting-MTA")),
    )


def _reported_recipient(recipients: list[Message]) -> Message:
    """The block that says what went wrong: failed first, then delayed, else the first."""
    for action in _ACTION_ORDER:
        for block in recipients:
            if (_clean(block.get("Action")) or "").lower() == action:
                return block
    return recipients[0]


def _clean(value: Any) -> str | None:
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None


def _original_message_ids(message: Message, per_message: Message, recipient: Message) -> tuple[str, ...]:
    found: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "text/rfc822-headers":
            headers = HeaderParser(policy=email.policy.default).parsestr(str(part.get_payload(decode=False)))
            found += _ids_in(headers.get("Message-ID"))
        elif kind == "message/rfc822":
            payload = part.get_payload()
            original = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(original, Message):
                found += _ids_in(original.get("Message-ID"))
    for source in (recipient, per_message):
        found += _ids_in(source.get("Original-Message-ID"))
    found += _ids_in(message.get("In-Reply-To")) + _ids_in(message.get("References"))
    return tuple(dict.fromkeys(found))


def _ids_in(value: Any) -> list[str]:
    return _MESSAGE_ID.findall(str(value)) if value is not None else []


def _verp_ids(message: Message, recipient: Message) -> tuple[int, ...]:
    values = [message.get_all(name) or [] for name in _VERP_HEADERS] + [[recipient.get(name)] for name in _VERP_FIELDS]
    found = [int(m) for group in values for value in group if value for m in VERP.findall(str(value))]
    return tuple(dict.fromkeys(found))


async def find_bounced_delivery(conn: AsyncConnection, bounce: Bounce) -> dict[str, Any] | None:
    """Message-ID first (what we always send), then the VERP return path."""
    for message_id in bounce.message_ids:
        delivery = await receipt_store.delivery_by_message_id(conn, message_id)
        if delivery is not None and delivery["channel"] == "email":
            return delivery
    for delivery_id in bounce.verp_delivery_ids:
        delivery = await delivery_store.get_delivery(conn, delivery_id, for_update=True)
        if delivery is not None and delivery["channel"] == "email":
            return delivery
    return None


async def apply_bounce(
    conn: AsyncConnection, delivery: dict[str, Any], bounce: Bounce, now: float | None = None
) -> ReceiptOutcome:
    """Record the bounce; a permanent one marks the Delivery `bounced` (unless acknowledged)."""
    now = time.time() if now is None else now
    kind = "bounced" if bounce.permanent else "delayed" if bounce.transient else "reported"
    if await receipt_store.has_receipt(conn, delivery["id"], "bounce", kind, bounce.status):
        return ReceiptOutcome(delivery["id"], delivery["status"], applied=False, duplicate=True)
    applied = bounce.permanent and delivery["status"] not in ("bounced", "acknowledged")
    detail = {
        "action": bounce.action,
        "diagnostic": bounce.diagnostic,
        "reporting_mta": bounce.reporting_mta,
        "applied": applied,
    }
    await receipt_store.record_receipt(conn, delivery["id"], "bounce", kind, bounce.status, detail, now)
    if not applied:
        return ReceiptOutcome(delivery["id"], delivery["status"], applied=False)
    reason = bounce.diagnostic or f"bounced with status {bounce.status}"
    await receipt_store.update_delivery(
        conn,
        delivery["id"],
        {"status": "bounced", "error_code": bounce.status, "last_error": reason, "failed_at": now, "updated_at": now},
    )
    await suppression.suppress_for(conn, Delivery.from_row(delivery), reason, bounce.status, "bounce", now)
    return ReceiptOutcome(delivery["id"], "bounced", applied=True)
