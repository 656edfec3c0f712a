"""The whole service in-process, wired to the test's SMTP sink and Twilio-compatible server, with
the example directory loaded; and the few reads every such test makes of the delivery log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from service import appkeys, directory
from service.app import create_app
from service.settings import Settings
from service.store import Store
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import EXAMPLE_DIRECTORY, auth, make_settings
from tests.helpers.incidents import incident

FINAL = ("sent", "failed", "dead", "skipped", "merged")  # skipped, merged: never to be sent


def wired_sections(smtp_port: int, twilio: TwilioFake) -> dict[str, dict[str, Any]]:
    """The `smtp` and `twilio` settings that point Herald at an SMTP server and the Twilio fake."""
    return {
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "tls": "none",
            "from_address": "Herald <incident@herald.example.com>",
        },
        "twilio": {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": "+15005550006",
            "api_base_url": twilio.base_url,
        },
    }


def wired_settings(db_url: str, smtp: SmtpSink, twilio: TwilioFake, **dispatch: Any) -> Settings:
    return make_settings(
        db_url,
        **wired_sections(smtp.port, twilio),
        server={"public_base_url": "https://herald.example.com"},
        dispatch=dispatch,
    )


async def load_example_directory(store: Store) -> None:
    loaded, errors = directory.load_directory(EXAMPLE_DIRECTORY)
    assert not errors
    await directory.import_directory(store, loaded)


async def start(aiohttp_client: Any, settings: Settings) -> Any:
    client = await aiohttp_client(create_app(settings))
    await load_example_directory(client.app[appkeys.STORE])
    return client


async def rows(client: Any, *conditions: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        query = select(deliveries).order_by(deliveries.c.id)
        for condition in conditions:
            query = query.where(condition)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def all_final(client: Any) -> bool:
    found = await rows(client)
    return bool(found) and all(r["status"] in FINAL for r in found)


async def all_settled(client: Any) -> bool:
    """Every row sent or given up, or never to be sent (skipped, merged)."""
    found = await rows(client)
    return bool(found) and all(r["status"] not in ("pending", "sending") for r in found)


async def post_sample(client: Any, **changes: Any) -> dict[str, Any]:
    """The sample incident, promising its next update an hour from now (a past time is refused)."""
    response = await client.post("/v1/incidents", json=incident(**changes), headers=auth("operator"))
    assert response.status == 202, await response.text()
    return await response.json()
