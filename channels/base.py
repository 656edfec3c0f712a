"""The one protocol every channel implements, and the two kinds of failure it may report.

Channels send once and classify what went wrong; the dispatcher decides whether and when to retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import aiohttp


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: int
    # Stable per delivery: the email Message-ID, and the idempotency key for the other channels,
    # so a receiver can de-duplicate our at-least-once sends.
    message_id: str
    to: str  # email address, E.164 phone number, or https URL (webhook)
    text: str  # plain-text body; for SMS, the SMS text
    subject: str | None = None
    html: str | None = None
    reply_to: str | None = None  # our responsible contact's email
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers, e.g. List-Unsubscribe
    # Critical work: a channel that queues messages for a connection sends it ahead of the rest.
    urgent: bool = False


@dataclass(frozen=True)
class SendResult:
    # SMTP: the server's reply to DATA ("250 2.0.0 Ok: queued as ABC"); Twilio: the SM sid.
    provider_id: str | None
    provider_status: str | None = None  # e.g. Twilio "queued"


class ChannelError(Exception):
    """A failed send, worded for the delivery log: `reason` for people, `code` from the provider."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason, code)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return f"{self.reason} (code {self.code})" if self.code else self.reason


class TransientError(ChannelError):
    """Worth trying again later: the far side was busy, down or unreachable."""


class PermanentError(ChannelError):
    """Never worth retrying: the far side refused this message for good."""


Classifier = Callable[[Exception], "ChannelError | None"]


def classify(exc: Exception, service: str, by_protocol: Classifier | None = None) -> ChannelError:
    """The one rule every channel's failures go through, in this order:

    1. a ChannelError the channel raised itself stands as it is;
    2. the protocol's own answer decides (`by_protocol`: an SMTP reply code, an HTTP status, a
       provider's error code), returning None when it has no answer for this exception;
    3. the far side could not be reached (refused, reset, timed out) or sent a reply that cannot
       be read: transient, the next attempt may find it well;
    4. a message the protocol cannot carry (a ValueError or UnicodeError while building the
       request: an address it refuses, a header it cannot encode): permanent, it would fail the
       same way every time;
    5. anything else: transient, so an unforeseen error delays a notice instead of dropping it.
    """
    if isinstance(exc, ChannelError):
        return exc
    answered = by_protocol(exc) if by_protocol is not None else None
    if answered is not None:
        return answered
    if isinstance(exc, (TimeoutError, OSError, aiohttp.ClientError)):
        return TransientError(f"{service} unreachable: {_describe(exc)}")
    if isinstance(exc, json.JSONDecodeError):
        return TransientError(f"{service} sent a reply that cannot be read: {_describe(exc)}")
    if isinstance(exc, ValueError):  # UnicodeError is a ValueError
        return PermanentError(f"{service} cannot carry this message: {_describe(exc)}")
    return TransientError(f"{service} error: {type(exc).__name__}: {exc}")


def classify_http_status(status: int, reason: str, code: str | None = None) -> ChannelError:
    """An HTTP error answer: 408, 429 and 5xx are worth another try; any other 4xx is final."""
    error_code = code if code is not None else str(status)
    if status in (408, 429) or status >= 500:
        return TransientError(reason, error_code)
    return PermanentError(reason, error_code)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


@runtime_checkable
class Channel(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...
