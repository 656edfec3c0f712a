"""Notices POSTed as JSON to a partner's own endpoint, signed per Standard Webhooks.

The body is composed elsewhere (service/compose.py) and arrives as the message text; this channel
signs and sends it. `webhook-id` is the delivery's stable message id, the same on every retry, so
the partner can de-duplicate; `webhook-timestamp` is the time of this attempt; the signature is
`v1,` + base64 HMAC-SHA256 over "{id}.{timestamp}.{body}" with the secret's decoded key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlsplit

import aiohttp

from channels.base import (
    ChannelError,
    OutboundMessage,
    PermanentError,
    SendResult,
    classify,
    classify_http_status,
)

USER_AGENT = "Herald-Webhooks/1"


def signing_key(secret: str) -> bytes:
    """The key of a Standard Webhooks secret ("whsec_" + base64)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        secret: str,
        timeout: float = 10.0,
        allow_http: bool = False,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.key = signing_key(secret)
        self.timeout = timeout
        self.allow_http = allow_http  # plain http only for local tests and drills
        self._session = session
        self._owns_session = session is None

    async def send(self, message: OutboundMessage) -> SendResult:
        url = self._checked_url(message.to)
        body = message.text.encode("utf-8")
        webhook_id = message.message_id.strip("<>")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.key, webhook_id, timestamp, body),
        }
        try:
            async with self._client().post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise classify(exc, "webhook") from exc
        if 200 <= status < 300:
            return SendResult(provider_id=f"HTTP {status}")
        raise classify_webhook_status(status)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _checked_url(self, url: str) -> str:
        allowed = ("https", "http") if self.allow_http else ("https",)
        parts = urlsplit(url)
        if parts.scheme not in allowed or not parts.hostname:
            raise PermanentError(f"webhook URL must be {' or '.join(allowed)}")
        return url


def classify_webhook_status(status: int) -> ChannelError:
    """Like the other channels (channels.base): the far side busy or down is worth a retry, a refusal is not."""
    return classify_http_status(status, f"webhook answered HTTP {status}")
