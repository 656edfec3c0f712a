"""Scheduled notices: a notice with `send_at` waits (state `scheduled`) and is published at its time.

Maintenance announcements and BCP revisions are written ahead of time. A scheduled notice is a
durable row, listed (`GET /v1/notices/scheduled`), editable and cancellable until it goes; the
scheduler (one loop, `[schedule] check_interval_seconds`) claims due rows with SKIP LOCKED and
publishes each through the planner like any notice. A maintenance notice may schedule its own
follow-ups: a reminder before the window opens and a completion notice after it closes
(`follows_id` names the announcement; cancelling or moving the announcement carries them along).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys, planner
from service.errors import Conflict, HeraldError, InvalidInput, NotFound
from service.notices import Audience, NoticeFields, Text, check_required, iso, to_timestamp
from service.periodic import Periodic
from service.settings import Settings
from service.store import Store
from service.store import incidents as incident_store
from service.store.records import audit
from service.validation import Moment

log = logging.getLogger("herald.scheduled")

COMPLETION_SUMMARY = {
    "ja": "予定しておりましたメンテナンスは完了いたしました。サービスは通常どおりご利用いただけます。",
    "en": "The scheduled maintenance is complete; services are available as usual.",
}
# What a follow-up copies from the notice that scheduled it.
COPIED = ("incident_id", "kind", "severity", "status", "audience", "next_update_at", "allow_language_fallback", "drill")


class MaintenanceFollowUps(BaseModel):
    """Notices a maintenance announcement schedules for itself."""

    model_config = ConfigDict(extra="forbid")

    # A reminder this long before the window opens.
    remind_minutes_before: float | None = Field(None, gt=0, le=60 * 24 * 60)
    # A completion notice when the window closes (plus `completion_minutes_after`).
    completion: bool = False
    completion_minutes_after: float = Field(0, ge=0, le=60 * 24)
    completion_summary: Text | None = None


class NoticeEdit(BaseModel):
    """A change to a scheduled notice: only what changes."""

    model_config = ConfigDict(extra="forbid")

    send_at: Moment | None = None
    fields: NoticeFields = NoticeFields()
    audience: Audience | None = None


def check_send_at(send_at: float, now: float, field: str) -> None:
    if send_at <= now:
        raise InvalidInput(f"{field}: {iso(send_at)} has passed; leave send_at out to send now", field)


async def schedule_follow_ups(
    conn: AsyncConnection, parent: dict[str, Any], follow_ups: MaintenanceFollowUps, actor: str | None, now: float
) -> list[int]:
    """Write the announcement's reminder and completion notices as scheduled rows."""
    if parent["kind"] != "maintenance":
        raise InvalidInput("follow_ups are for maintenance notices", "follow_ups")
    fields = parent["fields"]
    start, end = to_timestamp_text(fields["window_start"]), to_timestamp_text(fields["window_end"])
    planned: list[tuple[str, float, dict[str, Any]]] = []
    if follow_ups.remind_minutes_before:
        at = start - follow_ups.remind_minutes_before * 60
        if at <= (parent.get("send_at") or now):
            raise InvalidInput(
                f"follow_ups.remind_minutes_before: the reminder would go at {iso(at)}, before the announcement itself",
                "follow_ups.remind_minutes_before",
            )
        planned.append(("reminder", at, {}))
    if follow_ups.completion:
        summary = follow_ups.completion_summary or COMPLETION_SUMMARY
        planned.append(("completed", end + follow_ups.completion_minutes_after * 60, {"summary": summary}))
    written = []
    for offset, (phase, at, extra) in enumerate(planned, start=1):
        notice = {key: parent.get(key) for key in COPIED}
        notice.update(
            version=await _follow_up_version(conn, parent, offset),
            corrects_id=None,
            state="scheduled",
            send_at=at,
            follows_id=parent["id"],
            fields={**fields, **extra, "maintenance_phase": phase},
            created_by=actor,
        )
        notice_id = await incident_store.insert_notice(conn, notice)
        await audit(conn, "notice.scheduled", "notice", notice_id, actor, {"follows": parent["id"], "phase": phase})
        written.append(notice_id)
    return written


async def _follow_up_version(conn: AsyncConnection, parent: dict[str, Any], offset: int) -> int:
    if parent["incident_id"] is None:  # a broadcast's own short sequence
        return int(parent["version"]) + offset
    return await incident_store.next_notice_version(conn, parent["incident_id"])


def to_timestamp_text(value: str) -> float:
    """A stored field time (ISO 8601) as UNIX seconds."""
    return datetime.fromisoformat(value).timestamp()


async def publish_due(store: Store, settings: Settings, now: float | None = None) -> int:
    """Publish the scheduled notices whose time has come; returns the deliveries planned."""
    now = time.time() if now is None else now
    planned = 0
    async with store.begin() as conn:
        for notice in await incident_store.claim_scheduled(conn, settings.schedule.batch_size, now):
            planned += await _publish(conn, settings, notice)
    return planned


