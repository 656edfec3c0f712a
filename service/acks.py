"""Acknowledgement links: a signed, expiring token per Delivery, and recording an Acknowledgement.

Token: `<delivery id>.<expiry, UNIX seconds>.<signature>`, the signature being HMAC-SHA256 over
`<delivery id>.<expiry>` with `[ack] secret` (HERALD_ACK__SECRET), truncated to 128 bits and
base64url-encoded so the link stays short enough for an SMS. The expiry counts from the
delivery's creation, so every retry of a delivery renders the same link (and the same body hash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import escalation
from service.settings import Settings
from service.store import receipts as receipt_store
from service.store.models import Delivery
from service.store.records import audit

log = logging.getLogger("herald.acks")

SIGNATURE_BYTES = 16
_process_secret: bytes | None = None


class InvalidToken(Exception):
    """The token was not signed by us (forged, mangled or signed with another secret)."""


class ExpiredToken(Exception):
    """The token is ours but too old; carries the delivery id so the page can speak its language."""

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"acknowledgement link for delivery {delivery_id} expired")
        self.delivery_id = delivery_id


def process_secret() -> bytes:
    """A random secret for this process, made once: links die at restart, hence the warning."""
    global _process_secret
    if _process_secret is None:
        _process_secret = secrets.token_bytes(32)
        log.warning(
            "no acknowledgement secret configured (HERALD_ACK__SECRET); using a random one for this "
            "process: acknowledgement links stop working at restart and differ between processes"
        )
    return _process_secret


class AckSigner:
    def __init__(self, secret: bytes, ttl_seconds: float) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> AckSigner:
        configured = settings.ack.secret.get_secret_value() if settings.ack.secret else ""
        secret = configured.encode() if configured else process_secret()
        return cls(secret, settings.ack.ttl_hours * 3600.0)

    def token(self, delivery_id: int, expires_at: float) -> str:
        payload = f"{int(delivery_id)}.{int(expires_at)}"
        return f"{payload}.{self._sign(payload)}"

    def token_for(self, delivery_id: int, created_at: float) -> str:
        """The link token of a delivery: it expires `ttl_seconds` after the delivery was planned."""
        return self.token(delivery_id, created_at + self.ttl_seconds)

    def verify(self, token: str, now: float | None = None) -> int:
        """The delivery id the token was made for; raises InvalidToken or ExpiredToken."""
        delivery_part, _, rest = token.partition(".")
        expiry_part, _, signature = rest.partition(".")
        if not (delivery_part.isdigit() and expiry_part.isdigit() and signature):
            raise InvalidToken(token)
        expected = self._sign(f"{delivery_part}.{expiry_part}").encode()
        if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            raise InvalidToken(token)
        if int(expiry_part) < (time.time() if now is None else now):
            raise ExpiredToken(int(delivery_part))
        return int(delivery_part)

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ack_link(settings: Settings, signer: AckSigner) -> Callable[[Delivery], str | None]:
    """The Dispatcher's `ack_link`: a link for tiers asked to acknowledge, None for the rest."""
    base = settings.server.public_base_url.rstrip("/")
    tiers = set(settings.ack.tiers)

    def link(delivery: Delivery) -> str | None:
        if delivery.tier not in tiers:
            return None
        return f"{base}/ack/{signer.token_for(delivery.id, delivery.created_at)}"

    return link


@dataclass(frozen=True)
class Acknowledgement:
    delivery_id: int
    at: float
    new: bool


async def acknowledge(
    conn: AsyncConnection, delivery: dict[str, Any], user_agent: str | None, now: float | None = None
) -> Acknowledgement:
    """Record that the contact confirmed the notice. Idempotent: a second POST changes nothing.

    An Acknowledgement outranks every other state (a bounce, a failed SMS report): the partner
    demonstrably read the notice.
    """
    now = time.time() if now is None else now
    if not await receipt_store.insert_acknowledgement(conn, delivery, now, user_agent):
        existing = await receipt_store.acknowledgement_of(conn, delivery["id"])
        return Acknowledgement(delivery["id"], existing["at"] if existing else now, new=False)
    await receipt_store.update_delivery(
        conn, delivery["id"], {"status": "acknowledged", "acknowledged_at": now, "updated_at": now}
    )
    await receipt_store.record_receipt(
        conn, delivery["id"], "ack", "acknowledged", received_at=now, detail={"previous_status": delivery["status"]}
    )
    await audit(
        conn,
        "delivery.acknowledged",
        "delivery",
        delivery["id"],
        None,
        {
            "notice_id": delivery["notice_id"],
            "partner_id": delivery["partner_id"],
            "contact_id": delivery["contact_id"],
            "tier": delivery["tier"],
        },
    )
    await escalation.cancel_on_acknowledgement(conn, delivery, now)
    log.info("delivery %s acknowledged (notice %s, tier %s)", delivery["id"], delivery["notice_id"], delivery["tier"])
    return Acknowledgement(delivery["id"], now, new=True)
