"""Alertmanager tells Herald about alerts; partners hear about incidents once, not about every re-send."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from sqlalchemy import func, select

from service import appkeys
from service.app import create_app
from service.store.tables import alert_groups, deliveries, inbound_events, incidents, notices
from tests.helpers import ROOT, auth, make_settings, wait_until

FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    body = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    body.update(copy.deepcopy(changes))
    return body


def firing(**changes: Any) -> dict[str, Any]:
    return payload("firing_critical", **changes)


def resolved(**changes: Any) -> dict[str, Any]:
    return payload("resolved_critical", **changes)


def as_warning(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["groupKey"] = body["groupKey"].replace("critical", "warning")
    for labels in [body["commonLabels"], *(a["labels"] for a in body["alerts"])]:
        labels["severity"] = "warning"
    return body


async def start(aiohttp_client: Any, sqlite_url: str, **ingest: Any) -> Any:
    """Herald with the example partner directory, so published notices become deliveries."""
    settings = make_settings(sqlite_url, directory={"import_on_start": True}, ingest=ingest)
    return await aiohttp_client(create_app(settings))


async def post(client: Any, body: Any, expect: int = 202) -> Any:
    response = await client.post("/v1/webhooks/alertmanager", json=body, headers=auth("ingest"))
    assert response.status == expect, await response.text()
    return await response.json()


async def count(client: Any, table: Any, *where: Any) -> int:
    async with client.app[appkeys.STORE].read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)))


async def timeline(client: Any, incident_id: int) -> list[tuple[str, str]]:
    response = await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))
    body = await response.json()
    return [(n["kind"], n["state"]) for n in body["timeline"]]


async def incident(client: Any, incident_id: int) -> dict[str, Any]:
    return await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()


async def test_critical_alert_publishes_initial_notice_automatically(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url)
    reply = await post(client, firing())
    assert reply["action"] == "opened" and reply["notice_id"]
    body = await incident(client, reply["incident_id"])
    assert body["severity"] == "critical" and body["status"] == "investigating"
    assert body["components"] == ["order-api"]
    # Partners read the service affected, not the alert's own summary or description.
    assert body["title"] == {"ja": "受発注APIの障害", "en": "Disruption to Ordering API"}
    notice = body["timeline"][0]
    assert (notice["kind"], notice["state"]) == ("initial", "published")
    assert notice["fields"]["summary"]["en"].startswith(
        "We are experiencing a critical disruption affecting Ordering API"
    )
    assert notice["fields"]["responsible"]["name"] == {"ja": "運用センター", "en": "Operations Center"}
    assert notice["fields"]["outlook"]["ja"] and notice["fields"]["next_update_at"]
    assert await count(client, deliveries, deliveries.c.notice_id == reply["notice_id"]) > 0
    await wait_until(lambda: count(client, deliveries, deliveries.c.status == "sent"))


async def test_major_alert_waits_as_a_draft_until_an_operator_publishes(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url)
    reply = await post(client, as_warning(firing()))
    assert reply["action"] == "opened"
    assert (await incident(client, reply["incident_id"]))["severity"] == "major"
    assert await count(client, deliveries) == 0
    drafts = await (await client.get("/v1/notices/drafts", headers=auth("operator"))).json()
    assert [d["id"] for d in drafts["items"]] == [reply["notice_id"]]

    published = await client.post(f"/v1/notices/{reply['notice_id']}/publish", headers=auth("operator"))
    assert published.status == 202, await published.text()
    assert await timeline(client, reply["incident_id"]) == [("initial", "published")]
    assert await count(client, deliveries, deliveries.c.notice_id == reply["notice_id"]) > 0


async def test_repeated_firing_alert_does_not_renotify_partners(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url)
    first = await post(client, firing())
    planned = await count(client, deliveries)
    assert planned > 0
    for _ in range(3):  # Alertmanager re-sends the firing group every repeat_interval
        again = await post(client, firing())
        assert again == {"incident_id": first["incident_id"], "notice_id": None, "action": "duplicate"}
    assert await count(client, incidents) == 1
    assert await timeline(client, first["incident_id"]) == [("initial", "published")]
    assert await count(client, deliveries) == planned
    assert await count(client, inbound_events, inbound_events.c.source == "alertmanager") == 4


async def test_resolved_group_resolves_the_incident_after_the_flap_window(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url, flap_window=0.2, flush_interval=0.05)
    opened = await post(client, firing())
    held = await post(client, resolved())
    assert held == {"incident_id": opened["incident_id"], "notice_id": None, "action": "held"}
    assert await post(client, resolved()) == {**held, "action": "duplicate"}  # a repeated resolve

    async def is_resolved() -> bool:
        return (await incident(client, opened["incident_id"]))["status"] == "resolved"

    await wait_until(is_resolved)
    assert await timeline(client, opened["incident_id"]) == [("initial", "published"), ("resolved", "published")]


async def test_flapping_alert_collapses_into_one_update(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url, flap_window=60)
    opened = await post(client, firing())
    planned = await count(client, deliveries)
    actions = [(await post(client, body))["action"] for body in (resolved(), firing(), resolved(), firing())]
    assert actions == ["held", "duplicate", "held", "duplicate"]
    body = await incident(client, opened["incident_id"])
    assert body["status"] == "investigating"
    assert await timeline(client, opened["incident_id"]) == [("initial", "published")]
    assert await count(client, incidents) == 1
    assert await count(client, deliveries) == planned
    async with client.app[appkeys.STORE].read() as conn:
        group = (await conn.execute(select(alert_groups))).mappings().one()
    assert group["state"] == "firing" and group["pending"] is None
    assert [state for _, state in group["transitions"]] == ["firing", "resolved", "firing", "resolved", "firing"]


async def test_flap_that_stays_resolved_sends_one_resolved_notice(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url, flap_window=0.3, flush_interval=0.05)
    opened = await post(client, firing())
    for body in (resolved(), firing(), resolved()):
        await post(client, body)

    async def settled() -> bool:
        return (await incident(client, opened["incident_id"]))["status"] == "resolved"

    await wait_until(settled)
    assert await timeline(client, opened["incident_id"]) == [("initial", "published"), ("resolved", "published")]


async def test_held_resolve_survives_a_restart(aiohttp_client: Any, sqlite_url: str) -> None:
    first = await start(aiohttp_client, sqlite_url, flap_window=0.2, flush_interval=3600)
    opened = await post(first, firing())
    assert (await post(first, resolved()))["action"] == "held"
    await first.close()  # Herald stops before the flusher's next pass

    second = await start(aiohttp_client, sqlite_url, flap_window=0.2, flush_interval=0.05)

    async def resolved_after_restart() -> bool:
        return (await incident(second, opened["incident_id"]))["status"] == "resolved"

    await wait_until(resolved_after_restart)


async def test_alert_firing_again_after_resolution_opens_a_new_incident(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url, flap_window=0)
    first = await post(client, firing())
    assert (await post(client, resolved()))["action"] == "resolved"
    second = await post(client, firing())
    assert second["action"] == "opened" and second["incident_id"] != first["incident_id"]
    assert await count(client, incidents) == 2


async def test_new_alerts_joining_a_published_incident_send_a_progress_notice(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, sqlite_url)
    opened = await post(client, firing())
    grown = firing()
    extra = copy.deepcopy(grown["alerts"][0])
    extra["labels"].update(component="payments", instance="payments-1:8080")
    extra["fingerprint"] = "7a7a7a7a7a7a7a7a"
    grown["alerts"].append(extra)
    grown["commonLabels"].pop("component")
    reply = await post(client, grown)
    assert reply["action"] == "updated" and reply["notice_id"]
    body = await incident(client, opened["incident_id"])
    assert body["components"] == ["order-api", "payments"]
    assert [(n["kind"], n["state"]) for n in body["timeline"]] == [("initial", "published"), ("progress", "published")]
    assert "Ordering API and Payments" in body["timeline"][1]["fields"]["current_status"]["en"]
    assert (await post(client, grown))["action"] == "duplicate"


async def test_new_alerts_joining_a_draft_incident_update_it_silently(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url)
    two = payload("firing_warning_two_alerts")
    one = copy.deepcopy(two)
    one["alerts"] = one["alerts"][:1]
    opened = await post(client, one)
    assert (await incident(client, opened["incident_id"]))["components"] == ["edi-gateway"]
    reply = await post(client, two)
    assert reply == {"incident_id": opened["incident_id"], "notice_id": None, "action": "updated"}
    body = await incident(client, opened["incident_id"])
    assert body["components"] == ["edi-gateway", "payments"]
    assert [(n["kind"], n["state"]) for n in body["timeline"]] == [("initial", "draft")]
    assert await count(client, deliveries) == 0


async def test_critical_alert_joining_a_major_draft_incident_publishes_it(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url)
    major = as_warning(firing())
    opened = await post(client, major)
    graver = copy.deepcopy(major)
    critical = copy.deepcopy(firing()["alerts"][0])
    critical["fingerprint"] = "1c1c1c1c1c1c1c1c"
    graver["alerts"].append(critical)
    reply = await post(client, graver)
    assert reply["action"] == "updated" and reply["notice_id"] == opened["notice_id"]
    body = await incident(client, opened["incident_id"])
    assert body["severity"] == "critical"
    assert [(n["kind"], n["state"], n["severity"]) for n in body["timeline"]] == [("initial", "published", "critical")]


async def test_resolving_a_never_published_incident_keeps_the_resolved_notice_for_operators_only(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, sqlite_url, flap_window=0)
    opened = await post(client, as_warning(firing()))
    reply = await post(client, as_warning(resolved()))
    assert reply["action"] == "resolved"
    assert await timeline(client, opened["incident_id"]) == [("initial", "draft"), ("resolved", "held")]
    drafts = await (await client.get("/v1/notices/drafts", headers=auth("operator"))).json()
    assert [n["kind"] for n in drafts["items"]] == ["initial"], "only the first notice waits to be published"
    assert await count(client, deliveries) == 0


async def test_alerts_keep_firing_after_an_operator_resolved_the_incident(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url, flap_window=0)
    opened = await post(client, firing())
    closing = {"status": "resolved", "notice": {"fields": {"summary": {"ja": "復旧しました", "en": "Recovered"}}}}
    response = await client.post(
        f"/v1/incidents/{opened['incident_id']}/updates", json=closing, headers=auth("operator")
    )
    assert response.status == 202, await response.text()
    assert (await post(client, firing()))["action"] == "duplicate"
    assert (await post(client, resolved()))["action"] == "duplicate"
    assert await timeline(client, opened["incident_id"]) == [("initial", "published"), ("resolved", "published")]
    assert (await post(client, firing()))["action"] == "opened"


async def test_fingerprint_mode_opens_one_incident_per_alert(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url, incident_per="fingerprint")
    replies = await post(client, payload("firing_warning_two_alerts"))
    assert [r["action"] for r in replies] == ["opened", "opened"]
    components = [(await incident(client, r["incident_id"]))["components"] for r in replies]
    assert components == [["edi-gateway"], ["payments"]]
    again = await post(client, payload("firing_warning_two_alerts"))
    assert [r["action"] for r in again] == ["duplicate", "duplicate"]


async def test_resolve_for_an_unknown_group_changes_nothing(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, sqlite_url)
    assert await post(client, resolved()) == {"incident_id": None, "notice_id": None, "action": "duplicate"}
    assert await count(client, incidents) == 0
    assert await count(client, notices) == 0


async def test_alert_lifecycle_is_the_same_on_each_backend(aiohttp_client: Any, db_url: str) -> None:
    """Open, re-send, flap, settle: on SQLite and on PostgreSQL (row locks, savepoints)."""
    # The re-fire must come inside the flap window even on a busy machine: two seconds is ample.
    client = await start(aiohttp_client, db_url, flap_window=2.0, flush_interval=0.05)
    replies = [await post(client, body) for body in (firing(), firing(), resolved(), firing(), resolved())]
    assert [r["action"] for r in replies] == ["opened", "duplicate", "held", "duplicate", "held"]
    incident_id = replies[0]["incident_id"]

    async def settled() -> bool:
        return (await incident(client, incident_id))["status"] == "resolved"

    await wait_until(settled)
    assert await timeline(client, incident_id) == [("initial", "published"), ("resolved", "published")]
    assert await count(client, inbound_events) == 5


async def test_simultaneous_first_firings_open_one_incident(aiohttp_client: Any, db_url: str) -> None:
    client = await start(aiohttp_client, db_url)
    replies = await asyncio.gather(*(post(client, firing()) for _ in range(20)))
    assert sorted(r["action"] for r in replies).count("opened") == 1
    assert {r["incident_id"] for r in replies} == {replies[0]["incident_id"]}
    assert await count(client, incidents) == 1
    assert await count(client, notices) == 1
