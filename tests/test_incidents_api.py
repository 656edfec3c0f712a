"""Operators open and update incidents over HTTP; partners hear about each state change once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from service import appkeys
from service.store.tables import deliveries, inbound_events
from tests.helpers import auth
from tests.helpers.incidents import SAMPLE, incident, open_incident


def update(status: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"notice": {"fields": {"current_status": "作業中です", **fields}}}
    if status:
        body["status"] = status
    if status == "resolved":
        body["notice"]["fields"] = {"summary": "復旧しました / Recovered"}
    if status == "recovery_failed":
        body["notice"]["fields"].update(summary="失敗", next_steps="切り戻します")
    return body


async def test_operator_opens_an_incident_and_its_initial_notice_is_version_1(client: Any) -> None:
    opened = await open_incident(client)
    response = await client.get(f"/v1/incidents/{opened['incident_id']}", headers=auth("operator"))
    body = await response.json()
    assert body["status"] == "investigating"
    assert body["severity"] == "critical"
    assert [(n["kind"], n["version"], n["state"]) for n in body["timeline"]] == [("initial", 1, "published")]
    assert body["timeline"][0]["fields"]["responsible"]["email"] == "incident-desk@example.com"


async def test_recovery_follows_the_state_machine_and_each_step_is_a_new_version(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    for status in ("identified", "recovering", "monitoring", "resolved"):
        response = await client.post(
            f"/v1/incidents/{incident_id}/updates", json=update(status), headers=auth("operator")
        )
        assert response.status == 202, await response.text()
    body = await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()
    assert body["status"] == "resolved" and body["resolved_at"]
    timeline = [(n["version"], n["kind"], n["fields"].get("stage")) for n in body["timeline"]]
    assert timeline == [
        (1, "initial", None),
        (2, "progress", "progress"),
        (3, "progress", "started"),
        (4, "progress", "completed"),
        (5, "resolved", None),
    ]
    assert "next_update_at" in body["timeline"][3]["fields"]
    assert "next_update_at" not in body["timeline"][4]["fields"], "a resolved notice promises no next update"


@pytest.mark.parametrize(
    "path, bad",
    [
        (["investigating", "resolved"], "recovering"),
        (["investigating", "recovering"], "identified"),
        (["investigating"], "investigating-never"),
    ],
)
async def test_invalid_transition_is_409(client: Any, path: list[str], bad: str) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    for status in path[1:]:
        response = await client.post(
            f"/v1/incidents/{incident_id}/updates", json=update(status), headers=auth("operator")
        )
        assert response.status == 202
    response = await client.post(f"/v1/incidents/{incident_id}/updates", json=update(bad), headers=auth("operator"))
    body = await response.json()
    if bad.endswith("-never"):
        assert response.status == 422 and body["field"] == "status"
    else:
        assert response.status == 409
        assert body["error"] == "invalid_transition" and body["field"] == "status"


async def test_recovery_failure_can_be_retried(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    for status, expected in (("recovering", 202), ("recovery_failed", 202), ("recovering", 202), ("resolved", 202)):
        response = await client.post(
            f"/v1/incidents/{incident_id}/updates", json=update(status), headers=auth("operator")
        )
        assert response.status == expected, await response.text()


async def open_draft(client: Any) -> dict[str, Any]:
    body = incident(notice={**SAMPLE["notice"], "publish": False})
    response = await client.post("/v1/incidents", json=body, headers=auth("operator"))
    assert response.status == 201, await response.text()
    return await response.json()


@pytest.mark.parametrize("after", ["resolved", "recovering"])
async def test_after_a_failed_recovery_the_incident_can_resolve_or_recover_again(client: Any, after: str) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    for status in ("recovering", "recovery_failed", after):
        response = await client.post(
            f"/v1/incidents/{incident_id}/updates", json=update(status), headers=auth("operator")
        )
        assert response.status == 202, await response.text()
    body = await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()
    assert body["status"] == after and body["timeline"][-1]["status"] == after


async def test_changes_to_an_incident_partners_never_heard_of_are_kept_for_operators_not_drafted(
    client: Any,
) -> None:
    opened = await open_draft(client)
    incident_id = opened["incident_id"]
    held = await client.post(
        f"/v1/incidents/{incident_id}/updates", json=update("identified"), headers=auth("operator")
    )
    assert held.status == 200 and (await held.json())["state"] == "held"
    resolved = await client.post(
        f"/v1/incidents/{incident_id}/updates", json=update("resolved"), headers=auth("operator")
    )
    assert (await resolved.json())["state"] == "held"

    drafts = await (await client.get("/v1/notices/drafts", headers=auth("operator"))).json()
    assert [n["id"] for n in drafts["items"]] == [opened["notice_id"]]
    body = await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()
    assert [(n["kind"], n["state"]) for n in body["timeline"]] == [
        ("initial", "draft"),
        ("progress", "held"),
        ("resolved", "held"),
    ]
    refused = await client.post(f"/v1/notices/{body['timeline'][2]['id']}/publish", headers=auth("operator"))
    assert refused.status == 409 and (await refused.json())["error"] == "held"


async def test_once_the_first_notice_is_published_later_changes_reach_partners_again(client: Any) -> None:
    opened = await open_draft(client)
    incident_id = opened["incident_id"]
    published = await client.post(f"/v1/notices/{opened['notice_id']}/publish", headers=auth("operator"))
    assert published.status == 202, await published.text()
    response = await client.post(
        f"/v1/incidents/{incident_id}/updates", json=update("identified"), headers=auth("operator")
    )
    assert response.status == 202 and (await response.json())["state"] == "published"


async def test_a_retried_post_with_the_same_idempotency_key_returns_the_first_answer(client: Any) -> None:
    headers = {**auth("operator"), "Idempotency-Key": "incident-2026-11-25-order-api"}
    body = incident()
    first = await client.post("/v1/incidents", json=body, headers=headers)
    second = await client.post("/v1/incidents", json=body, headers=headers)
    assert first.status == second.status == 202
    assert await first.json() == await second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    listing = await (await client.get("/v1/incidents", headers=auth("operator"))).json()
    assert len(listing["items"]) == 1


async def test_an_idempotency_key_reused_for_a_different_request_is_refused(client: Any) -> None:
    headers = {**auth("operator"), "Idempotency-Key": "k-1"}
    assert (await client.post("/v1/incidents", json=incident(), headers=headers)).status == 202
    response = await client.post("/v1/incidents", json=incident(severity="minor"), headers=headers)
    assert response.status == 422
    assert (await response.json())["field"] == "Idempotency-Key"


async def test_the_raw_event_is_persisted_with_the_incident(client: Any) -> None:
    opened = await open_incident(client)
    async with client.app[appkeys.STORE].read() as conn:
        row = (await conn.execute(select(inbound_events))).mappings().one()
    assert row["incident_id"] == opened["incident_id"]
    assert json.loads(row["body"])["title"]["en"] == SAMPLE["title"]["en"]
    assert row["principal"] == "operator"


@pytest.mark.parametrize(
    "scope, method, path, expected",
    [
        (None, "post", "/v1/incidents", 401),
        ("ingest", "post", "/v1/incidents", 403),
        ("ingest", "get", "/v1/incidents", 403),
        ("operator", "get", "/v1/incidents", 200),
        ("admin", "get", "/v1/incidents", 200),
    ],
)
async def test_tokens_need_the_right_scope(
    client: Any, scope: str | None, method: str, path: str, expected: int
) -> None:
    headers = auth(scope) if scope else {}
    response = await getattr(client, method)(path, json=incident() if method == "post" else None, headers=headers)
    assert response.status == expected
    if expected >= 400:
        assert set(await response.json()) == {"error", "detail", "field"}


async def test_a_wrong_token_is_401_and_health_is_open(client: Any) -> None:
    response = await client.get("/v1/incidents", headers={"Authorization": "Bearer nope"})
    assert response.status == 401
    assert (await client.get("/healthz")).status == 200
    assert (await (await client.get("/readyz")).json())["status"] == "ready"


async def test_bad_input_gets_a_clear_4xx_never_a_5xx(client: Any) -> None:
    headers = auth("operator")
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"data": b"{not json", "headers": {**headers, "Content-Type": "application/json"}}, 400, None),
        ({"data": b"title=x", "headers": {**headers, "Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
        ({"json": incident(severity="apocalyptic")}, 422, "severity"),
        ({"json": incident(next_update_at="tomorrow")}, 422, "next_update_at"),
        ({"json": {**incident(), "notice": {"fields": {"summary": "x"}}}}, 422, "notice.fields.current_status"),
        ({"json": {**incident(), "colour": "red"}}, 422, "colour"),
        ({"json": [1, 2]}, 422, None),
        ({"json": incident(responsible={"department": "ops"})}, 422, "responsible.name"),
    ]
    for kwargs, status, field in cases:
        kwargs.setdefault("headers", headers)
        response = await client.post("/v1/incidents", **kwargs)
        body = await response.json()
        assert response.status == status, (kwargs, body)
        if field:
            assert body["field"] == field, body


async def test_a_body_over_the_limit_is_413(aiohttp_client: Any, sqlite_url: str) -> None:
    from service.app import create_app
    from tests.helpers import make_settings

    client = await aiohttp_client(create_app(make_settings(sqlite_url, server={"max_body_bytes": 2048})))
    body = incident(impact="x" * 4096)
    response = await client.post("/v1/incidents", json=body, headers=auth("operator"))
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"


async def test_an_update_of_an_unknown_incident_is_404(client: Any) -> None:
    response = await client.post("/v1/incidents/999/updates", json=update("identified"), headers=auth("operator"))
    assert response.status == 404


async def test_listing_filters_and_pages(client: Any) -> None:
    for severity in ("critical", "major", "minor", "major"):
        await open_incident(client, severity=severity)
    first = await (await client.get("/v1/incidents?severity=major&limit=1", headers=auth("operator"))).json()
    assert [i["severity"] for i in first["items"]] == ["major"]
    second = await (
        await client.get(
            f"/v1/incidents?severity=major&limit=1&cursor={first['next_cursor']}", headers=auth("operator")
        )
    ).json()
    assert [i["severity"] for i in second["items"]] == ["major"]
    assert second["items"][0]["id"] < first["items"][0]["id"]
    bad = await client.get("/v1/incidents?limit=abc", headers=auth("operator"))
    assert bad.status == 400 and (await bad.json())["field"] == "limit"


async def test_a_silent_update_changes_the_incident_without_a_notice(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    response = await client.post(
        f"/v1/incidents/{incident_id}/updates", json={"status": "identified", "notice": None}, headers=auth("operator")
    )
    assert response.status == 200
    body = await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()
    assert body["status"] == "identified" and len(body["timeline"]) == 1


async def test_a_correction_is_a_new_version_that_names_the_corrected_one(client: Any) -> None:
    incident_id = (await open_incident(client))["incident_id"]
    correction = {"notice": {"kind": "initial", "corrects_version": 1, "fields": SAMPLE["notice"]["fields"]}}
    response = await client.post(f"/v1/incidents/{incident_id}/updates", json=correction, headers=auth("operator"))
    assert response.status == 202, await response.text()
    body = await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()
    assert body["timeline"][1]["version"] == 2
    assert body["timeline"][1]["corrects_id"] == body["timeline"][0]["id"]


async def test_incident_with_no_subscribed_partner_plans_no_deliveries(client: Any) -> None:
    opened = await open_incident(client)
    assert opened["deliveries"]["total"] == 0
    async with client.app[appkeys.STORE].read() as conn:
        assert await conn.scalar(select(func.count()).select_from(deliveries)) == 0


async def test_a_draft_can_be_discarded_and_then_never_published(client: Any) -> None:
    body = incident(notice={**SAMPLE["notice"], "publish": False})
    draft = await (await client.post("/v1/incidents", json=body, headers=auth("operator"))).json()
    discarded = await client.post(f"/v1/notices/{draft['notice_id']}/discard", headers=auth("operator"))
    assert discarded.status == 200
    drafts = await (await client.get("/v1/notices/drafts", headers=auth("operator"))).json()
    assert draft["notice_id"] not in [n["id"] for n in drafts["items"]]
    published = await client.post(f"/v1/notices/{draft['notice_id']}/publish", headers=auth("operator"))
    assert published.status == 409
    again = await client.post(f"/v1/notices/{draft['notice_id']}/discard", headers=auth("operator"))
    assert again.status == 409


async def test_honest_recovery_holds_on_both_databases(aiohttp_client: Any, db_url: str) -> None:
    """The state machine's new paths on SQLite and PostgreSQL: a failed recovery that resolves, and
    changes to an incident partners never heard of kept for operators."""
    from service.app import create_app
    from tests.helpers import make_settings

    client = await aiohttp_client(create_app(make_settings(db_url)))
    incident_id = (await open_incident(client))["incident_id"]
    for status in ("recovering", "recovery_failed", "resolved"):
        response = await client.post(
            f"/v1/incidents/{incident_id}/updates", json=update(status), headers=auth("operator")
        )
        assert response.status == 202, await response.text()
    quiet = await open_draft(client)
    held = await client.post(
        f"/v1/incidents/{quiet['incident_id']}/updates", json=update("identified"), headers=auth("operator")
    )
    assert (await held.json())["state"] == "held"
    drafts = await (await client.get("/v1/notices/drafts", headers=auth("operator"))).json()
    assert [n["id"] for n in drafts["items"]] == [quiet["notice_id"]]
