"""SMS through Twilio's Messages API, using the official client in its asyncio mode."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import (
    ChannelError,
    OutboundMessage,
    SendResult,
    TransientError,
    classify,
    classify_http_status,
)

if TYPE_CHECKING:
    from service.settings import TwilioSettings

# The twilio library logs each request at INFO, and a request carries the partner's phone number.
for _name in ("twilio.http_client", "twilio.async_http_client"):
    logging.getLogger(_name).setLevel(logging.WARNING)

TWILIO_API_BASE_URL = "https://api.twilio.com"
# Twilio answers these on a bad or stale credential; the operator can fix it before the deadline.
_CREDENTIAL_STATUSES = (401, 403)


class RewritingTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    """Sends the client's requests to `api_base_url` instead of Twilio's hosts.

    The twilio library builds absolute `https://api.twilio.com/...` URLs itself and offers no base
    URL setting, so the tests and the sandbox reach a local Twilio-compatible server only by
    rewriting the scheme and host here. The library also ignores its own `timeout` unless each
    call passes one, and hands aiohttp the `auth=` argument aiohttp 3.14 deprecates, so both are
    applied here instead.
    """

    def __init__(self, api_base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.api_base_url = api_base_url

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- twilio's AsyncHttpClient.request signature
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = _basic_auth(*auth)
        return await super().request(
            method,
            rewrite_twilio_url(url, self.api_base_url),
            params=params,
            data=data,
            headers=headers,
            timeout=timeout or self.timeout,
            allow_redirects=allow_redirects,
        )


def _basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def rewrite_twilio_url(url: str, api_base_url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host != "twilio.com" and not host.endswith(".twilio.com"):
        return url
    base = urlsplit(api_base_url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


class SmsChannel:
    name = "sms"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str = TWILIO_API_BASE_URL,
        status_callback: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("SMS needs a from_number or a messaging_service_sid")
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.api_base_url = api_base_url
        self.status_callback = status_callback
        self.timeout = timeout
        self._auth_token = auth_token
        self._client: Client | None = None
        self._http: RewritingTwilioHttpClient | None = None

    @classmethod
    def from_settings(cls, settings: TwilioSettings, status_callback: str | None = None) -> SmsChannel:
        if not (settings.account_sid and settings.auth_token):
            raise ValueError("twilio.account_sid and twilio.auth_token are not set")
        return cls(
            account_sid=settings.account_sid,
            auth_token=settings.auth_token.get_secret_value(),
            from_number=settings.from_number,
            messaging_service_sid=settings.messaging_service_sid,
            api_base_url=settings.api_base_url,
            status_callback=status_callback,
            timeout=settings.timeout,
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            created = await self._twilio().messages.create_async(**self._create_params(message))
        except Exception as exc:
            raise classify_twilio_error(exc) from exc
        return SendResult(provider_id=created.sid, provider_status=created.status)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None
        self._client = None

    def _create_params(self, message: OutboundMessage) -> dict[str, Any]:
        params: dict[str, Any] = {"to": message.to, "body": message.text}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_number
        if self.status_callback:
            params["status_callback"] = self.status_callback
        return params

    def _twilio(self) -> Client:
        # Made on first use: the HTTP client opens an aiohttp session, which needs a running loop.
        if self._client is None:
            self._http = RewritingTwilioHttpClient(self.api_base_url, self.timeout)
            self._client = Client(self.account_sid, self._auth_token, http_client=self._http)
        return self._client


def classify_twilio_error(exc: Exception) -> ChannelError:
    return classify(exc, "Twilio", _twilio_answer)


def _twilio_answer(exc: Exception) -> ChannelError | None:
    """Twilio's error answers: by HTTP status, with Twilio's own error code (e.g. 21211)."""
    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        return _by_status(exc.status, exc.code, _error_text(exc))
    return None


def _by_status(status: int, code: int | None, text: str) -> ChannelError:
    code_text = str(code) if code is not None else str(status)
    if status in _CREDENTIAL_STATUSES:
        return TransientError(text, code_text)
    return classify_http_status(status, text, code_text)


def _error_text(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioRestException):
        return exc.msg or f"HTTP {exc.status}"
    return exc.detail or exc.title or f"HTTP {exc.status}"
