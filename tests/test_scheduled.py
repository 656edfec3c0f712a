"""Scheduled notices: written ahead, listed, edited or cancelled until they go, then sent on time;
a maintenance announcement schedules its own reminder and completion notice."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from service.settings import Settings
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.wired import rows, start, wired_settings

RESPONSIBLE = {"name": {"ja": "山田 太郎", "en": "Taro Yamada"}, "email": "incident-desk@example.com"}
SATO = "hanako.sato@tokai-logistics.example.jp"


def at(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).isoformat()


def scheduling(base: Settings) -> Settings:
    return base.model_copy(update={"schedule": base.schedule.model_copy(update={"check_interval_seconds": 1})})


def maintenance(start_in: float, end_in: float, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "maintenance",
        "fields": {
            "summary": {"ja": "受発注APIの定期メンテナンス", "en": "Order API scheduled maintenance"},
            "impact": {"ja": "作業中は受発注APIをご利用いただけません。", "en": "The Order API is unavailable."},
            "window_start": at(start_in),
            "window_end": at(end_in),
            "responsible": RESPONSIBLE,
        },
        "audience": {"partners": ["tokai-logistics"], "tiers": [1]},
        **extra,
    }


async def broadcast(client: Any, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
    response = await client.post("/v1/broadcasts", json=body, headers=auth("operator"))
    assert response.status == status, await response.text()
    return await response.json()


async def scheduled(client: Any) -> list[dict[str, Any]]:
    return (await (await client.get("/v1/notices/scheduled", headers=auth("operator"))).json())["items"]


async def edit(client: Any, notice_id: int, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await client.patch(f"/v1/notices/{notice_id}", json=body, headers=auth("operator"))
    assert response.status == status, await response.text()
    return await response.json()


async def cancel(client: Any, notice_id: int, status: int = 200) -> dict[str, Any]:
    response = await client.post(f"/v1/notices/{notice_id}/cancel", headers=auth("operator"))
    assert response.status == status, await response.text()
    return await response.json()


async def test_a_scheduled_broadcast_waits_until_its_time_then_goes(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, scheduling(wired_settings(db_url, smtp_sink, twilio_fake)))
    reply = await broadcast(client, maintenance(3600, 7200, send_at=at(2)))

    assert reply["state"] == "scheduled" and "deliveries" not in reply
    assert [n["id"] for n in await scheduled(client)] == [reply["notice_id"]]
    assert not await rows(client)

    await wait_until(lambda: _sent_to(client, reply["notice_id"]), timeout=20)
    assert not await scheduled(client)
    mail = await _mail_to(smtp_sink, SATO)
    assert "メンテナンスのお知らせ" in str(mail["Subject"])


async def test_a_scheduled_notice_can_be_edited_and_cancelled_until_it_goes(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, scheduling(make_settings(sqlite_url)))
    reply = await broadcast(client, maintenance(7200, 9000, send_at=at(3600)))
    notice_id = reply["notice_id"]
    later = at(5400)

    edited = await edit(client, notice_id, {"send_at": later, "fields": {"impact": {"ja": "影響なし", "en": "None"}}})

    assert edited["send_at"] == datetime.fromisoformat(later).isoformat().replace("+00:00", "Z")
    assert edited["fields"]["impact"] == {"ja": "影響なし", "en": "None"}
    assert edited["fields"]["summary"]["en"] == "Order API scheduled maintenance", "other fields stay"
    assert (await edit(client, notice_id, {"send_at": at(-60)}, status=422))["field"] == "send_at"
    early = await client.post(f"/v1/notices/{notice_id}/publish", headers=auth("operator"))
    assert early.status == 409 and (await early.json())["error"] == "scheduled"
    assert (await cancel(client, notice_id))["cancelled"] == [notice_id]
    assert not await scheduled(client)
    assert (await edit(client, notice_id, {"fields": {"impact": "x"}}, status=409))["error"] == "not_scheduled"
    assert (await cancel(client, notice_id, status=409))["error"] == "not_scheduled"
    assert (await broadcast(client, maintenance(60, 120, send_at=at(-1)), status=422))["field"] == "send_at"
    assert not await rows(client)


async def test_a_maintenance_announcement_schedules_its_reminder_and_completion_notice(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, scheduling(wired_settings(db_url, smtp_sink, twilio_fake)))
    follow_ups = {"remind_minutes_before": 2 / 60, "completion": True}

    reply = await broadcast(client, maintenance(4, 5, follow_ups=follow_ups))

    assert reply["state"] == "published"
    waiting = await scheduled(client)
    assert [(n["fields"]["maintenance_phase"], n["follows_id"], n["version"]) for n in waiting] == [
        ("reminder", reply["notice_id"], 2),
        ("completed", reply["notice_id"], 3),
    ]
    subjects = await wait_until(lambda: _subjects_to(smtp_sink, SATO, 3), timeout=30)
    assert ["メンテナンスのお知らせ" in subjects[0], "メンテナンス実施のご案内" in subjects[1]] == [True, True]
    assert "メンテナンス完了のお知らせ" in subjects[2]
    completion = next(m.message for m in smtp_sink.messages if "完了" in str(m.message["Subject"]))
    assert "予定しておりましたメンテナンスは完了いたしました" in completion.get_body(("plain",)).get_content()


async def test_moving_or_cancelling_a_scheduled_announcement_carries_its_follow_ups(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    client = await start(aiohttp_client, scheduling(make_settings(sqlite_url)))
    follow_ups = {"remind_minutes_before": 60, "completion": True}
    reply = await broadcast(client, maintenance(7200, 10800, send_at=at(600), follow_ups=follow_ups))
    before = {n["fields"].get("maintenance_phase"): n for n in await scheduled(client)}

    later_start = datetime.fromisoformat(before[None]["fields"]["window_start"]).timestamp() + 1800
    start_text = datetime.fromtimestamp(later_start, UTC).isoformat()
    await edit(client, reply["notice_id"], {"fields": {"window_start": start_text}})

    after = {n["fields"].get("maintenance_phase"): n for n in await scheduled(client)}
    moved = _seconds(after["reminder"]["send_at"]) - _seconds(before["reminder"]["send_at"])
    assert abs(moved - 1800) < 1e-3
    assert after["completed"]["send_at"] == before["completed"]["send_at"]
    assert after["reminder"]["fields"]["window_start"] == after[None]["fields"]["window_start"]

    cancelled = (await cancel(client, reply["notice_id"]))["cancelled"]
    assert sorted(cancelled) == sorted(n["id"] for n in after.values())
    assert not await scheduled(client)


async def test_a_scheduled_notice_survives_a_restart(aiohttp_client: Any, sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    first = await start(aiohttp_client, settings)
    reply = await broadcast(first, maintenance(3600, 7200, send_at=at(1)))
    await first.close()

    from service.app import create_app

    second = await aiohttp_client(create_app(scheduling(settings)))
    await wait_until(lambda: _planned(second, reply["notice_id"]), timeout=20)


async def _planned(client: Any, notice_id: int) -> bool:
    return bool(await rows(client, deliveries.c.notice_id == notice_id))


async def _sent_to(client: Any, notice_id: int) -> bool:
    found = await rows(client, deliveries.c.notice_id == notice_id)
    return bool(found) and all(r["status"] == "sent" for r in found)


async def _mail_to(smtp: SmtpSink, address: str) -> Any:
    def arrived() -> Any:
        return next((m.message for m in smtp.messages if m.message["To"] == address), None)

    return await wait_until(arrived, timeout=20)


async def _subjects_to(smtp: SmtpSink, address: str, count: int) -> list[str] | None:
    subjects = [str(m.message["Subject"]) for m in smtp.messages if m.message["To"] == address]
    return subjects if len(subjects) >= count else None


def _seconds(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
