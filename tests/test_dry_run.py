"""An operator previews a notice with ?dry_run=true: the real plan, the exact text, and nothing written."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from service import appkeys
from service.app import create_app
from service.store.tables import metadata
from tests.helpers import ROOT, auth, make_settings

SAMPLE = json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8"))


def incident(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLE)
    body["next_update_at"] = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    body.update(changes)
    return body


@pytest.fixture
async def app_client(aiohttp_client: Any, db_url: str) -> Any:
    """The example directory (20 partners) on both backends; the dispatcher is off so every row
    stays as the request left it."""
    settings = make_settings(db_url, directory={"import_on_start": True}, dispatch={"enabled": False})
    return await aiohttp_client(create_app(settings))


async def row_counts(client: Any) -> dict[str, int]:
    store = client.server.app[appkeys.STORE]
    async with store.read() as conn:
        counts = {
            t.name: int(await conn.scalar(select(func.count()).select_from(t)) or 0) for t in metadata.tables.values()
        }
        counts["alembic_version"] = int(await conn.scalar(text("SELECT count(*) FROM alembic_version")) or 0)
    return counts


async def post(client: Any, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, json=body, headers={**auth("operator"), **headers})
    return response.status, await response.json()


async def test_no_dry_run_writes_a_row_in_any_table(app_client: Any) -> None:
    status, opened = await post(app_client, "/v1/incidents", incident())
    assert status == 202
    status, draft = await post(app_client, "/v1/incidents", incident(notice={**SAMPLE["notice"], "publish": False}))
    assert status == 201 and draft["state"] == "draft"
    before = await row_counts(app_client)
    assert before["deliveries"] > 0 and before["inbound_events"] == 2

    previews = [
        await post(app_client, "/v1/incidents?dry_run=true", incident(), **{"Idempotency-Key": "dry-1"}),
        await post(
            app_client,
            f"/v1/incidents/{opened['incident_id']}/updates?dry_run=true",
            {
                "status": "identified",
                "notice": {"fields": {"current_status": {"ja": "原因を特定しました。", "en": "Found it."}}},
            },
        ),
        await post(
            app_client,
            "/v1/broadcasts?dry_run=true",
            {
                "kind": "custom",
                "fields": {
                    "subject": {"ja": "お知らせ", "en": "Notice"},
                    "body": {"ja": "本文です。", "en": "The body."},
                    "responsible": SAMPLE["responsible"],
                },
            },
        ),
        await post(app_client, f"/v1/notices/{draft['notice_id']}/publish?dry_run=true"),
    ]

    assert [status for status, _ in previews] == [200, 200, 200, 200]
    assert all(body["dry_run"] and body["audience"]["deliveries"] > 0 for _, body in previews)
    assert await row_counts(app_client) == before
    # The draft is still a draft, the incident still investigating.
    detail = await (await app_client.get(f"/v1/incidents/{opened['incident_id']}", headers=auth("operator"))).json()
    assert detail["status"] == "investigating"
    assert [n["state"] for n in detail["timeline"]] == ["published"]


async def test_a_preview_counts_exactly_what_publishing_then_plans(app_client: Any) -> None:
    status, preview = await post(app_client, "/v1/incidents?dry_run=true", incident())
    assert status == 200
    status, published = await post(app_client, "/v1/incidents", incident())
    assert status == 202
    planned = published["deliveries"]
    audience = preview["audience"]
    assert (audience["deliveries"], audience["partners"]) == (planned["total"], planned["partners"])
    assert (audience["by_tier"], audience["by_channel"]) == (planned["by_tier"], planned["by_channel"])
    by_tier_channel = {(int(t), c): n for t, row in audience["by_tier_channel"].items() for c, n in row.items()}
    assert sum(by_tier_channel.values()) == planned["total"]
    assert by_tier_channel[1, "sms"] == planned["by_channel"]["sms"] - sum(
        n for (tier, channel), n in by_tier_channel.items() if channel == "sms" and tier != 1
    )


async def test_the_preview_shows_each_language_as_the_partner_reads_it(app_client: Any) -> None:
    status, preview = await post(app_client, "/v1/incidents?dry_run=true", incident())
    assert status == 200
    assert set(preview["messages"]) == set(preview["audience"]["languages"]) == {"ja", "en"}
    ja, en = preview["messages"]["ja"], preview["messages"]["en"]
    assert "受発注API" in ja["email"]["subject"] and "Order API" in en["email"]["subject"]
    assert "ご担当者名" in ja["email"]["text"] and "<html" in en["email"]["html"].lower()
    assert "/ack/" in ja["sms"]["text"], "tier-1 contacts read an acknowledgement link"
    assert ja["sms"]["encoding"] == "UCS-2" and 1 <= ja["sms"]["segments"] <= ja["sms"]["max_segments"]
    assert ja["sms"]["length"] == len(ja["sms"]["text"])
    sms_deliveries = preview["audience"]["by_channel"]["sms"]
    assert preview["audience"]["sms_segments"] >= sms_deliveries
    assert preview["notice"]["kind"] == "initial" and preview["notice"]["version"] == 1


async def test_warnings_name_missing_language_cut_sms_and_partners_without_tier1(app_client: Any) -> None:
    body = incident()
    body["notice"]["fields"]["current_status"] = "データベースが停止しました。" * 30  # Japanese only, too long for SMS
    body["notice"]["allow_language_fallback"] = True  # else the missing English is a 422, dry run or not
    async with app_client.server.app[appkeys.STORE].begin() as conn:  # a partner whose tier 1 has no address
        await conn.execute(
            text("UPDATE contacts SET email = NULL, phone = NULL WHERE tier = 1 AND partner_id = 'tokai-logistics'")
        )
    status, preview = await post(app_client, "/v1/incidents?dry_run=true", body)
    assert status == 200
    codes = {(w["code"], w.get("field"), w.get("language")) for w in preview["warnings"]}
    assert ("missing_language", "fields.current_status", "en") in codes
    assert any(code == "sms_cut" for code, _, _ in codes)
    assert not any(code.startswith("next_update") for code, _, _ in codes)
    no_tier1 = next(w for w in preview["warnings"] if w["code"] == "no_tier1_contact")
    assert no_tier1["count"] == 1 and no_tier1["partners"][0]["id"] == "tokai-logistics"
    assert preview["messages"]["ja"]["sms"]["segments"] <= preview["messages"]["ja"]["sms"]["max_segments"]


async def test_a_draft_whose_promised_update_has_passed_is_previewed_with_a_warning(app_client: Any) -> None:
    status, draft = await post(app_client, "/v1/incidents", incident(notice={**SAMPLE["notice"], "publish": False}))
    assert status == 201
    async with app_client.server.app[appkeys.STORE].begin() as conn:  # the draft waited too long
        await conn.execute(text("UPDATE notices SET next_update_at = 1000 WHERE id = :id"), {"id": draft["notice_id"]})
    status, preview = await post(app_client, f"/v1/notices/{draft['notice_id']}/publish?dry_run=true")
    assert status == 200
    assert [w["code"] for w in preview["warnings"]] == ["next_update_past"]


async def test_a_dry_run_is_validated_like_the_real_request(app_client: Any) -> None:
    japanese_only = incident()
    japanese_only["notice"]["fields"]["current_status"] = "調査中です。"
    status, error = await post(app_client, "/v1/incidents?dry_run=true", japanese_only)
    assert (status, error["error"]) == (422, "missing_language")
    body = incident()
    del body["notice"]["fields"]["outlook"]
    status, error = await post(app_client, "/v1/incidents?dry_run=true", body)
    assert (status, error["field"]) == (422, "notice.fields.outlook")
    status, error = await post(app_client, "/v1/incidents?dry_run=maybe", incident())
    assert (status, error["field"]) == (400, "dry_run")
    status, error = await post(app_client, "/v1/incidents/999/updates?dry_run=true", {"status": "resolved"})
    assert status == 404


async def test_a_silent_update_previews_no_message(app_client: Any) -> None:
    _, opened = await post(app_client, "/v1/incidents", incident())
    status, preview = await post(
        app_client, f"/v1/incidents/{opened['incident_id']}/updates?dry_run=true", {"severity": "major", "notice": None}
    )
    assert status == 200
    assert preview["notice"] is None and preview["messages"] == {} and preview["warnings"] == []


async def test_the_planners_volume_decisions_show_in_the_preview_as_they_happen(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    settings = make_settings(
        sqlite_url,
        directory={"import_on_start": True},
        dispatch={"enabled": False},
        volume={"sms_cap": 1, "merge_window_seconds": 0},
    )
    client = await aiohttp_client(create_app(settings))
    status, opened = await post(client, "/v1/incidents", incident())
    assert status == 202
    update = {
        "status": "identified",
        "notice": {"fields": {"current_status": {"ja": "特定しました。", "en": "Found."}}},
    }
    path = f"/v1/incidents/{opened['incident_id']}/updates"
    status, preview = await post(client, path + "?dry_run=true", update)
    assert status == 200
    capped = preview["audience"]["by_reason"].get("capped", 0)
    assert capped > 0, preview["audience"]
    status, published = await post(client, path, update)
    assert status == 202
    assert published["deliveries"]["by_reason"] == preview["audience"]["by_reason"]
    assert published["deliveries"]["total"] == preview["audience"]["deliveries"]
