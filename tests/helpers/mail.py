"""A notice to one partner, the mail a contact received, the acknowledgement link in it, and a Herald
that takes questions (a reply address, one on-call operator to remind)."""

from __future__ import annotations

import re
from typing import Any

from service.settings import OnCallContact, Settings
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import post_sample, wired_settings

ACK_LINK = re.compile(r"https://herald\.example\.com(/ack/[A-Za-z0-9._\-]+)")
REPLY_ADDRESS = "reply@herald.example.com"
ON_CALL = "ops-lead@example.com"


def question_settings(db_url: str, smtp: SmtpSink, twilio: TwilioFake, **questions: Any) -> Settings:
    settings = wired_settings(db_url, smtp, twilio)
    section = {"reply_address": REPLY_ADDRESS, "poll_interval": 0.05}
    on_call = [OnCallContact(name="当番 一郎", email=ON_CALL, channels=["email"])]
    return settings.model_copy(
        update={"questions": settings.questions.model_copy(update={**section, **questions}), "on_call": on_call}
    )


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


async def answer_mail(smtp: SmtpSink) -> Any:
    """The first answer to a Japanese partner's question that reached the SMTP server."""

    def arrived() -> Any:
        return next((m.message for m in smtp.messages if "ご質問への回答" in str(m.message["Subject"])), None)

    return await wait_until(arrived, timeout=30)
