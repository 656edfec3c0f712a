"""Promises: "next update at 15:30" is kept, or the on-call operators are reminded before and after."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from service import appkeys
from service.operators import OPERATORS
from service.settings import OnCallContact, Settings
from service.store.tables import deliveries, notices
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import post_sample, rows, start, wired_settings

ON_CALL = [{"name": "当番 運用", "email": "oncall@herald.example.com", "phone": "+819011112222", "language": "ja"}]
ONE_PARTNER = {**SAMPLE["notice"], "audience": {"partners": ["tokai-logistics"], "tiers": [1]}}
OVERDUE_METRIC = re.compile(r"^herald_promises_overdue (\S+)$", re.M)


def at(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).isoformat()


def promising(base: Settings, **promises: Any) -> Settings:
    """Checked every second, reminders a second and a half ahead, any time at least a second ahead accepted."""
    values = {"check_interval_seconds": 1, "min_lead_seconds": 1, "remind_before_seconds": 1.5, **promises}
    return base.model_copy(
        update={
            "promises": base.promises.model_copy(update=values),
            "on_call": [OnCallContact.model_validate(c) for c in ON_CALL],
        }
    )


async def incident_of(client: Any, incident_id: int) -> dict[str, Any]:
    response = await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))
    assert response.status == 200, await response.text()
    return await response.json()


async def promise_state(client: Any, incident_id: int) -> str | None:
    promise = (await incident_of(client, incident_id))["promise"]
    return promise["state"] if promise else None


async def overdue_metric(client: Any) -> float:
    text = await (await client.get("/metrics")).text()
    return float(OVERDUE_METRIC.search(text).group(1))


async def operator_rows(client: Any) -> list[dict[str, Any]]:
    return await rows(client, deliveries.c.partner_id == OPERATORS)


async def update(client: Any, incident_id: int, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
    response = await client.post(f"/v1/incidents/{incident_id}/updates", json=body, headers=auth("operator"))
    assert response.status == status, await response.text()
    return await response.json()


async def test_a_promise_that_falls_overdue_reminds_the_on_call_operators_and_shows_in_the_metric(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    # Ten seconds ahead with reminders five seconds before: wide enough windows that a busy machine
    # (a slow POST, a late check) still sees the promise pending, then due soon, then overdue.
    settings = promising(wired_settings(db_url, smtp_sink, twilio_fake), remind_before_seconds=5)
    client = await start(aiohttp_client, settings)
    reply = await post_sample(client, next_update_at=at(10), notice=ONE_PARTNER)
    incident_id = reply["incident_id"]
    assert await promise_state(client, incident_id) in ("pending", "due_soon")

    await wait_until(lambda: _state_is(client, incident_id, "overdue"), timeout=30)
    await wait_until(lambda: _reminders_sent(client, 2), timeout=30)

    reminders = await operator_rows(client)
    assert {(r["channel"], r["address"]) for r in reminders} == {
        ("email", "oncall@herald.example.com"),
        ("sms", "+819011112222"),
    }
    assert all(r["tier"] == 0 and r["incident_id"] == incident_id for r in reminders)
    subjects = [str(m.message["Subject"]) for m in smtp_sink.messages if m.message["To"] == "oncall@herald.example.com"]
    assert any("次回報告の時刻が近づいています" in s for s in subjects), subjects
    assert any("次回報告の時刻を過ぎています" in s for s in subjects), subjects
    oncall_sms = [r["Body"] for r in twilio_fake.requests if r["To"] == "+819011112222"]
    assert any("遅れています" in body for body in oncall_sms), oncall_sms
    promise = (await incident_of(client, incident_id))["promise"]
    assert promise["reminded_due_soon_at"] and promise["reminded_overdue_at"] and promise["minutes_late"] >= 1
    assert await overdue_metric(client) == 1.0

    await update(client, incident_id, {"next_update_at": at(3600)})

    promises = (await incident_of(client, incident_id))["promises"]
    assert [p["state"] for p in promises] == ["kept_late", "pending"]
    assert await overdue_metric(client) == 0.0


async def test_the_next_published_notice_keeps_the_promise_and_no_one_is_reminded(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, promising(make_settings(sqlite_url), remind_before_seconds=0))
    incident_id = (await post_sample(client, next_update_at=at(3600), notice=ONE_PARTNER))["incident_id"]
    body = {
        "status": "identified",
        "next_update_at": at(7200),
        "notice": {"fields": {"current_status": {"ja": "原因を特定", "en": "Cause found"}}},
    }
    await update(client, incident_id, body)

    found = await incident_of(client, incident_id)
    assert [(p["state"], p["kept_by_notice_id"]) for p in found["promises"]] == [
        ("kept", found["timeline"][1]["id"]),
        ("pending", None),
    ]
    assert found["promise"]["due_at"] == found["timeline"][1]["next_update_at"]
    assert not await operator_rows(client)


async def test_a_past_or_too_near_next_update_is_refused_naming_the_field(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, promising(make_settings(sqlite_url), min_lead_seconds=300))
    for when in (at(-60), at(120)):
        response = await client.post("/v1/incidents", json={**SAMPLE, "next_update_at": when}, headers=auth("operator"))
        assert response.status == 422
        error = await response.json()
        assert error["field"] == "next_update_at" and "300 seconds" in error["detail"]
    incident_id = (await post_sample(client, next_update_at=at(3600), notice=ONE_PARTNER))["incident_id"]
    refused = await update(client, incident_id, {"next_update_at": at(-5)}, status=422)
    assert refused["field"] == "next_update_at"
    given = {
        "notice": {
            "kind": "progress",
            "fields": {
                "stage": "progress",
                "current_status": {"ja": "作業中", "en": "Working on it"},
                "next_update_at": at(10),
            },
        }
    }
    refused = await update(client, incident_id, given, status=422)
    assert refused["field"] == "notice.fields.next_update_at"


async def test_no_change_yet_needs_only_the_new_time(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, promising(make_settings(sqlite_url)))
    incident_id = (await post_sample(client, next_update_at=at(3600), notice=ONE_PARTNER))["incident_id"]
    new_time = at(5400)

    reply = await update(client, incident_id, {"next_update_at": new_time})

    found = await incident_of(client, incident_id)
    notice = found["timeline"][-1]
    assert (notice["kind"], notice["state"], notice["id"]) == ("progress", "published", reply["notice_id"])
    assert notice["fields"]["no_change"] is True and "stage" not in notice["fields"]
    assert "変化はございません" in notice["fields"]["current_status"]["ja"]
    assert notice["next_update_at"] == found["next_update_at"]
    assert [p["state"] for p in found["promises"]] == ["kept", "pending"]
    async with client.app[appkeys.STORE].read() as conn:
        rendered = (await conn.execute(select(notices.c.rendered).where(notices.c.id == notice["id"]))).scalar_one()
    assert rendered["ja"]["subject"].startswith("【障害対応状況のご報告】")
    assert "変化はございません" in rendered["ja"]["txt"] and "There is no significant change" in rendered["en"]["txt"]


async def _state_is(client: Any, incident_id: int, state: str) -> bool:
    return await promise_state(client, incident_id) == state


async def _reminders_sent(client: Any, count: int) -> bool:
    sent = [r for r in await operator_rows(client) if r["status"] == "sent"]
    return len(sent) >= count * len(("email", "sms"))
