"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives and fails on cue.

aiosmtpd's Controller serves from its own thread and event loop, so everything the handler
touches is guarded by a lock, and `wait_for` polls under a deadline instead of sharing an
asyncio primitive across loops. Usable from benchmarks without pytest; the fixture is at the
bottom.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cached_property
from typing import Any, Literal, NamedTuple

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["RCPT", "DATA"]


@dataclass
class ReceivedMessage:
    """One accepted message; unpacks as (mail_from, rcpt_tos, message).

    Parsed on first look: parsing in the server thread would make the sink, not the code under
    test, the bottleneck of a 10,000-message benchmark.
    """

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    encrypted: bool = False  # the session ran over TLS (implicit, or after STARTTLS)
    login: str | None = None  # the SMTP AUTH user, when the client authenticated

    @cached_property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def __iter__(self) -> Iterator[Any]:
        return iter((self.mail_from, self.rcpt_tos, self.message))


class _Failure(NamedTuple):
    stage: Stage
    reply: str


class _Unavailable(asyncio.Protocol):
    """A server in trouble: greets with 421 and hangs up (RFC 5321 §3.8)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.3.2 Service not available, closing transmission channel\r\n")
        transport.close()


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        failure = self.sink._take_failure("RCPT")
        if failure:
            return failure
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self.sink._take_failure("DATA")
        if failure:
            return failure
        assert isinstance(envelope.content, bytes)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        received = ReceivedMessage(
            str(envelope.mail_from),
            list(envelope.rcpt_tos),
            envelope.content,
            server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
            login,
        )
        reply = self.sink._record(received)
        hold = self.sink._hold
        if hold is not None and not hold.is_set():
            await asyncio.to_thread(hold.wait, 30)
        return reply

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = self.sink.login
        ok = (
            isinstance(auth_data, LoginPassword)
            and expected is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == expected
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class LoopbackController(Controller):
    """An aiosmtpd Controller on 127.0.0.1 that may bind port 0: `port` reads back the port the
    system gave it once started (the readiness probe then connects to that port)."""

    def __init__(self, handler: Any, port: int = 0, ready_timeout: float = 5.0, **options: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port, ready_timeout=ready_timeout, **options)

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = int(self.server.sockets[0].getsockname()[1])
        super()._trigger_server()


class _SinkController(LoopbackController):
    def __init__(self, sink: SmtpSink, port: int) -> None:
        handler = _Handler(sink)
        options: dict[str, Any] = {}
        if sink.tls == "implicit":
            options["ssl_context"] = sink.ssl_context
        elif sink.tls == "starttls":
            options.update(tls_context=sink.ssl_context, require_starttls=True)
        if sink.login is not None:
            # Like a submission port: AUTH is required, and only over TLS. aiosmtpd counts only
            # STARTTLS as TLS, so on an implicit-TLS port it is told not to insist.
            options.update(
                authenticator=handler.authenticate, auth_required=True, auth_require_tls=sink.tls != "implicit"
            )
        super().__init__(handler, port=port, **options)
        self.sink = sink
        self._protocols: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()

    def factory(self) -> Any:
        self.sink._count_connection()
        protocol = _Unavailable() if self.sink._unavailable else super().factory()
        self._protocols.add(protocol)
        return protocol

    def stop(self, no_assert: bool = False) -> None:
        # A stopped asyncio server keeps its open connections (Python 3.11); an outage drops them.
        self.loop.call_soon_threadsafe(self._drop_connections)
        super().stop(no_assert)

    def _drop_connections(self) -> None:
        for protocol in list(self._protocols):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abort()


class SmtpSink:
    """tls="starttls" requires STARTTLS before MAIL; tls="implicit" speaks TLS from the first byte
    (both with `ssl_context`, a server context); login=(user, password) requires SMTP AUTH."""

    def __init__(
        self,
        port: int = 0,
        *,
        tls: Literal["starttls", "implicit"] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.port = port  # 0: the first start binds any free port, later restarts reuse it
        self.tls = tls
        self.ssl_context = ssl_context
        self.login = login
        self.host = "127.0.0.1"
        self.messages: list[ReceivedMessage] = []
        self.replies: list[str] = []  # our reply to each accepted DATA, in order
        self.connections = 0  # connections the SMTP client opened (not our readiness probe)
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._controller: _SinkController | None = None
        self._probing = False
        self._unavailable = False
        self._hold: threading.Event | None = None

    def start(self) -> SmtpSink:
        self._controller = _SinkController(self, self.port)
        self._probing = True  # Controller.start() connects once itself to check it is up
        try:
            self._controller.start()
        finally:
            self._probing = False
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def down(self, *, refuse: bool = True) -> None:
        """An outage. refuse=True: nothing listens (connection refused, which the sink cannot
        count). refuse=False: a server that greets 421 and hangs up, counted in `connections`."""
        self.stop()
        if not refuse:
            self._unavailable = True
            self.start()

    def up(self) -> None:
        self.stop()
        self._unavailable = False
        self.start()

    def fail_next(self, n: int = 1, code: int = 451, text: str = "try again", *, on: Stage = "DATA") -> None:
        """Answer the next n DATA (or RCPT) commands with `code text` instead of accepting."""
        with self._lock:
            self._failures.extend(_Failure(on, f"{code} {text}") for _ in range(n))

    def hold(self) -> threading.Event:
        """Record each message as it arrives but hold the reply to its DATA (its sender's
        connection stays busy) until the returned event is set."""
        self._hold = threading.Event()
        return self._hold

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"SMTP sink got {len(self.messages)} of {count} messages in {timeout}s")
            await asyncio.sleep(0.01)
        return self.messages

    def _take_failure(self, stage: Stage) -> str | None:
        with self._lock:
            if self._failures and self._failures[0].stage == stage:
                return self._failures.popleft().reply
            return None

    def _record(self, received: ReceivedMessage) -> str:
        with self._lock:
            self.messages.append(received)
            reply = f"250 2.0.0 Ok: queued as SINK{len(self.messages):06d}"
            self.replies.append(reply)
            return reply

    def _count_connection(self) -> None:
        if self._probing:
            return
        with self._lock:
            self.connections += 1

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


try:
    import pytest
except ImportError:  # benchmarks import the class without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def smtp_sink():
        with SmtpSink() as sink:
            yield sink