async def _publish(conn: AsyncConnection, settings: Settings, notice: dict[str, Any]) -> int:
    """One scheduled notice; a notice that can no longer go (say, a language the recipients read is
    missing now) is marked `failed` for the operators, and the others still go."""
    try:
        async with conn.begin_nested():
            await _bring_incident_along(conn, notice)
            plan = await planner.publish(conn, settings, notice)
    except HeraldError as exc:
        await incident_store.update_notice(conn, notice["id"], {"state": "failed"})
        detail = {"error": exc.code, "detail": exc.detail, "field": exc.field}
        await audit(conn, "notice.schedule_failed", "notice", notice["id"], None, detail)
        log.warning("scheduled notice %s could not be published: %s", notice["id"], exc.detail)
        return 0
    await audit(
        conn,
        "notice.published",
        "notice",
        notice["id"],
        None,
        {"deliveries": plan.total, "scheduled_for": iso(notice["send_at"])},
    )
    return plan.total


async def _bring_incident_along(conn: AsyncConnection, notice: dict[str, Any]) -> None:
    """A scheduled incident notice that speaks of a new status (a drill's later steps) moves the
    incident to it when it goes, with the next update it promises."""
    if notice["incident_id"] is None or notice["status"] is None:
        return
    incident = await incident_store.get_incident(conn, notice["incident_id"], for_update=True)
    if incident is None or incident["status"] == notice["status"]:
        return
    values: dict[str, Any] = {"status": notice["status"], "next_update_at": notice["next_update_at"]}
    if notice["status"] == "resolved":
        values["resolved_at"] = time.time()
    await incident_store.update_incident(conn, notice["incident_id"], values)


async def scheduled_notice(conn: AsyncConnection, notice_id: int) -> dict[str, Any]:
    notice = await incident_store.get_notice(conn, notice_id, for_update=True)
    if notice is None:
        raise NotFound(f"no notice {notice_id}")
    if notice["state"] != "scheduled":
        raise Conflict(f"notice {notice_id} is {notice['state']}, not scheduled", code="not_scheduled")
    return notice


async def cancel(conn: AsyncConnection, notice_id: int, actor: str | None) -> list[int]:
    """Cancel a scheduled notice and the follow-ups it scheduled that have not gone yet."""
    notice = await scheduled_notice(conn, notice_id)
    cancelled = [notice["id"]] + [f["id"] for f in await incident_store.scheduled_followers(conn, notice_id)]
    for cancelled_id in cancelled:
        await incident_store.update_notice(conn, cancelled_id, {"state": "cancelled"})
        await audit(conn, "notice.cancelled", "notice", cancelled_id, actor, {"requested_for": notice_id})
    return cancelled


async def edit(
    conn: AsyncConnection, settings: Settings, notice_id: int, change: NoticeEdit, actor: str | None
) -> dict[str, Any]:
    """Change a scheduled notice; moving a maintenance window moves its follow-ups with it."""
    notice = await scheduled_notice(conn, notice_id)
    now = time.time()
    given = change.fields.model_dump(mode="json", exclude_none=True)
    fields = NoticeFields.model_validate({**notice["fields"], **given})
    check_required(notice["kind"], fields, "fields")
    values: dict[str, Any] = {
        "fields": fields.model_dump(mode="json", exclude_none=True),
        "next_update_at": to_timestamp(fields.next_update_at),
    }
    if change.send_at is not None:
        values["send_at"] = to_timestamp(change.send_at)
        check_send_at(values["send_at"], now, "send_at")
    if change.audience is not None:
        await planner.check_audience(conn, change.audience, "audience")
        values["audience"] = change.audience.model_dump()
    await incident_store.update_notice(conn, notice_id, values)
    moved = await _carry_followers(conn, notice, values["fields"], given)
    await audit(conn, "notice.edited", "notice", notice_id, actor, {"changed": sorted(given), "followers": moved})
    return {**notice, **values}


async def _carry_followers(
    conn: AsyncConnection, before: dict[str, Any], after: dict[str, Any], given: dict[str, Any]
) -> list[int]:
    """Follow-ups keep their distance to the window and take the announcement's edited fields."""
    moved = []
    shift = {
        "reminder": _seconds_between(before["fields"], after, "window_start"),
        "completed": _seconds_between(before["fields"], after, "window_end"),
    }
    for follower in await incident_store.scheduled_followers(conn, before["id"]):
        phase = follower["fields"].get("maintenance_phase")
        own = {k: v for k, v in given.items() if not (phase == "completed" and k == "summary")}
        values = {
            "fields": {**follower["fields"], **own},
            "send_at": follower["send_at"] + shift.get(phase or "", 0.0),
        }
        await incident_store.update_notice(conn, follower["id"], values)
        moved.append(follower["id"])
    return moved


def _seconds_between(before: dict[str, Any], after: dict[str, Any], name: str) -> float:
    if not before.get(name) or not after.get(name):
        return 0.0
    return to_timestamp_text(after[name]) - to_timestamp_text(before[name])


class NoticeScheduler:
    """Publishes due scheduled notices once at start, then every `[schedule] check_interval_seconds`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings: Settings = app[appkeys.SETTINGS]
        self._periodic = Periodic("notice-scheduler", self.run_once, self.settings.schedule.check_interval_seconds)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> int:
        planned = await publish_due(self.app[appkeys.STORE], self.settings)
        if planned:
            self.app[appkeys.DISPATCHER_WAKE]()
        return planned


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    scheduler = NoticeScheduler(app)
    app[appkeys.NOTICE_SCHEDULER] = scheduler
    scheduler.start()
    yield
    await scheduler.stop()
