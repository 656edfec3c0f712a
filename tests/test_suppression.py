"""Clean contacts: a hard bounce or a number that refuses SMS for good is not written to again until
an admin clears it; the contact is reached on its next channel meanwhile. Real SMTP server, real
twilio client, real DSN files."""

from __future__ import annotations

from typing import Any

import pytest

from service import appkeys, suppression
from service.store.models import Delivery
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.receipts import bounce, dsn
from tests.helpers.wired import all_settled, post_sample, rows, start, wired_settings

ITO = {"email": "ken.ito@tokai-logistics.example.jp", "phone": "+818023456789"}  # tier 2: email, then SMS
SATO_PHONE = "+819012345678"
TOKAI = {"partners": ["tokai-logistics"]}
FIXTURE_ID = "<herald.n1.c1.email.0@herald.example.com>"


async def open_major(client: Any, **notice: Any) -> dict[str, Any]:
    return await post_sample(client, severity="major", notice={**SAMPLE["notice"], "audience": TOKAI, **notice})


async def bounce_mail_to(client: Any, address: str) -> None:
    [mailed] = await rows(client, deliveries.c.address == address, deliveries.c.channel == "email")
    response = await bounce(client, dsn("postfix-5.1.1-user-unknown.eml", **{FIXTURE_ID: mailed["message_id"]}))
    assert response.status == 200, await response.text()


async def test_a_bounced_address_is_skipped_next_time_and_the_contact_is_reached_by_sms(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    first = await open_major(client)
    await wait_until(lambda: all_settled(client), timeout=30)
    [mailed] = await rows(client, deliveries.c.address == ITO["email"])  # major: tier 2 by email only
    ito_id = mailed["contact_id"]
    assert [r["channel"] for r in await rows(client, deliveries.c.contact_id == ito_id)] == ["email"]
    await bounce_mail_to(client, ITO["email"])

    second = await open_major(client)
    await wait_until(lambda: all_settled(client), timeout=30)
    ito = await rows(client, deliveries.c.notice_id == second["notice_id"], deliveries.c.contact_id == ito_id)
    assert [(r["channel"], r["status"], r["reason"]) for r in ito] == [
        ("email", "skipped", "suppressed"),
        ("sms", "sent", None),
    ]
    assert len([m for m in smtp_sink.messages if ITO["email"] in m.rcpt_tos]) == 1  # only the first notice
    assert [r["To"] for r in twilio_fake.requests].count(ITO["phone"]) == 1
    assert first["notice_id"] != second["notice_id"]

    coverage = await (await client.get("/v1/directory/coverage", headers=auth("admin"))).json()
    [listed] = coverage["suppressed"]
    assert (listed["partner_id"], listed["contact"], listed["channel"], listed["code"]) == (
        "tokai-logistics",
        "ito",
        "email",
        "5.1.1",
    )


async def test_a_number_that_replied_stop_is_suppressed_and_a_requeue_to_it_is_refused_until_an_admin_clears_it(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    twilio_fake.reject_numbers([SATO_PHONE], code=21610)
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await post_sample(client, notice={**SAMPLE["notice"], "audience": {**TOKAI, "tiers": [1]}})
    await wait_until(lambda: all_settled(client), timeout=30)
    [refused] = await rows(client, deliveries.c.address == SATO_PHONE)
    assert (refused["status"], refused["error_code"]) == ("failed", "21610")

    requeue = await client.post(f"/v1/deliveries/{refused['id']}/retry", headers=auth("admin"))
    assert requeue.status == 409
    error = await requeue.json()
    assert error["error"] == "address_suppressed" and "21610" in error["detail"]

    [entry] = (await (await client.get("/v1/suppressions", headers=auth("admin"))).json())["items"]
    assert (entry["channel"], entry["address"], entry["source"]) == ("sms", SATO_PHONE, "twilio")
    cleared = await client.delete(f"/v1/suppressions/{entry['id']}", headers=auth("admin"))
    assert cleared.status == 200 and (await cleared.json())["cleared_by"] == "admin"
    assert (await (await client.get("/v1/suppressions", headers=auth("admin"))).json())["items"] == []
    assert (await client.post(f"/v1/deliveries/{refused['id']}/retry", headers=auth("admin"))).status == 202


async def test_an_sms_planned_before_its_number_was_suppressed_is_not_sent(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False))
    await post_sample(client, notice={**SAMPLE["notice"], "audience": {**TOKAI, "tiers": [1]}})
    [planned] = await rows(client, deliveries.c.address == SATO_PHONE)
    async with client.app[appkeys.STORE].begin() as conn:  # the number refuses another notice meanwhile
        await suppression.suppress_for(
            conn, Delivery.from_row(planned), "Twilio 21610: replied STOP", "21610", "twilio"
        )

    assert await client.app[appkeys.DISPATCHER].run_once("sms") == 1
    [skipped] = await rows(client, deliveries.c.address == SATO_PHONE)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "suppressed")
    assert not twilio_fake.requests


@pytest.mark.parametrize(
    "code, reply, suppresses",
    [
        ("550", "recipient refused: 5.1.1 <x@example.jp>: Recipient address rejected: User unknown", True),
        ("550", "5.2.1 mailbox disabled", True),
        ("550", "Requested action not taken: mailbox unavailable", True),
        ("550", "5.7.1 message rejected as spam", False),
        ("552", "5.3.4 message too big", False),
    ],
)
def test_an_smtp_refusal_suppresses_only_when_it_is_about_the_mailbox(code: str, reply: str, suppresses: bool) -> None:
    assert suppression.failure_suppresses("email", code, reply) is suppresses
