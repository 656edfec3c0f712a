"""Corrections (訂正): a published notice was wrong; a new version says so openly.

`POST /v1/notices/{id}/corrections` takes only the fields that change. The correction is a new
version of the same kind that names the version it corrects (`corrects_id`), lists the fields it
changed (`fields.corrected`, which the templates spell out under 【訂正】/[Correction]), and goes to
every contact and channel the corrected notice reached, whatever the audience or directory says now.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from service import compose, planner, policy
from service.errors import Conflict, InvalidInput, NotFound
from service.incidents import Outcome, check_next_update
from service.notices import NoticeFields, check_required, to_timestamp
from service.settings import Settings
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store import promises as promise_store
from service.store.models import Contact, Incident, Notice, Partner
from service.store.records import audit


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Only the fields that change; the rest is taken from the corrected notice.
    fields: NoticeFields


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Field by field, what a correction changed (the evidence report shows this)."""
    names = sorted((set(before) | set(after)) - {"corrected"})
    return [
        {"field": n, "before": before.get(n), "after": after.get(n)} for n in names if before.get(n) != after.get(n)
    ]


async def correct_notice(
    conn: AsyncConnection, settings: Settings, notice_id: int, request: CorrectionRequest, actor: str | None
) -> Outcome:
    corrected = await incident_store.get_notice(conn, notice_id)
    if corrected is None:
        raise NotFound(f"no notice {notice_id}")
    if corrected["state"] != "published":
        raise Conflict(
            f"notice {notice_id} was never sent ({corrected['state']}): nothing to correct", code="not_published"
        )
    given = request.fields.model_dump(mode="json", exclude_none=True)
    given.pop("corrected", None)
    changes = {name: value for name, value in given.items() if corrected["fields"].get(name) != value}
    if not changes:
        raise InvalidInput("give at least one field whose value changes", "fields", code="nothing_to_correct")
    fields = NoticeFields.model_validate({**corrected["fields"], **changes, "corrected": sorted(changes)})
    check_required(corrected["kind"], fields, "fields")
    now = time.time()
    if "next_update_at" in changes:
        check_next_update(settings, to_timestamp(fields.next_update_at), now, "fields.next_update_at")
    incident = None
    if corrected["incident_id"] is not None:
        incident = await incident_store.get_incident(conn, corrected["incident_id"])
    notice = {
        "incident_id": corrected["incident_id"],
        "kind": corrected["kind"],
        "version": await _next_version(conn, corrected),
        "corrects_id": corrected["id"],
        "state": "published",
        "severity": corrected["severity"],
        "status": corrected["status"],
        "fields": fields.model_dump(mode="json", exclude_none=True),
        "audience": corrected["audience"],
        "next_update_at": to_timestamp(fields.next_update_at),
        "created_by": actor,
        "published_at": now,
        "allow_language_fallback": bool(corrected.get("allow_language_fallback")),
        "drill": corrected.get("drill"),
    }
    notice["id"] = await incident_store.insert_notice(conn, notice)
    speaking_as_then = Incident.from_row({**incident, "status": corrected["status"]}) if incident else None
    rendered = compose.evidence(settings, Notice.from_row(notice), speaking_as_then)
    await incident_store.update_notice(conn, notice["id"], {"rendered": rendered})
    rows = [
        _delivery_row(settings, notice, reached, now)
        for reached in await delivery_store.reached_by_notice(conn, notice_id)
    ]
    await delivery_store.insert_deliveries(conn, rows)
    if not notice["allow_language_fallback"]:
        planner.check_languages(notice, {row["language"] for row in rows})
    if "next_update_at" in changes:
        await _move_promise(conn, settings, corrected["id"], notice["next_update_at"], now)
    detail = {
        "corrects": corrected["id"],
        "version": notice["version"],
        "changed": sorted(changes),
        "deliveries": len(rows),
    }
    await audit(conn, "notice.corrected", "notice", notice["id"], actor, detail)
    plan = planner.PlanSummary(total=len(rows), partners=len({r["partner_id"] for r in rows}))
    for row in rows:
        plan.by_tier[str(row["tier"])] += 1
        plan.by_channel[row["channel"]] += 1
    return Outcome(corrected["incident_id"], notice["id"], notice["version"], "published", plan)


async def _next_version(conn: AsyncConnection, corrected: dict[str, Any]) -> int:
    if corrected["incident_id"] is None:  # a broadcast has its own short sequence
        return int(corrected["version"]) + 1
    return await incident_store.next_notice_version(conn, corrected["incident_id"])


ADDRESS_FIELD = {"email": "email", "sms": "phone", "webhook": "webhook_url"}


def _delivery_row(settings: Settings, notice: dict[str, Any], reached: dict[str, Any], now: float) -> dict[str, Any]:
    """The same contact, channel and address the corrected notice used (the directory may differ now)."""
    partner = Partner(id=reached["partner_id"], name="", language=reached["language"])
    address = {ADDRESS_FIELD.get(reached["channel"], "email"): reached["address"]}
    contact = Contact(
        id=reached["contact_id"],
        partner_id=reached["partner_id"],
        key="",
        name="",
        tier=reached["tier"],
        language=reached["language"],
        **address,
    )
    return policy.delivery_row(settings, notice, partner, contact, reached["channel"], now)


async def _move_promise(
    conn: AsyncConnection, settings: Settings, corrected_id: int, due_at: float | None, now: float
) -> None:
    """The corrected notice's open promise now falls due at the corrected time."""
    promise = await promise_store.open_of_notice(conn, corrected_id)
    if promise is None or due_at is None:
        return
    check_at = max(now, due_at - settings.promises.remind_before_seconds)
    await promise_store.update_promise(
        conn, promise["id"], {"due_at": due_at, "state": "pending", "check_at": check_at, "updated_at": now}
    )
