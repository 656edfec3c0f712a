"""A real Prometheus Alertmanager posts to Herald: one incident, one initial notice, no re-notification.

Alertmanager runs as a subprocess with a temporary config whose webhook receiver is Herald (on a
test server on 127.0.0.1) and whose `http_config.authorization` sends Herald's ingest token.
Alerts are injected through Alertmanager's own API (`POST /api/v2/alerts`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from service import appkeys
from service.app import create_app
from service.store.tables import deliveries, inbound_events, incidents, notices
from tests.helpers import TOKENS, make_settings, wait_until

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
if BINARY is None and Path("/usr/bin/prometheus-alertmanager").exists():
    BINARY = "/usr/bin/prometheus-alertmanager"

CONFIG = """\
route:
  receiver: herald
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: herald
    webhook_configs:
      - url: {url}
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


def listening_port(log: Path) -> int:
    """The port Alertmanager bound for port 0, from its own log line."""
    found = LISTENING.search(log.read_text("utf-8", "replace")) if log.exists() else None
    return int(found.group(1)) if found else 0


@pytest.fixture
def alertmanager_binary() -> str:
    if BINARY is not None:
        return BINARY
    reason = "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
    if os.environ.get("HERALD_TEST_REQUIRE_ALERTMANAGER"):
        pytest.fail(reason + " but HERALD_TEST_REQUIRE_ALERTMANAGER is set")
    pytest.skip(reason)


@pytest.fixture
async def herald(aiohttp_server: Any, sqlite_url: str) -> Any:
    settings = make_settings(
        sqlite_url, directory={"import_on_start": True}, ingest={"flap_window": 0.5, "flush_interval": 0.1}
    )
    return await aiohttp_server(create_app(settings), host="127.0.0.1")


@pytest.fixture
async def alertmanager(alertmanager_binary: str, herald: Any, tmp_path: Path) -> AsyncIterator[str]:
    """A running Alertmanager whose only receiver is Herald; yields its base URL."""
    webhook = f"http://127.0.0.1:{herald.port}/v1/webhooks/alertmanager"
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=webhook, token=TOKENS["ingest"]), "utf-8")
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            alertmanager_binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            "--web.listen-address=127.0.0.1:0",  # it logs the port it bound: read back below
            "--cluster.listen-address=",
            "--log.level=debug",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:

        def bound() -> int:
            assert process.returncode is None, log_path.read_text("utf-8", "replace")[-4000:]
            return listening_port(log_path)

        port = await wait_until(bound, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        if process.returncode not in (0, -15):
            print(log_path.read_text("utf-8", "replace")[-4000:])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def ready(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(f"{base}/-/ready") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def alert(ends_in: timedelta | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "labels": {
            "alertname": "OrderApiDown",
            "severity": "critical",
            "component": "order-api",
            "instance": "order-api-1:8080",
        },
        "annotations": {
            "summary": "Order API is not answering",
            "description": "No successful response for 5 minutes.",
        },
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.example.com/graph",
    }
    if ends_in is not None:
        body["endsAt"] = (now + ends_in).isoformat()
    return body


async def inject(http: aiohttp.ClientSession, base: str, *alerts: dict[str, Any]) -> None:
    async with http.post(f"{base}/api/v2/alerts", json=list(alerts)) as response:
        assert response.status == 200, await response.text()


async def scalar(herald: Any, query: Any) -> Any:
    async with herald.app[appkeys.STORE].read() as conn:
        return await conn.scalar(query)


async def test_real_alertmanager_opens_one_incident_and_never_renotifies(
    alertmanager: str, herald: Any, http: aiohttp.ClientSession
) -> None:
    await wait_until(lambda: ready(http, alertmanager), timeout=20)
    await inject(http, alertmanager, alert(ends_in=timedelta(minutes=10)))

    incident_id = await wait_until(lambda: scalar(herald, select(incidents.c.id)), timeout=20)
    assert await _notices(herald, incident_id) == [("initial", "published")]
    planned = await scalar(herald, select(func.count()).select_from(deliveries))
    assert planned > 0

    async def resent_twice() -> bool:  # repeat_interval re-sends of the still-firing group
        query = select(func.count()).select_from(inbound_events).where(inbound_events.c.outcome == "duplicate")
        return await scalar(herald, query) >= 2

    await wait_until(resent_twice, timeout=30)
    assert await _notices(herald, incident_id) == [("initial", "published")]
    assert await scalar(herald, select(func.count()).select_from(deliveries)) == planned
    assert await scalar(herald, select(func.count()).select_from(incidents)) == 1

    await inject(http, alertmanager, alert(ends_in=timedelta(seconds=-1)))  # the alert has ended

    async def resolved() -> bool:
        return await scalar(herald, select(incidents.c.status).where(incidents.c.id == incident_id)) == "resolved"

    await wait_until(resolved, timeout=30)
    assert await _notices(herald, incident_id) == [("initial", "published"), ("resolved", "published")]
    principal = await scalar(herald, select(inbound_events.c.principal).limit(1))
    assert principal == "ingest"


async def _notices(herald: Any, incident_id: int) -> list[tuple[str, str]]:
    async with herald.app[appkeys.STORE].read() as conn:
        rows = await conn.execute(
            select(notices.c.kind, notices.c.state)
            .where(notices.c.incident_id == incident_id)
            .order_by(notices.c.version)
        )
        return [tuple(r) for r in rows]
