"""Sources authenticate, bad bodies get an answer a sender can act on, and every body is kept."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from service import appkeys
from service.app import create_app
from service.ingest.signatures import sign
from service.store.tables import inbound_events, incidents
from tests.helpers import ROOT, auth, make_settings

FIRING = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing_critical.json").read_text("utf-8"))
SECRET = "hmac-secret-for-tests-0123456789"
HEADER = "X-Herald-Signature"
URL = "/v1/webhooks/alertmanager"


@pytest.fixture
async def client(aiohttp_client: Any, sqlite_url: str) -> Any:
    settings = make_settings(
        sqlite_url,
        auth={"hmac_sources": [{"name": "alertmanager-hmac", "header": HEADER, "secret": SECRET}]},
        server={"max_body_bytes": 64 * 1024},
    )
    return await aiohttp_client(create_app(settings))


async def stored(client: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        rows = (await conn.execute(select(inbound_events).order_by(inbound_events.c.id))).mappings()
        return [dict(r) for r in rows]


async def post_raw(client: Any, body: bytes, headers: dict[str, str]) -> Any:
    return await client.post(URL, data=body, headers={"Content-Type": "application/json", **headers})


async def test_hmac_signed_webhook_is_accepted_and_forged_one_is_401(client: Any) -> None:
    body = json.dumps(FIRING).encode()
    accepted = await post_raw(client, body, {HEADER: sign(SECRET.encode(), body)})
    assert accepted.status == 202, await accepted.text()
    assert (await accepted.json())["action"] == "opened"

    forged = await post_raw(client, body, {HEADER: sign(b"guessed-secret", body)})
    assert forged.status == 401
    tampered = await post_raw(client, body.replace(b"critical", b"warning"), {HEADER: sign(SECRET.encode(), body)})
    assert tampered.status == 401
    malformed = await post_raw(client, body, {HEADER: "sha256=not-hex"})
    assert malformed.status == 401
    events = await stored(client)
    assert [(e["principal"], e["outcome"]) for e in events] == [("alertmanager-hmac", "opened")]


async def test_webhook_without_credentials_is_401_and_operator_token_is_403(client: Any) -> None:
    assert (await client.post(URL, json=FIRING)).status == 401
    assert (await client.post(URL, json=FIRING, headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.post(URL, json=FIRING, headers=auth("operator"))).status == 403


async def test_accepted_webhook_is_stored_raw_with_its_effect(client: Any) -> None:
    body = json.dumps(FIRING, indent=1).encode()
    response = await post_raw(client, body, auth("ingest"))
    reply = await response.json()
    event = (await stored(client))[0]
    assert event["body"].encode() == body
    assert (event["source"], event["principal"], event["outcome"]) == ("alertmanager", "ingest", "opened")
    assert (event["incident_id"], event["notice_id"]) == (reply["incident_id"], reply["notice_id"])


async def test_malformed_payload_is_422_with_field_path(client: Any) -> None:
    bad = json.loads(json.dumps(FIRING))
    bad["alerts"][0]["status"] = "burning"
    response = await client.post(URL, json=bad, headers=auth("ingest"))
    assert response.status == 422
    error = await response.json()
    assert error["error"] == "invalid_field" and error["field"] == "alerts[0].status"
    assert [e["outcome"] for e in await stored(client)] == ["rejected:422"]
    async with client.app[appkeys.STORE].read() as conn:
        assert (await conn.execute(select(incidents))).first() is None


@pytest.mark.parametrize(
    "change, field",
    [
        ({"version": "3"}, "version"),
        ({"alerts": []}, "alerts"),
        ({"groupKey": ""}, "groupKey"),
        ({"alerts": [{"status": "firing", "labels": {"severity": 5}}]}, "alerts[0].labels.severity"),
        ({"alerts": [{"status": "firing", "startsAt": "yesterday"}]}, "alerts[0].startsAt"),
        ({"status": None}, "status"),
    ],
)
async def test_each_invalid_field_is_named(client: Any, change: dict[str, Any], field: str) -> None:
    response = await client.post(URL, json={**FIRING, **change}, headers=auth("ingest"))
    assert response.status == 422
    assert (await response.json())["field"] == field


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
async def test_bad_json_is_400(client: Any, body: bytes) -> None:
    response = await post_raw(client, body, auth("ingest"))
    assert response.status in (400, 422)
    if body:
        assert response.status == 400
        assert (await response.json())["error"] == "malformed_json"


async def test_non_object_json_is_422(client: Any) -> None:
    response = await client.post(URL, json=[FIRING], headers=auth("ingest"))
    assert response.status == 422


async def test_oversized_body_is_413(client: Any) -> None:
    big = json.loads(json.dumps(FIRING))
    big["commonAnnotations"]["description"] = "x" * (70 * 1024)
    response = await client.post(URL, json=big, headers=auth("ingest"))
    assert response.status == 413
    body = json.dumps(big).encode()
    signed = await post_raw(client, body, {HEADER: sign(SECRET.encode(), body)})
    assert signed.status == 413


async def test_wrong_content_type_is_415(client: Any) -> None:
    response = await client.post(URL, data=json.dumps(FIRING), headers={"Content-Type": "text/plain", **auth("ingest")})
    assert response.status == 415
    assert [e["outcome"] for e in await stored(client)] == ["rejected:415"]


async def test_a_webhook_that_fails_inside_a_batch_fails_alone_and_is_kept(client: Any, monkeypatch: Any) -> None:
    from service.ingest import writer

    real = writer.apply_event  # type: ignore[attr-defined]  # the name writer calls, patched below

    async def broken_for_warnings(conn: Any, settings: Any, event: Any, actor: Any, now: float) -> Any:
        if event.severity == "major":
            raise RuntimeError("simulated failure")
        return await real(conn, settings, event, actor, now)

    monkeypatch.setattr(writer, "apply_event", broken_for_warnings)
    warning = json.loads(json.dumps(FIRING).replace("critical", "warning"))
    bad, good = await asyncio.gather(
        client.post(URL, json=warning, headers=auth("ingest")), client.post(URL, json=FIRING, headers=auth("ingest"))
    )
    assert (bad.status, good.status) == (500, 202)
    assert sorted(e["outcome"] for e in await stored(client)) == ["error", "opened"]
