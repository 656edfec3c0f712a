"""Hostile or careless input gets a 4xx naming the field at accept time, never a 500 later."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from service import appkeys
from service.store.tables import deliveries, inbound_events, incidents
from tests.helpers import ROOT, auth, make_settings
from tests.helpers.incidents import in_an_hour

# The sample incident, promising its next update an hour from now (a promise must lie ahead).
SAMPLE = {**json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8")), "next_update_at": in_an_hour()}
OPERATOR = {**auth("operator"), "Content-Type": "application/json"}
ADMIN = {**auth("admin"), "Content-Type": "application/json"}
TOO_BIG = str(2**64 + 1)


@pytest.fixture
async def backend_client(aiohttp_client: Any, db_url: str) -> Any:
    """The whole service on SQLite, then on PostgreSQL."""
    from service.app import create_app

    return await aiohttp_client(create_app(make_settings(db_url)))


def sample(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLE)
    body.update(changes)
    return body


async def refused(response: Any, status: int, field: str | None) -> dict[str, Any]:
    body = await response.json()
    assert response.status == status, body
    assert body["field"] == field, body
    assert body["error"] and body["detail"], body
    return body


async def incident_count(client: Any) -> int:
    async with client.app[appkeys.STORE].read() as conn:
        return int((await conn.execute(select(func.count()).select_from(incidents))).scalar_one())


async def test_an_email_that_could_never_be_a_reply_to_is_refused_when_the_incident_is_opened(client: Any) -> None:
    responsible = {**SAMPLE["responsible"], "email": "ops at example"}
    response = await client.post("/v1/incidents", json=sample(responsible=responsible), headers=OPERATOR)
    await refused(response, 422, "responsible.email")
    assert await incident_count(client) == 0


async def test_a_phone_number_nobody_can_dial_is_refused_in_a_notice(client: Any) -> None:
    notice = copy.deepcopy(SAMPLE["notice"])
    notice["fields"]["responsible"] = {"name": "当番", "phone": "+81 0"}
    response = await client.post("/v1/incidents", json=sample(notice=notice), headers=OPERATOR)
    await refused(response, 422, "notice.fields.responsible.phone")


@pytest.mark.parametrize(
    "where, body_of, field",
    [
        ("title", lambda text: sample(title=text), "title"),
        ("impact in English", lambda text: sample(impact={"ja": "影響", "en": text}), "impact.en"),
        (
            "a notice field",
            lambda text: sample(notice={**SAMPLE["notice"], "fields": {**SAMPLE["notice"]["fields"], "summary": text}}),
            "notice.fields.summary",
        ),
    ],
)
async def test_a_lone_surrogate_in_text_is_refused_before_any_delivery_is_planned(
    client: Any, where: str, body_of: Any, field: str
) -> None:
    # json.dumps writes the lone surrogate as the escape "\ud800", which JSON parsers accept.
    raw = json.dumps(body_of("障害 \ud800 発生"))
    response = await client.post("/v1/incidents", data=raw, headers=OPERATOR)
    await refused(response, 422, field)
    async with client.app[appkeys.STORE].read() as conn:
        assert (await conn.execute(select(func.count()).select_from(deliveries))).scalar_one() == 0


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\r", "\x7f", "\x85"])
async def test_control_characters_other_than_newline_and_tab_are_refused_in_message_text(
    client: Any, char: str
) -> None:
    notice = copy.deepcopy(SAMPLE["notice"])
    notice["fields"]["summary"] = f"line one{char}line two"
    response = await client.post("/v1/incidents", json=sample(notice=notice), headers=OPERATOR)
    await refused(response, 422, "notice.fields.summary")


async def test_newlines_and_tabs_are_kept_in_message_text(client: Any) -> None:
    notice = copy.deepcopy(SAMPLE["notice"])
    notice["fields"]["summary"] = {"ja": "一行目\n\t二行目", "en": "line one\n\tline two"}
    response = await client.post("/v1/incidents", json=sample(notice=notice), headers=OPERATOR)
    assert response.status == 202, await response.text()


async def test_text_beyond_its_length_bound_is_refused(client: Any) -> None:
    response = await client.post("/v1/incidents", json=sample(title="長" * 301), headers=OPERATOR)
    await refused(response, 422, "title")


async def test_json_nested_three_thousand_levels_deep_is_a_400_not_a_500(client: Any) -> None:
    raw = '{"title": ' + "[" * 3000 + "]" * 3000 + "}"
    response = await client.post("/v1/incidents", data=raw, headers=OPERATOR)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "too_deep"


async def test_json_deeper_than_the_bound_is_refused_naming_where(client: Any) -> None:
    nested: Any = "x"
    for _ in range(40):
        nested = {"a": nested}
    response = await client.post("/v1/incidents", json=sample(estimates=nested), headers=OPERATOR)
    body = await refused(response, 422, "estimates" + ".a" * 32)
    assert body["error"] == "too_deep"


async def test_not_a_number_and_infinity_are_not_json(client: Any) -> None:
    raw = json.dumps(sample(estimates={"cost": 1.0})).replace("1.0", "NaN")
    response = await client.post("/v1/incidents", data=raw, headers=OPERATOR)
    assert response.status == 400, await response.text()
    raw = json.dumps(sample(estimates={"cost": 1.0})).replace("1.0", "1e999")
    response = await client.post("/v1/incidents", data=raw, headers=OPERATOR)
    await refused(response, 422, "estimates.cost")


@pytest.mark.parametrize(
    "method, path, scope",
    [
        ("GET", "/v1/incidents/{id}", "operator"),
        ("POST", "/v1/incidents/{id}/updates", "operator"),
        ("GET", "/v1/incidents/{id}/report", "operator"),
        ("GET", "/v1/incidents/{id}/summary", "admin"),
        ("GET", "/v1/notices/{id}/summary", "admin"),
        ("POST", "/v1/notices/{id}/publish", "operator"),
        ("GET", "/v1/deliveries/{id}", "admin"),
        ("POST", "/v1/deliveries/{id}/retry", "admin"),
    ],
)
async def test_an_id_beyond_64_bits_names_nothing(backend_client: Any, method: str, path: str, scope: str) -> None:
    headers = {**auth(scope), "Content-Type": "application/json"}
    response = await backend_client.request(method, path.format(id=TOO_BIG), data="{}", headers=headers)
    await refused(response, 404, None)


async def test_a_cursor_beyond_its_bound_is_a_400(client: Any) -> None:
    response = await client.get(f"/v1/incidents?cursor={TOO_BIG}", headers=OPERATOR)
    await refused(response, 400, "cursor")


async def test_an_acknowledgement_token_with_a_non_ascii_signature_is_refused(client: Any) -> None:
    for method in ("GET", "POST"):
        response = await client.request(method, "/ack/1.9999999999.%E7%BD%B2%E5%90%8D")
        assert response.status == 403, await response.text()


@pytest.mark.parametrize("name", ["株式会社\x00みなと", "み\ud800なと"])
async def test_a_nul_or_a_lone_surrogate_in_a_partner_name_is_refused_on_both_databases(
    backend_client: Any, name: str
) -> None:
    body = {"id": "minato", "name": name, "language": "ja"}
    response = await backend_client.post("/v1/partners", data=json.dumps(body), headers=ADMIN)
    await refused(response, 422, "name")
    missing = await backend_client.get("/v1/partners/minato", headers=ADMIN)
    assert missing.status == 404


async def test_a_nul_in_a_query_or_a_path_is_refused_on_both_databases(backend_client: Any) -> None:
    response = await backend_client.get("/v1/incidents?component=api%00x", headers=OPERATOR)
    await refused(response, 400, "component")
    response = await backend_client.get("/v1/partners/minato%00x", headers=ADMIN)
    await refused(response, 404, None)


INGEST = {**auth("ingest"), "Content-Type": "application/json"}


async def rejected_bodies(client: Any) -> list[str]:
    async with client.app[appkeys.STORE].read() as conn:
        rows = await conn.execute(select(inbound_events.c.body, inbound_events.c.outcome).order_by(inbound_events.c.id))
        return [body for body, outcome in rows if outcome.startswith("rejected:")]


async def test_a_nul_anywhere_in_a_webhook_is_refused_and_the_body_kept(backend_client: Any) -> None:
    payload = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing_critical.json").read_text("utf-8"))
    payload["commonLabels"]["team\x00"] = "x"
    response = await backend_client.post("/v1/webhooks/alertmanager", data=json.dumps(payload), headers=INGEST)
    await refused(response, 422, "commonLabels")
    raw_nul = b'{"version": "4", "status": "firing\x00"}'
    response = await backend_client.post("/v1/webhooks/alertmanager", data=raw_nul, headers=INGEST)
    await refused(response, 400, None)
    kept = await rejected_bodies(backend_client)
    assert len(kept) == 2 and "firing\ufffd" in kept[1]


async def raw_request(client: Any, head: bytes) -> bytes:
    """Send bytes no HTTP client library would (a header that is not UTF-8) and read the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(head + b"Host: herald\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return status


async def test_a_bearer_token_that_is_not_utf8_is_a_401(client: Any) -> None:
    status = await raw_request(client, b"POST /v1/incidents HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n")
    assert status.startswith(b"HTTP/1.1 401"), status


async def test_an_idempotency_key_that_is_not_ascii_is_a_400(client: Any) -> None:
    token = auth("operator")["Authorization"].encode()
    head = b"POST /v1/incidents HTTP/1.1\r\nAuthorization: " + token + b"\r\nIdempotency-Key: \xff\r\n"
    assert (await raw_request(client, head)).startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("component", ["order\x1bapi", "c" * 65])
async def test_an_alert_whose_component_no_message_could_carry_is_refused_naming_the_label(
    client: Any, component: str
) -> None:
    payload = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing_critical.json").read_text("utf-8"))
    for alert in payload["alerts"]:
        alert["labels"]["component"] = component
    response = await client.post("/v1/webhooks/alertmanager", data=json.dumps(payload), headers=INGEST)
    await refused(response, 422, "alerts[].labels.component")
