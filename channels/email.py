"""Email over SMTP through a small pool of reused aiosmtplib connections."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import email.utils
import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import aiosmtplib
import dkim

from channels.base import (
    ChannelError,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
    classify,
)

if TYPE_CHECKING:
    from service.settings import SmtpSettings

TlsMode = Literal["none", "starttls", "implicit"]

# Headers we set ourselves (or that change who receives the message): an extra header may not
# replace them.
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "Sender",
        "Return-Path",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Resent-To",
        "Resent-Cc",
        "Resent-Bcc",
    )
)
_BARE_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII except ':'
_LINE_BREAKS = re.compile(r"[\r\n]+")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")  # RFC 5321 4.5.2 transparency
_CONNECTION_ERRORS = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    asyncio.TimeoutError,
    OSError,
)


class EmailChannel:
    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        from_address: str,
        tls: TlsMode = "none",
        username: str | None = None,
        password: str | None = None,
        pool_size: int = 4,
        timeout: float = 30.0,
        validate_certs: bool = True,
        ca_file: str | None = None,
        dkim: DkimSigner | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"unknown tls mode {tls!r}")
        self.host = host
        self.port = port
        self.from_address = from_address
        self.envelope_sender = _single_address(from_address, "From")
        self.tls = tls
        self.username = username
        self.password = password
        self.pool_size = pool_size
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_file = ca_file  # trusted instead of the system CAs (a private relay's own CA)
        self.dkim = dkim
        self._slots = _Slots(pool_size)

    @classmethod
    def from_settings(cls, settings: SmtpSettings) -> EmailChannel:
        if not settings.host:
            raise ValueError("smtp.host is not set")
        return cls(
            host=settings.host,
            port=settings.port,
            from_address=settings.from_address,
            tls=settings.tls,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            pool_size=settings.pool_size,
            timeout=settings.timeout,
            validate_certs=settings.validate_certs,
            ca_file=settings.ca_file,
            dkim=DkimSigner.from_settings(settings),
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        recipient = _single_address(message.to, "To")
        body = build_email(message, self.from_address)
        if self.dkim is not None:
            body = self.dkim.sign(body)
        client = await self._slots.take(message.urgent)
        try:
            client = await self._connected(client)
            reply = await _transact(client, self.envelope_sender, recipient, body, self.timeout)
        except BaseException as exc:
            client = self._keep_after(client, exc)
            if isinstance(exc, Exception):
                raise classify_smtp_error(exc) from exc
            raise
        finally:
            self._slots.give_back(client)
        # _transact only returns when DATA was answered 250.
        return SendResult(provider_id=f"250 {reply}")

    async def close(self) -> None:
        for client in self._slots.drain():
            await _quit_quietly(client)

    async def _connected(self, client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP:
        if client is not None and client.is_connected:
            return client
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            use_tls=self.tls == "implicit",
            start_tls=self.tls == "starttls",
            validate_certs=self.validate_certs,
            cert_bundle=self.ca_file,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        return client

    @staticmethod
    def _keep_after(client: aiosmtplib.SMTP | None, exc: BaseException) -> aiosmtplib.SMTP | None:
        """Keep a connection only after a reply the server recovers from with RSET (aiosmtplib
        sends it); after anything else the session state is unknown, so reconnect next time."""
        if client is None:
            return None
        resettable = isinstance(exc, aiosmtplib.SMTPRecipientsRefused) or (
            isinstance(exc, aiosmtplib.SMTPResponseException)
            and not isinstance(exc, _CONNECTION_ERRORS)
            and exc.code != 421
        )
        if resettable and client.is_connected:
            return client
        client.close()
        return None


class _Slots:
    """The pool's connections, each a connected client or None (connect on next use), handed out
    urgent first: a critical notice waits for the next free connection, never behind a
    broadcast's queue of messages waiting for one (a lane keeps many more in flight than there
    are connections, so that no connection idles while a batch is recorded and the next claimed)."""

    def __init__(self, size: int) -> None:
        self._free: list[aiosmtplib.SMTP | None] = [None] * size
        self._waiting: tuple[collections.deque[asyncio.Future[aiosmtplib.SMTP | None]], ...] = (
            collections.deque(),  # urgent
            collections.deque(),  # the rest
        )

    async def take(self, urgent: bool) -> aiosmtplib.SMTP | None:
        if self._free and not any(self._waiting):
            return self._free.pop()
        waiter: asyncio.Future[aiosmtplib.SMTP | None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if urgent else 1]
        queue.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back(waiter.result())  # handed a connection as it was cancelled
            else:
                with contextlib.suppress(ValueError):  # already passed over by give_back
                    queue.remove(waiter)
            raise

    def give_back(self, client: aiosmtplib.SMTP | None) -> None:
        for queue in self._waiting:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(client)
                    return
        self._free.append(client)

    def drain(self) -> list[aiosmtplib.SMTP]:
        """The idle connections, to close: their slots stay, to connect again on next use."""
        clients = [client for client in self._free if client is not None]
        self._free = [None] * len(self._free)
        return clients


async def _transact(client: aiosmtplib.SMTP, sender: str, recipient: str, body: bytes, reply_wait: float) -> str:
    """One mail transaction (MAIL, RCPT, DATA) for a message `build_email` made, returning the
    server's reply to DATA.

    `sendmail` would pass the body through `normalize_message_line_endings` twice (once to size
    it, once to send it): two regex passes over every byte, about 4% of the CPU a delivery costs
    in a broadcast. Our bodies already end every line in CRLF, so the DATA payload is written
    as it is, dot-stuffed only in the unlikely case that a line starts with a period.
    Like `sendmail`, a refusal resets the envelope so the connection can be reused. `reply_wait`
    bounds the wait for each of the server's replies.
    """
    options = [f"SIZE={len(body)}"] if client.supports_extension("size") else []
    try:
        await client.mail(sender, options=options, timeout=reply_wait)
        try:
            await client.rcpt(recipient, timeout=reply_wait)
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise aiosmtplib.SMTPRecipientsRefused([exc]) from exc
        return await _data(client, body, reply_wait)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPException):
            await client.rset(timeout=reply_wait)
        raise


async def _data(client: aiosmtplib.SMTP, body: bytes, reply_wait: float) -> str:
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    if body.startswith(b".") or b"\n." in body:
        body = _LEADING_PERIOD.sub(b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    try:
        start = await protocol.execute_command(b"DATA", timeout=reply_wait)
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        # read_response marks the reply as expected before the loop can deliver it.
        protocol.write(body + b".\r\n")
        reply = await protocol.read_response(timeout=reply_wait)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if reply.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply.message


@dataclass(frozen=True)
class DkimSigner:
    """A DKIM-Signature (RFC 6376, rsa-sha256, relaxed/simple) over the headers a partner's mail
    server checks, for relays that do not sign themselves."""

    domain: str
    selector: str
    private_key: bytes
    headers: tuple[str, ...] = (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "MIME-Version",
        "Content-Type",
    )

    @classmethod
    def from_settings(cls, settings: SmtpSettings) -> DkimSigner | None:
        key = settings.dkim_key()
        if key is None or not settings.dkim_domain or not settings.dkim_selector:
            return None
        return cls(settings.dkim_domain, settings.dkim_selector, key)

    def sign(self, message: bytes) -> bytes:
        try:
            signature = dkim.sign(
                message,
                self.selector.encode(),
                self.domain.encode(),
                self.private_key,
                include_headers=[name.encode() for name in self.headers],
            )
        except dkim.DKIMException as exc:
            raise PermanentError(f"DKIM signing failed: {exc}") from exc
        return bytes(signature) + message


def build_email(message: OutboundMessage, from_address: str) -> bytes:
    """The RFC 5322 message, 7-bit on the wire: RFC 2047 words in headers, base64 utf-8 bodies.

    Written as bytes directly rather than through `email.message`: the stdlib generator refolds
    every header on each call (about 1 ms a message), and a 10,000-message broadcast is built on
    the event loop. The tests parse the result back with the stdlib parser.
    """
    headers = [
        ("From", _mailbox_header(from_address, "From")),
        ("To", _mailbox_header(message.to, "To")),
    ]
    if message.subject:
        headers.append(("Subject", _text_header(clean_subject(message.subject))))
    headers += [
        ("Date", _date_header(int(time.time()))),
        ("Message-ID", _message_id(message.message_id)),
    ]
    if message.reply_to:
        headers.append(("Reply-To", _mailbox_header(message.reply_to, "Reply-To")))
    headers += [("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All")]
    for name, value in message.headers.items():
        _check_extra_header(name, value)
        headers.append((name, _text_header(value)))
    headers.append(("MIME-Version", "1.0"))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    return head + _body(message)


@lru_cache(maxsize=2)
def _date_header(second: int) -> str:
    """RFC 5322 Date, formatted once a second rather than once a message."""
    return email.utils.formatdate(second, localtime=True)


def _body(message: OutboundMessage) -> bytes:
    if not message.html:
        return _part("plain", message.text)
    boundary = "=_herald_" + secrets.token_hex(12)
    return (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode()
        + f"--{boundary}\r\n".encode()
        + _part("plain", message.text)
        + f"\r\n--{boundary}\r\n".encode()
        + _part("html", message.html)
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _part(subtype: str, text: str) -> bytes:
    encoded = base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'.encode() + encoded
    )


def _mailbox_header(value: str, header: str) -> str:
    if _BARE_ADDRESS.fullmatch(value):  # a contact's plain address: nothing to parse or encode
        return value
    return _display_mailbox_header(value, header)


@lru_cache(maxsize=1024)
def _display_mailbox_header(value: str, header: str) -> str:
    _single_address(value, header)
    name, address = email.utils.parseaddr(value)
    if not name:
        return address
    return f"{_text_header(name)} <{address}>" if not name.isascii() else email.utils.formataddr((name, address))


@lru_cache(maxsize=1024)
def _text_header(value: str) -> str:
    """Plain ASCII when it fits a line; otherwise RFC 2047 encoded words of at most 75 characters
    that never split a character, folded one per line."""
    if value.isascii() and len(value) <= 70 and "=?" not in value:
        return value
    words, chunk = [], b""
    for char in value:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 45:  # 45 bytes -> 60 base64 characters
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode()}?=" for word in words if word)


def _message_id(value: str) -> str:
    _no_line_breaks(value, "Message-ID")
    if not (value.isascii() and value.startswith("<") and value.endswith(">") and "@" in value):
        raise PermanentError("Message-ID must look like <local@domain>")
    return value


def clean_subject(subject: str) -> str:
    """A subject is one line: line breaks (a header-injection attempt or a template slip) become
    one space."""
    return _LINE_BREAKS.sub(" ", subject).strip()


def classify_smtp_error(exc: Exception) -> ChannelError:
    return classify(exc, "SMTP", _smtp_answer)


def _smtp_answer(exc: Exception) -> ChannelError | None:
    """What the SMTP conversation itself says: reply codes (5xx final, 4xx not), refused
    recipients, a lost or refused connection."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        if refused is None:
            return PermanentError("all recipients refused")
        return _by_reply_code(refused.code, f"recipient refused: {refused.message}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Wrong credentials are the operator's to fix; retrying keeps the notices alive meanwhile.
        return TransientError(f"SMTP authentication failed: {exc.message}", str(exc.code))
    if isinstance(exc, _CONNECTION_ERRORS):
        code = getattr(exc, "code", None)  # e.g. a 421 greeting
        return TransientError(f"SMTP connection failed: {_describe(exc)}", code and str(code))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_reply_code(exc.code, exc.message)
    return None


# Replies about our session, not the message: the relay wants TLS or a login it did not get. The
# operator fixes the configuration; until then the notices wait instead of dying.
_SESSION_REFUSALS = frozenset({530, 534, 535, 538})


def _by_reply_code(code: int, text: str) -> ChannelError:
    if code in _SESSION_REFUSALS:
        return TransientError(f"relay refused our session (check smtp.tls and the login): {text}", str(code))
    if 500 <= code < 600:
        return PermanentError(text, str(code))
    return TransientError(text, str(code))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _single_address(value: str, header: str) -> str:
    """The bare addr-spec of a one-mailbox header value; anything else is refused for good."""
    _no_line_breaks(value, header)
    if _BARE_ADDRESS.match(value):
        return value
    addresses = email.utils.getaddresses([value])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        raise PermanentError(f"{header} must be exactly one email address")
    return addresses[0][1]


def _no_line_breaks(value: str, header: str) -> str:
    if "\r" in value or "\n" in value:
        raise PermanentError(f"{header} contains a line break")
    return value


def _check_extra_header(name: str, value: str) -> None:
    if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
        raise PermanentError(f"header {name!r} may not be set by a template")
    _no_line_breaks(value, name)


async def _quit_quietly(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit(timeout=5)
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()
