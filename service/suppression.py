"""Contact hygiene: an address that hard-bounced or a number that refused SMS for good is suppressed.

What suppresses:
- a DSN with a permanent status (5.x.x), for the email address it was sent to;
- an SMTP server refusing the recipient outright at send time (enhanced status 5.1.x or 5.2.1,
  or a bare 550/551/553): the mailbox does not exist or is disabled;
- Twilio refusing a number at send time or in a status callback with a code that is about the
  number, not the message: invalid (21211), not a mobile / a landline (21614, 30006), unknown
  handset (30005), the recipient replied STOP (21610).

A suppressed address is skipped by the planner (the contact's next channel takes the notice) and
by the dispatcher (a row planned before the bounce arrived is not sent), a re-queue to it is
refused, and directory coverage lists it until an admin clears it after fixing the contact.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service.store import partners as partner_store
from service.store import suppressions as suppression_store
from service.store.models import Delivery
from service.store.records import audit

log = logging.getLogger("herald.suppression")

# Twilio codes that say the number itself cannot take our SMS (https://www.twilio.com/docs/api/errors).
PERMANENT_SMS_CODES = {
    "21211": "invalid phone number",
    "21610": "the recipient unsubscribed (replied STOP)",
    "21614": "not a mobile number",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
}
_BAD_MAILBOX = re.compile(r"\b5\.(1\.\d{1,3}|2\.1)\b")
_ANY_ENHANCED = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
_BARE_BAD_MAILBOX_CODES = frozenset({"550", "551", "553"})


def smtp_refusal_suppresses(code: str | None, reason: str) -> bool:
    """A permanent SMTP refusal that is about the mailbox, not the message (5.7.x spam, 5.3.4 size)."""
    if _BAD_MAILBOX.search(reason):
        return True
    return code in _BARE_BAD_MAILBOX_CODES and not _ANY_ENHANCED.search(reason)


def failure_suppresses(channel: str, code: str | None, reason: str) -> bool:
    if channel == "sms":
        return code in PERMANENT_SMS_CODES
    if channel == "email":
        return smtp_refusal_suppresses(code, reason)
    return False


async def suppressed_contacts(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Contacts with a suppressed address, for coverage and the console: who, which address, why."""
    suppressed = {(s["channel"], s["address"]): s for s in await suppression_store.list_suppressions(conn)}
    if not suppressed:
        return []
    found = []
    for contact in await partner_store.contacts_with_addresses(conn, [address for _, address in suppressed]):
        for channel, field_name in (("email", "email"), ("sms", "phone")):
            entry = suppressed.get((channel, contact[field_name] or ""))
            if entry is not None:
                found.append(
                    {
                        "partner_id": contact["partner_id"],
                        "contact": contact["key"],
                        "tier": contact["tier"],
                        "channel": channel,
                        "address": entry["address"],
                        "suppression_id": entry["id"],
                        "reason": entry["reason"],
                        "code": entry["code"],
                        "since": entry["created_at"],
                    }
                )
    return found


async def suppress_for(
    conn: AsyncConnection,
    delivery: Delivery,
    reason: str,
    code: str | None,
    source: str,
    now: float | None = None,
) -> int | None:
    """Suppress the delivery's address (once; a second failure keeps the first reason)."""
    suppression_id = await suppression_store.suppress(
        conn, delivery.channel, delivery.address, reason, code, source, delivery.id, now
    )
    if suppression_id is None:
        return None
    detail = {
        "channel": delivery.channel,
        "code": code,
        "source": source,
        "delivery_id": delivery.id,
        "partner_id": delivery.partner_id,
        "contact_id": delivery.contact_id,
    }
    await audit(conn, "address.suppressed", "suppression", suppression_id, None, detail)
    log.info("suppressed the %s address of contact %s (%s %s)", delivery.channel, delivery.contact_id, source, code)
    return suppression_id
