"""Grafana's contact point reaches Herald the same way Alertmanager does."""

from __future__ import annotations

import json
from typing import Any

from service.app import create_app
from tests.helpers import ROOT, auth, make_settings, wait_until

FIXTURES = ROOT / "tests" / "fixtures" / "grafana"
URL = "/v1/webhooks/grafana"


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))


async def test_grafana_alert_opens_and_resolves_an_incident(aiohttp_client: Any, sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, ingest={"flap_window": 0.1, "flush_interval": 0.05})
    client = await aiohttp_client(create_app(settings))
    opened = await (await client.post(URL, json=payload("firing"), headers=auth("ingest"))).json()
    assert opened["action"] == "opened" and opened["notice_id"]
    again = await (await client.post(URL, json=payload("firing"), headers=auth("ingest"))).json()
    assert again["action"] == "duplicate"
    held = await (await client.post(URL, json=payload("resolved"), headers=auth("ingest"))).json()
    assert held["action"] == "held"

    async def incident() -> dict[str, Any]:
        return await (await client.get(f"/v1/incidents/{opened['incident_id']}", headers=auth("operator"))).json()

    first = await incident()
    assert (first["title"], first["severity"], first["components"], first["source"]) == (
        {"ja": "取引先ポータルの障害", "en": "Disruption to Partner portal"},  # the service, not the alert's text
        "critical",
        ["web-portal"],
        "grafana",
    )
    await wait_until(lambda: incident_resolved(incident))
    body = await incident()
    assert [(n["kind"], n["state"]) for n in body["timeline"]] == [("initial", "published"), ("resolved", "published")]


async def incident_resolved(fetch: Any) -> bool:
    return (await fetch())["status"] == "resolved"


async def test_grafana_and_alertmanager_groups_do_not_collide(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(sqlite_url)))
    grafana = payload("firing")
    alertmanager = {**grafana, "version": "4"}
    first = await (await client.post(URL, json=grafana, headers=auth("ingest"))).json()
    second = await (await client.post("/v1/webhooks/alertmanager", json=alertmanager, headers=auth("ingest"))).json()
    assert first["incident_id"] != second["incident_id"]


async def test_grafana_alert_with_bad_values_is_422_with_field_path(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(sqlite_url)))
    bad = payload("firing")
    bad["alerts"][0]["labels"] = ["not", "a", "map"]
    response = await client.post(URL, json=bad, headers=auth("ingest"))
    assert response.status == 422
    assert (await response.json())["field"] == "alerts[0].labels"
