"""A notice to one partner, the mail a contact received, and the acknowledgement link in it."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.smtp import SmtpSink
from tests.helpers import wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import post_sample

ACK_LINK = re.compile(r"https://herald\.example\.com(/ack/[A-Za-z0-9._\-]+)")


async def publish_to(client: Any, partner: str, tiers: list[int], **incident: Any) -> None:
    notice = {**SAMPLE["notice"], "audience": {"partners": [partner], "tiers": tiers}}
    await post_sample(client, notice=notice, **incident)


async def mail_to(smtp: SmtpSink, address: str) -> Any:
    def arrived() -> Any:
        return next((m.message for m in smtp.messages if m.message["To"].addresses[0].addr_spec == address), None)

    return await wait_until(arrived, timeout=30)


def link_in(mail: Any) -> str | None:
    found = ACK_LINK.search(mail.get_body(("plain",)).get_content())
    return found.group(1) if found else None
