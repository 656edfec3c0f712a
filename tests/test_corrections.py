"""Corrections: a wrong notice is corrected openly, to everyone who received it, saying what changed."""

from __future__ import annotations

from typing import Any

from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import all_final, post_sample, rows, start, wired_settings

AUDIENCE = {"partners": ["minato-shoji", "tokai-logistics"], "tiers": [1, 2]}
NEW_IMPACT = {
    "ja": "受発注API経由の発注登録の約10%がタイムアウトしています。",
    "en": "About 10% of order submissions time out.",
}


async def correct(client: Any, notice_id: int, fields: dict[str, Any], status: int = 202) -> dict[str, Any]:
    response = await client.post(
        f"/v1/notices/{notice_id}/corrections", json={"fields": fields}, headers=auth("operator")
    )
    assert response.status == status, await response.text()
    return await response.json()


def reached(found: list[dict[str, Any]]) -> set[tuple[int, str, str]]:
    return {(r["contact_id"], r["channel"], r["address"]) for r in found}


async def test_a_correction_goes_to_everyone_the_notice_reached_marked_and_naming_what_changed(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(db_url, smtp_sink, twilio_fake))
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", on="RCPT")
    first = await post_sample(client, notice={**SAMPLE["notice"], "audience": AUDIENCE})
    await wait_until(lambda: all_final(client), timeout=30)
    original = await rows(client, deliveries.c.notice_id == first["notice_id"])
    refused = [r for r in original if r["status"] == "failed"]
    assert len(refused) == 1

    reply = await correct(client, first["notice_id"], {"impact": NEW_IMPACT})

    assert reply["version"] == 2 and reply["state"] == "published"
    corrections = await rows(client, deliveries.c.notice_id == reply["notice_id"])
    assert reached(corrections) == reached(original) - reached(refused)
    assert reply["deliveries"]["total"] == len(corrections)
    await wait_until(lambda: all_final(client), timeout=30)
    ids = {r["message_id"] for r in corrections}
    mails = [m.message for m in smtp_sink.messages if m.message["Message-ID"] in ids]
    assert mails and all(str(m["Subject"]).startswith(("【訂正】", "[Correction]")) for m in mails)
    japanese = next(m for m in mails if str(m["Subject"]).startswith("【訂正】")).get_body(("plain",)).get_content()
    assert "第1報の内容を訂正するものです" in japanese and "訂正箇所：影響範囲" in japanese
    assert NEW_IMPACT["ja"] in japanese
    texts = [r["Body"] for r in twilio_fake.requests if r["To"] in {c["address"] for c in corrections}]
    assert any(body.startswith("【訂正】") for body in texts), texts

    timeline = (await (await client.get(f"/v1/incidents/{first['incident_id']}", headers=auth("operator"))).json())[
        "timeline"
    ]
    assert timeline[1]["corrects_id"] == first["notice_id"] and timeline[1]["fields"]["corrected"] == ["impact"]
    assert timeline[1]["fields"]["summary"] == SAMPLE["notice"]["fields"]["summary"], "unchanged fields carry over"

    report = await (await client.get(f"/v1/incidents/{first['incident_id']}/report", headers=auth("operator"))).json()
    assert report["notices"][1]["corrections"] == [{"field": "impact", "before": SAMPLE["impact"], "after": NEW_IMPACT}]
    html = await (
        await client.get(f"/v1/incidents/{first['incident_id']}/report?format=html", headers=auth("operator"))
    ).text()
    assert "What this correction changed" in html and NEW_IMPACT["ja"] in html


async def test_a_correction_must_change_something_and_only_a_sent_notice_can_be_corrected(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, make_settings(sqlite_url))
    first = await post_sample(client, notice={**SAMPLE["notice"], "audience": AUDIENCE})

    same = await correct(client, first["notice_id"], {"impact": SAMPLE["impact"]}, status=422)
    assert same["error"] == "nothing_to_correct" and same["field"] == "fields"
    bad = await correct(client, first["notice_id"], {"impact": "  "}, status=422)
    assert bad["field"] == "fields.impact"
    past = await correct(client, first["notice_id"], {"next_update_at": "2020-01-01T00:00:00Z"}, status=422)
    assert past["field"] == "fields.next_update_at"
    assert (await correct(client, 999, {"impact": "x"}, status=404))["error"] == "not_found"

    draft = await client.post(
        "/v1/incidents",
        json={**SAMPLE, "next_update_at": "2099-01-01T00:00:00Z", "notice": {**SAMPLE["notice"], "publish": False}},
        headers=auth("operator"),
    )
    refused = await correct(client, (await draft.json())["notice_id"], {"impact": "x"}, status=409)
    assert refused["error"] == "not_published"


async def test_correcting_the_next_update_time_moves_the_promise(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, make_settings(sqlite_url))
    first = await post_sample(client, notice={**SAMPLE["notice"], "audience": AUDIENCE})

    await correct(client, first["notice_id"], {"next_update_at": "2099-01-01T09:00:00+09:00"})

    found = await (await client.get(f"/v1/incidents/{first['incident_id']}", headers=auth("operator"))).json()
    assert [(p["notice_id"], p["state"], p["due_at"]) for p in found["promises"]] == [
        (first["notice_id"], "pending", "2099-01-01T00:00:00Z")
    ]
