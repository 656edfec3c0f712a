"""A channel that sends nothing: it hands each message to a recorder (the app writes it to the
database and shows it in the console), so Herald runs and drills run with no SMTP or Twilio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from channels.base import OutboundMessage, SendResult

Recorder = Callable[[str, OutboundMessage], Awaitable[None]]


class SandboxChannel:
    def __init__(self, name: str, record: Recorder) -> None:
        self.name = name
        self._record = record

    async def send(self, message: OutboundMessage) -> SendResult:
        await self._record(self.name, message)
        return SendResult(provider_id=f"sandbox-{message.delivery_id}", provider_status="recorded")

    async def close(self) -> None:
        return None
