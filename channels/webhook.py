"""Notices POSTed as JSON to a partner's own endpoint."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from channels.base import (
    ChannelError,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
)


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        allow_http: bool = False,
    ) -> None:
        self.timeout = timeout
        self.allow_http = allow_http  # plain http only for local tests and drills
        self._session = session
        self._owns_session = session is None

    async def send(self, message: OutboundMessage) -> SendResult:
        url = self._checked_url(message.to)
        payload = {
            "message_id": message.message_id,
            "subject": message.subject,
            "text": message.text,
        }
        try:
            async with self._client().post(
                url,
                json=payload,
                headers={"Idempotency-Key": message.message_id},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"webhook unreachable: {str(exc) or type(exc).__name__}") from exc
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
    if status == 429 or status >= 500 or status == 408:
        return TransientError(f"webhook answered HTTP {status}", str(status))
    return PermanentError(f"webhook answered HTTP {status}", str(status))
