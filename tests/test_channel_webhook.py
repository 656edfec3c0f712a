"""A partner's system receives notices as signed JSON (Standard Webhooks) at its own endpoint: a
real local HTTP receiver verifies every signature with the Standard Webhooks reference library."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from channels.base import OutboundMessage, PermanentError
from channels.webhook import WebhookChannel
from service import appkeys
from service.app import create_app
from service.directory import load_directory
from service.settings import SettingsError, load_settings
from service.store.tables import deliveries
from tests.helpers import ROOT, auth, make_settings, wait_until

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
SAMPLE = json.loads((ROOT / "config" / "sample-incident.json").read_text(encoding="utf-8"))


@dataclass
class PartnerSystem:
    """The partner's side: verifies each request like a Standard Webhooks consumer would."""

    secret: str
    verified: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    rejected: int = 0
    answers: list[int] = field(default_factory=list)  # statuses to answer next, before 204
    url: str = ""

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            self.rejected += 1
            return web.Response(status=400, text="bad signature")
        self.headers.append(headers)
        if self.answers:
            return web.Response(status=self.answers.pop(0))
        self.verified.append(payload)
        return web.Response(status=204)


@pytest.fixture
async def partner_system(aiohttp_server: Any) -> AsyncIterator[PartnerSystem]:
    system = PartnerSystem(SECRET)
    app = web.Application()
    app.router.add_post("/herald", system.receive)
    server = await aiohttp_server(app)
    system.url = str(server.make_url("/herald"))
    yield system


def directory_with_webhook(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "partners.yaml"
    path.write_text(
        f"""partners:
  - id: kanto-trading
    name: 関東商事株式会社
    language: ja
    components: [order-api]
    contacts:
      - key: system
        name: 関東商事 受注システム
        tier: 1
        webhook_url: {url}
        channels: [webhook]
""",
        encoding="utf-8",
    )
    return path


async def start(aiohttp_client: Any, sqlite_url: str, tmp_path: Path, system: PartnerSystem) -> Any:
    settings = make_settings(
        sqlite_url,
        directory={"path": str(directory_with_webhook(tmp_path, system.url)), "import_on_start": True},
        webhook={"secret": SECRET, "allow_http": True},
    )
    client = await aiohttp_client(create_app(settings))
    reply = await client.post(
        "/v1/incidents", json={**SAMPLE, "next_update_at": "2030-01-01T00:00:00Z"}, headers=auth("operator")
    )
    assert reply.status == 202, await reply.text()
    return client


async def webhook_rows(client: Any) -> list[Any]:
    async with client.app[appkeys.STORE].read() as conn:
        return list((await conn.execute(select(deliveries).where(deliveries.c.channel == "webhook"))).mappings())


async def test_a_partner_system_receives_a_signed_notice_it_can_verify(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Path, partner_system: PartnerSystem
) -> None:
    client = await start(aiohttp_client, sqlite_url, tmp_path, partner_system)
    await wait_until(lambda: partner_system.verified, timeout=15)
    [payload] = partner_system.verified
    assert payload["type"] == "notice.published"
    data = payload["data"]
    assert data["language"] == "ja" and data["notice"]["kind"] == "initial" and data["notice"]["version"] == 1
    assert data["incident"]["title"] == "受発注APIの応答遅延・エラー" and data["incident"]["severity"] == "critical"
    assert data["notice"]["fields"]["summary"].startswith("本日14時52分頃より")
    assert data["subject"].startswith("【障害発生のお知らせ】") and "受発注API" in data["text"]
    assert data["recipient"] == {"partner_name": "関東商事株式会社", "name": "関東商事 受注システム", "tier": 1}
    [row] = await wait_until(lambda: _sent(client), timeout=10)
    assert partner_system.headers[0]["webhook-id"] == row["message_id"].strip("<>")
    assert partner_system.headers[0]["content-type"] == "application/json"
    assert partner_system.rejected == 0


async def _sent(client: Any) -> list[Any]:
    rows = await webhook_rows(client)
    return rows if rows and all(r["status"] == "sent" for r in rows) else []


async def test_a_busy_endpoint_is_retried_with_the_same_webhook_id(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Path, partner_system: PartnerSystem
) -> None:
    partner_system.answers = [503, 429]
    client = await start(aiohttp_client, sqlite_url, tmp_path, partner_system)
    [row] = await wait_until(lambda: _sent(client), timeout=15)
    assert row["attempts"] == 3
    assert len(partner_system.verified) == 1 and len(partner_system.headers) == 3
    assert len({h["webhook-id"] for h in partner_system.headers}) == 1, "receivers de-duplicate on webhook-id"


async def test_an_endpoint_that_refuses_is_not_retried(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Path, partner_system: PartnerSystem
) -> None:
    partner_system.answers = [410]
    client = await start(aiohttp_client, sqlite_url, tmp_path, partner_system)

    async def failed() -> list[Any]:
        rows = await webhook_rows(client)
        return rows if rows and rows[0]["status"] == "failed" else []

    [row] = await wait_until(failed, timeout=15)
    assert row["attempts"] == 1 and row["error_code"] == "410"
    assert len(partner_system.headers) == 1


async def test_the_receiver_really_checks_signatures(partner_system: PartnerSystem) -> None:
    forged = WebhookChannel("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(), allow_http=True)
    message = OutboundMessage(delivery_id=1, message_id="<m1@herald.test>", to=partner_system.url, text='{"a":1}')
    try:
        with pytest.raises(PermanentError, match="HTTP 400"):
            await forged.send(message)
    finally:
        await forged.close()
    assert partner_system.rejected == 1 and partner_system.verified == []


async def test_plain_http_endpoints_are_refused_unless_allowed() -> None:
    channel = WebhookChannel(SECRET)
    message = OutboundMessage(delivery_id=1, message_id="<m1@herald.test>", to="http://127.0.0.1:9/x", text="{}")
    try:
        with pytest.raises(PermanentError, match="must be https"):
            await channel.send(message)
    finally:
        await channel.close()


def test_a_webhook_channel_needs_a_webhook_url_in_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "partners.yaml"
    path.write_text(
        """partners:
  - id: kanto-trading
    name: 関東商事株式会社
    language: ja
    components: [order-api]
    contacts:
      - key: system
        name: 受注システム
        tier: 1
        email: system@kanto.example.jp
        channels: [webhook]
      - key: broken
        name: 壊れたURL
        tier: 2
        webhook_url: ftp://kanto.example.jp/in
""",
        encoding="utf-8",
    )
    _, errors = load_directory(str(path))
    messages = [f"{e.field}: {e.message}" for e in errors]
    assert any("channel webhook needs a webhook_url" in m for m in messages), messages
    assert any("webhook_url" in m and "https://" in m for m in messages), messages


def test_the_signing_secret_must_be_a_standard_webhooks_secret() -> None:
    with pytest.raises(SettingsError, match=r"webhook\.secret"):
        load_settings(ROOT / "config" / "herald.toml", environ={"HERALD_WEBHOOK__SECRET": "hunter2"})
    settings = load_settings(ROOT / "config" / "herald.toml", environ={"HERALD_WEBHOOK__SECRET": SECRET})
    assert settings.webhook_configured
