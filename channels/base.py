"""The one protocol every channel implements, and the two kinds of failure it may report.

Channels send once and classify what went wrong; the dispatcher decides whether and when to retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


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


@runtime_checkable
class Channel(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...
