"""A client that retries, or sends the same request six times at once, opens one incident."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from sqlalchemy import func, select

from service import appkeys
from service.store.tables import inbound_events, incidents, notices
from tests.helpers import ROOT, auth, make_settings
from tests.helpers.incidents import in_an_hour

# The sample incident, promising its next update an hour from now (a promise must lie ahead).
SAMPLE = {**json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8")), "next_update_at": in_an_hour()}


async def count(client: Any, table: Any) -> int:
    async with client.app[appkeys.STORE].read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_six_concurrent_requests_with_one_key_open_one_incident_and_get_one_answer(
    aiohttp_client: Any, db_url: str
) -> None:
    """Two Herald processes on one database, three identical requests each, all at the same time."""
    from service.app import create_app

    settings = make_settings(db_url)
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    headers = {**auth("operator"), "Idempotency-Key": "order-api-2026-11-30"}
    body = copy.deepcopy(SAMPLE)

    async def post(client: Any) -> tuple[int, dict[str, Any]]:
        response = await client.post("/v1/incidents", json=body, headers=headers)
        return response.status, await response.json()

    answers = await asyncio.gather(*(post(client) for client in [first, second] * 3))

    assert {status for status, _ in answers} == {202}, answers
    assert len({json.dumps(answer, sort_keys=True) for _, answer in answers}) == 1, answers
    assert await count(first, incidents) == 1
    assert await count(first, notices) == 1
    assert await count(first, inbound_events) == 1


async def test_a_different_body_under_a_used_key_stays_422(client: Any) -> None:
    headers = {**auth("operator"), "Idempotency-Key": "k-reused"}
    first = await client.post("/v1/incidents", json=SAMPLE, headers=headers)
    assert first.status == 202
    other = await client.post("/v1/incidents", json={**SAMPLE, "severity": "minor"}, headers=headers)
    assert other.status == 422
    assert (await other.json())["error"] == "idempotency_key_reused"
    assert await count(client, incidents) == 1


async def test_a_request_refused_with_its_key_leaves_the_key_free_for_the_corrected_one(client: Any) -> None:
    headers = {**auth("operator"), "Idempotency-Key": "k-corrected"}
    wrong = await client.post("/v1/incidents", json={**SAMPLE, "severity": "apocalyptic"}, headers=headers)
    assert wrong.status == 422
    corrected = await client.post("/v1/incidents", json=SAMPLE, headers=headers)
    assert corrected.status == 202, await corrected.text()
    replayed = await client.post("/v1/incidents", json=SAMPLE, headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert await replayed.json() == await corrected.json()


async def test_a_key_that_is_not_visible_ascii_is_a_400(client: Any) -> None:
    for key in ("", "a b", "x" * 256):
        headers = {**auth("operator"), "Idempotency-Key": key}
        response = await client.post("/v1/incidents", json=SAMPLE, headers=headers)
        assert response.status == 400, key
        assert (await response.json())["field"] == "Idempotency-Key"
