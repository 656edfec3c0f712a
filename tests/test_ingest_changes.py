"""A storm of re-sends is never held by the incident one alert opens, and what the reply said
happened is on disk: a Herald killed right after answering "opened" restarts with the incident,
its notice and its planned deliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from service import appkeys
from service.app import create_app
from service.store import Store, normalise_url
from service.store.tables import alert_groups, deliveries, inbound_events
from tests.helpers import EXAMPLE_DIRECTORY, ROOT, TOKENS, auth, make_settings, wait_until
from tests.helpers.databases import POSTGRES_DSN, fresh_postgres
from tests.helpers.herald_process import HeraldProcess

FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"


def alert(status: str, group: str, severity: str = "critical") -> dict[str, Any]:
    """The fixture's webhook for the group `group` (its own key, alert name and fingerprint)."""
    body: dict[str, Any] = json.loads((FIXTURES / f"{status}_critical.json").read_text("utf-8"))
    body["groupKey"] = f'{{}}:{{alertname="{group}"}}'
    for labels in [body["commonLabels"], body["groupLabels"], *(a["labels"] for a in body["alerts"])]:
        labels["alertname"] = group
        if "severity" in labels:
            labels["severity"] = severity
    for number, item in enumerate(body["alerts"]):
        item["fingerprint"] = f"{group}-{number}"
    return body


async def count(store: Store, table: Any, *where: Any) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def test_an_incident_an_alert_opened_survives_a_crash_right_after_the_reply(tmp_path: Path, db_url: str) -> None:
    config = {
        "database": {"url": db_url},
        "auth": {"tokens": [{"name": "ingest", "scopes": ["ingest"]}, {"name": "operator", "scopes": ["operator"]}]},
        "directory": {"path": str(EXAMPLE_DIRECTORY), "import_on_start": True},
        "escalation": {"steps": {}},
        "quiet_hours": {"enabled": False},
    }
    secrets = {"HERALD_TOKEN_INGEST": TOKENS["ingest"], "HERALD_TOKEN_OPERATOR": TOKENS["operator"]}
    herald = HeraldProcess(tmp_path, config, secrets)
    store = Store(db_url)
    try:
        await herald.start()
        async with aiohttp.ClientSession(headers=auth("ingest")) as session:
            async with session.post(f"{herald.url}/v1/webhooks/alertmanager", json=alert("firing", "Crash")) as r:
                assert r.status == 202, await r.text()
                opened = await r.json()
            herald.kill()  # SIGKILL the moment the reply is read: no shutdown, no flush
            assert opened["action"] == "opened" and opened["notice_id"]
            planned = await count(store, deliveries, deliveries.c.notice_id == opened["notice_id"])
            assert planned > 0, "the critical incident's initial notice planned no delivery"

            await herald.start()
            async with session.post(f"{herald.url}/v1/webhooks/alertmanager", json=alert("firing", "Crash")) as r:
                again = await r.json()
            got = await session.get(f"{herald.url}/v1/incidents/{opened['incident_id']}", headers=auth("operator"))
            incident = await got.json()
    finally:
        herald.kill()
        await store.close()
    assert again == {"incident_id": opened["incident_id"], "notice_id": None, "action": "duplicate"}
    assert [(n["kind"], n["state"]) for n in incident["timeline"]] == [("initial", "published")]


@pytest.fixture
async def postgres_url() -> str:
    if not POSTGRES_DSN:
        pytest.skip("PostgreSQL tests need HERALD_TEST_POSTGRES_DSN (set by .ci/run)")
    return await fresh_postgres(POSTGRES_DSN)


async def test_resends_are_answered_while_a_change_waits_and_a_groups_webhooks_keep_their_order(
    aiohttp_client: Any, postgres_url: str
) -> None:
    """PostgreSQL: another session locks alert_groups, so whatever changes a group waits; re-sends
    of other groups only read it, and are answered meanwhile."""
    settings = make_settings(postgres_url, directory={"import_on_start": True}, ingest={"flap_window": 600})
    client = await aiohttp_client(create_app(settings))

    async def post(body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post("/v1/webhooks/alertmanager", json=body, headers=auth("ingest"))
        assert response.status == 202, await response.text()
        return dict(await response.json())

    steady = await post(alert("firing", "Steady", "warning"))
    flapping = await post(alert("firing", "Flapping", "warning"))
    locker = create_async_engine(normalise_url(postgres_url))
    try:
        async with locker.connect() as conn:
            await conn.begin()
            await conn.execute(text("LOCK TABLE alert_groups IN EXCLUSIVE MODE"))
            resolve = asyncio.create_task(post(alert("resolved", "Flapping", "warning")))
            opening = asyncio.create_task(post(alert("firing", "Fresh")))

            async def a_change_waits() -> bool:
                query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'alert_groups'::regclass"
                return int(await conn.scalar(text(query)) or 0) >= 1

            await wait_until(a_change_waits)
            refire = asyncio.create_task(post(alert("firing", "Flapping", "warning")))
            resend = await post(alert("firing", "Steady", "warning"))
            assert resend == {"incident_id": steady["incident_id"], "notice_id": None, "action": "duplicate"}
            assert not (resolve.done() or opening.done() or refire.done()), "a change was applied under the lock"
            await conn.rollback()
        assert (await resolve)["action"] == "held"
        assert (await opening)["action"] == "opened"
        # The re-fire came after the resolve, so it cancels the held resolve (a flap), as it would
        # have done had the two arrived a second apart.
        assert (await refire) == {"incident_id": flapping["incident_id"], "notice_id": None, "action": "duplicate"}
        store = client.app[appkeys.STORE]
        held = await count(store, alert_groups, alert_groups.c.pending_due_at.is_not(None))
        assert held == 0
        assert await count(store, inbound_events) == 6
    finally:
        await locker.dispose()
