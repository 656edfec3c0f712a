from __future__ import annotations

from channels.base import Channel, OutboundMessage
from channels.sandbox import SandboxChannel


async def test_sandbox_records_each_notice_instead_of_sending_it():
    recorded: list[tuple[str, OutboundMessage]] = []

    async def record(channel_name: str, message: OutboundMessage) -> None:
        recorded.append((channel_name, message))

    sandbox = SandboxChannel("email", record)
    message = OutboundMessage(7, "<d7.n1@herald.example.com>", "yamada@partner.example.jp", "本文")

    result = await sandbox.send(message)
    await sandbox.close()

    assert isinstance(sandbox, Channel)
    assert recorded == [("email", message)]
    assert result.provider_id == "sandbox-7"
