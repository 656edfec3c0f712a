"""A local HTTP server that answers like Twilio's Messages API, for the real twilio client.

Request and response shapes follow Twilio's published API: form-encoded `To`, `From` or
`MessagingServiceSid`, `Body`, `StatusCallback`; 201 with the Message resource; errors as
`{"code", "message", "more_info", "status"}`. Usable from benchmarks without pytest; the fixture
is at the bottom.
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "herald-test-auth-token"
API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_STATUS_CODES = {429: 20429, 500: 20500, 502: 20500, 503: 20503}
_MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21610: "Attempt to send to unsubscribed recipient",
}


class TwilioFake:
    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[dict[str, str]] = []  # form fields of every authenticated POST
        self.messages: list[dict[str, Any]] = []  # the Message resources we created (201)
        self.port = 0
        self._failures: list[tuple[int, int]] = []  # (status, code) for the next requests
        self._garbled = 0  # next requests answered 201 with a body that is not JSON
        self._fail_ratio = 0.0
        self._fail_statuses: tuple[int, ...] = ()
        self._random = random.Random()
        self._rejected: dict[str, tuple[int, int]] = {}  # number -> (status, code)
        self._rate: float | None = None  # messages a second per sender, when enforced
        self._burst = 1
        self._buckets: dict[str, tuple[float, float]] = {}  # sender -> (tokens, at)
        self.refused_over_rate = 0  # 429s answered because a sender went over its rate
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        # Called with each created Message before the 201 goes back: a carrier report can reach the
        # sender's StatusCallback before the sender has read the SID from our reply.
        self.before_reply: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TwilioFake:
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def garble_next(self, n: int = 1) -> None:
        """Answer the next n requests 201 with an HTML page, as a misconfigured proxy in front of
        the API would; nothing is created."""
        self._garbled += n

    def fail_next(self, n: int = 1, status: int = 500, code: int | None = None) -> None:
        self._failures.extend([(status, code or _STATUS_CODES.get(status, status))] * n)

    def fail_ratio(self, ratio: float, statuses: Iterable[int] = (429, 500), seed: int | None = None) -> None:
        """Fail about `ratio` of the requests from now on with one of `statuses`; 0 stops it."""
        self._fail_ratio = ratio
        self._fail_statuses = tuple(statuses)
        self._random = random.Random(seed)

    def reject_numbers(self, numbers: Iterable[str], code: int = 21610, status: int = 400) -> None:
        """Refuse these numbers from now on, e.g. 21610: the recipient replied STOP."""
        self._rejected.update(dict.fromkeys(numbers, (status, code)))

    def enforce_rate(self, per_second: float, burst: int = 1) -> None:
        """Answer 429 (code 20429) to a sender over `per_second` messages a second, as Twilio does
        for a number or Messaging Service over its throughput: a token bucket per sender."""
        self._rate = per_second
        self._burst = burst
        self._buckets.clear()

    def _over_rate(self, form: dict[str, str]) -> bool:
        if self._rate is None:
            return False
        sender = form.get("MessagingServiceSid") or form.get("From") or ""
        now = time.monotonic()
        tokens, at = self._buckets.get(sender, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[sender] = (tokens, now)
            return True
        self._buckets[sender] = (tokens - 1.0, now)
        return False

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` messages were accepted."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.messages) >= count), timeout)
        return self.messages

    async def send_status_callback(self, sid: str, status: str = "delivered", error_code: int | None = None) -> int:
        """POST a signed status callback for message `sid` to its StatusCallback URL, as Twilio
        does when the carrier reports back. Returns the HTTP status the receiver answered."""
        created = next(m for m in self.messages if m["sid"] == sid)
        url = created["_status_callback"]
        params = {
            "AccountSid": self.account_sid,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": created["to"],
            "From": created["from"] or "",
            "ApiVersion": API_VERSION,
        }
        if created["messaging_service_sid"]:
            params["MessagingServiceSid"] = created["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as response,
        ):
            return response.status

    async def _create_message(self, request: web.Request) -> web.Response:
        if not self._authorised(request) or request.match_info["account_sid"] != self.account_sid:
            return _error(401, 20003)
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append(form)
        failure = self._scripted_failure(form)
        if failure is not None:
            return failure
        created = await self._accept(form)
        if self.before_reply is not None:
            await self.before_reply(created)
        return web.json_response(created, status=201)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return secrets.compare_digest(header, f"Basic {expected}")

    def _scripted_failure(self, form: dict[str, str]) -> web.Response | None:
        if self._garbled:
            self._garbled -= 1
            return web.Response(
                status=201, text="<html><body>Gateway says hello</body></html>", content_type="text/html"
            )
        if self._failures:
            return _error(*self._failures.pop(0))
        if self._over_rate(form):
            self.refused_over_rate += 1
            return _error(429, 20429)
        if self._fail_ratio and self._random.random() < self._fail_ratio:
            status = self._random.choice(self._fail_statuses)
            return _error(status, _STATUS_CODES.get(status, status))
        to = form.get("To", "")
        if not _E164.match(to):
            return _error(400, 21211, to=to)
        if to in self._rejected:
            return _error(*self._rejected[to], to=to)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _error(400, 21603)
        if not form.get("Body"):
            return _error(400, 21602)
        return None

    async def _accept(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }
        async with self._arrived:
            self.messages.append({**resource, "_status_callback": form.get("StatusCallback")})
            self._arrived.notify_all()
        return resource


def _error(status: int, code: int, **fields: str) -> web.Response:
    message = _MESSAGES.get(code, f"Error {code}").format(**fields)
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


try:
    import pytest
except ImportError:  # benchmarks import the class without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    async def twilio_fake():
        fake = await TwilioFake().start()
        yield fake
        await fake.stop()
