"""Two incidents mailed to the example directory, and the partner-page link a contact received."""

from __future__ import annotations

import re
from typing import Any

from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import wait_until
from tests.helpers.wired import all_settled, post_sample, rows, start, wired_settings

PAGE_LINK = re.compile(r"https://herald\.example\.com(/p/[A-Za-z0-9._\-]+)")
SATO = "hanako.sato@tokai-logistics.example.jp"  # tokai-logistics, tier 1, Japanese
ITO = "ken.ito@tokai-logistics.example.jp"  # tokai-logistics, tier 2
SUZUKI = "ichiro.suzuki@minato-shoji.example.jp"  # minato-shoji, tier 1
PAYMENTS_OUTAGE = {
    "title": {"ja": "決済サービスの停止", "en": "Payments outage"},
    "components": ["payments"],  # minato-shoji subscribes to it, tokai-logistics does not
}


async def mailed_page(smtp: SmtpSink, address: str) -> str:
    """The partner-page path in the last plain-text mail to `address`."""
    mails = [m.message for m in smtp.messages if address in m.rcpt_tos]
    text = mails[-1].get_body(("plain",)).get_content()
    found = PAGE_LINK.search(text)
    assert found, text
    return found.group(1)


async def herald_with_two_incidents(aiohttp_client: Any, sqlite_url: str, smtp: SmtpSink, twilio: TwilioFake) -> Any:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp, twilio))
    await post_sample(client)
    await post_sample(client, **PAYMENTS_OUTAGE)
    await wait_until(lambda: all_settled(client), timeout=30)
    return client


async def english_contacts_email(client: Any) -> dict[str, Any]:
    """The notice mailed to Pacific Freight's tier-1 contact, who reads English."""
    [english] = await rows(
        client, deliveries.c.partner_id == "pacific-freight", deliveries.c.channel == "email", deliveries.c.tier == 1
    )
    return english
