"""The delivery log keeps every attempt: a retry that succeeds does not erase why it was retried."""

from __future__ import annotations

from typing import Any

from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import post_sample, rows, start, wired_settings


async def test_a_retried_email_shows_the_failed_attempt_and_the_one_that_succeeded(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(db_url, smtp_sink, twilio_fake))
    smtp_sink.fail_next(1, code=451, text="4.3.0 mailbox temporarily unavailable")
    notice = {**SAMPLE["notice"], "audience": {"partners": ["tokai-logistics"], "tiers": [1]}}
    await post_sample(client, severity="minor", notice=notice)

    async def all_sent() -> list[dict[str, Any]] | None:
        found = await rows(client, deliveries.c.channel == "email")
        return found if found and all(r["status"] == "sent" for r in found) else None

    retried = next(r for r in await wait_until(all_sent, timeout=30) if r["attempts"] == 2)

    response = await client.get(f"/v1/deliveries/{retried['id']}", headers=auth("admin"))
    attempts = (await response.json())["attempt_history"]
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "retry"), (2, "sent")]
    assert attempts[0]["error_code"] == "451" and "temporarily unavailable" in attempts[0]["error"]
    assert attempts[1]["error"] is None and attempts[0]["at"] <= attempts[1]["at"]
