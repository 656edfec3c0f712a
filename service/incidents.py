"""The incident state machine. Every state change partners should hear about becomes one Notice."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service import planner, promises, questions, scheduled
from service.errors import Conflict, InvalidInput, MissingField, NotFound
from service.notices import (
    NO_CHANGE_STATUS,
    Audience,
    Component,
    Kind,
    NoticeFields,
    Responsible,
    Text,
    Title,
    check_required,
    iso,
    to_timestamp,
)
from service.scheduled import MaintenanceFollowUps
from service.settings import Settings, Severity
from service.store import incidents as incident_store
from service.store import questions as question_store
from service.store.records import audit
from service.validation import Moment, parse_model

Status = Literal["investigating", "identified", "recovering", "monitoring", "resolved", "recovery_failed"]

TRANSITIONS: dict[str, frozenset[str]] = {
    "investigating": frozenset({"identified", "recovering", "monitoring", "resolved", "recovery_failed"}),
    "identified": frozenset({"recovering", "monitoring", "resolved", "recovery_failed"}),
    "recovering": frozenset({"monitoring", "resolved", "recovery_failed"}),
    "monitoring": frozenset({"recovering", "resolved", "recovery_failed"}),
    # A failed recovery may be retried, or the service may come back on its own.
    "recovery_failed": frozenset({"investigating", "identified", "recovering", "resolved"}),
    "resolved": frozenset(),
}

# The notice a status change produces when the operator does not name a kind.
KIND_FOR_STATUS: dict[str, tuple[str, str | None]] = {
    "identified": ("progress", "progress"),
    "recovering": ("progress", "started"),
    "monitoring": ("progress", "completed"),
    "resolved": ("resolved", None),
    "recovery_failed": ("recovery_failed", None),
}


class NoticeDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = None
    fields: NoticeFields = NoticeFields()
    audience: Audience = Audience()
    publish: bool = True
    corrects_version: int | None = Field(None, ge=1, le=1_000_000)
    # Recipients whose language a field lacks read it in the other language (otherwise a 422).
    allow_language_fallback: bool = False
    # Publish at this time instead of now (a scheduled notice; see service/scheduled.py).
    send_at: Moment | None = None
    # A maintenance notice's own reminder before the window and completion notice after it.
    follow_ups: MaintenanceFollowUps | None = None


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    severity: Severity
    status: Status = "investigating"
    components: list[Component] = Field(default_factory=list, max_length=200)
    impact: Text | None = None
    responsible: Responsible
    next_update_at: Moment | None = None
    estimates: dict[str, Any] | None = None
    notice: NoticeDraft = NoticeDraft()


class IncidentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    severity: Severity | None = None
    components: list[Component] | None = Field(None, max_length=200)
    impact: Text | None = None
    responsible: Responsible | None = None
    next_update_at: Moment | None = None
    estimates: dict[str, Any] | None = None
    # None = change the incident without telling partners.
    notice: NoticeDraft | None = NoticeDraft()


@dataclass(frozen=True)
class Outcome:
    incident_id: int | None  # None for a broadcast
    notice_id: int | None
    version: int | None
    state: str | None
    plan: planner.PlanSummary | None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"incident_id": self.incident_id, "notice_id": self.notice_id}
        if self.notice_id is not None:
            body.update(version=self.version, state=self.state)
        if self.plan is not None:
            body["deliveries"] = self.plan.as_json()
        return body


def check_transition(current: str, new: str) -> None:
    if new != current and new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (the incident is closed)"
        raise Conflict(
            f"cannot go from '{current}' to '{new}'; allowed: {allowed}", "status", code="invalid_transition"
        )


async def open_incident(
    conn: AsyncConnection,
    settings: Settings,
    request: IncidentCreate,
    actor: str | None,
    source: str = "api",
    source_key: str | None = None,
) -> Outcome:
    draft = request.notice
    kind = draft.kind or "initial"
    now = time.time()
    check_next_update(settings, to_timestamp(request.next_update_at), now, "next_update_at")
    values = {
        "title": request.title,
        "severity": request.severity,
        "status": request.status,
        "components": request.components,
        "impact": request.impact,
        "responsible": request.responsible.model_dump(exclude_none=True),
        "next_update_at": to_timestamp(request.next_update_at),
        "estimates": request.estimates,
        "source": source,
        "source_key": source_key,
    }
    fields = _merge_fields(settings, values, draft.fields, kind, None, now)
    await planner.check_audience(conn, draft.audience, "notice.audience")
    values["created_at"] = values["updated_at"] = now
    values["id"] = incident_id = await incident_store.insert_incident(conn, values)
    await audit(conn, "incident.opened", "incident", incident_id, actor, {"severity": request.severity})
    return await _write_notice(conn, settings, incident_id, values, kind, fields, draft, actor, version=1)


async def update_incident(
    conn: AsyncConnection, settings: Settings, incident_id: int, request: IncidentUpdate, actor: str | None
) -> Outcome:
    incident = await incident_store.get_incident(conn, incident_id, for_update=True)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    changes = request.model_dump(exclude_none=True, exclude={"notice"})
    if "status" in changes:
        check_transition(incident["status"], changes["status"])
    if "responsible" in changes:
        changes["responsible"] = request.responsible.model_dump(exclude_none=True)  # type: ignore[union-attr]
    now = time.time()
    if request.next_update_at is not None:
        changes["next_update_at"] = to_timestamp(request.next_update_at)
        check_next_update(settings, changes["next_update_at"], now, "next_update_at")
    if changes.get("status") == "resolved" and incident["status"] != "resolved":
        changes["resolved_at"] = now
    incident.update(changes)
    draft = request.notice
    fields = kind = None
    if draft is not None:
        kind, stage = _kind_for(draft, changes.get("status"))
        given = draft.fields
        if _only_moves_next_update(draft, changes):
            stage, given = None, given.model_copy(update={"no_change": True, "current_status": NO_CHANGE_STATUS})
        fields = _merge_fields(settings, incident, given, kind, stage, now)
        await planner.check_audience(conn, draft.audience, "notice.audience")
    if changes:
        await incident_store.update_incident(conn, incident_id, changes)
        await audit(conn, "incident.updated", "incident", incident_id, actor, _jsonable(changes))
    if draft is None or kind is None or fields is None:
        return Outcome(incident_id, None, None, None, None)
    return await _write_notice(conn, settings, incident_id, incident, kind, fields, draft, actor)


async def publish_draft(
    conn: AsyncConnection,
    settings: Settings,
    notice_id: int,
    actor: str | None,
    allow_language_fallback: bool = False,
) -> Outcome:
    notice = await incident_store.get_notice(conn, notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id}")
    if notice["state"] == "held":
        raise Conflict(
            f"notice {notice_id} was kept for operators only: partners never heard of the incident "
            "(its first notice was not published)",
            code="held",
        )
    if notice["state"] == "scheduled":
        raise Conflict(
            f"notice {notice_id} is scheduled for {iso(notice['send_at'])}: change its send_at or cancel it",
            code="scheduled",
        )
    if notice["state"] != "draft":
        raise Conflict(f"notice {notice_id} is {notice['state']}, not a draft", code="already_published")
    if allow_language_fallback and not notice["allow_language_fallback"]:
        notice["allow_language_fallback"] = True
        await incident_store.update_notice(conn, notice_id, {"allow_language_fallback": True})
    plan = await planner.publish(conn, settings, notice)
    await audit(conn, "notice.published", "notice", notice_id, actor, {"deliveries": plan.total})
    return Outcome(notice["incident_id"], notice_id, notice["version"], "published", plan)


async def discard_draft(conn: AsyncConnection, notice_id: int, actor: str | None) -> None:
    """A draft nobody will send (an alert that needs no notice): kept, marked discarded."""
    notice = await incident_store.get_notice(conn, notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id}")
    if notice["state"] != "draft":
        raise Conflict(f"notice {notice_id} is {notice['state']}; only drafts are discarded", code="not_a_draft")
    await incident_store.update_notice(conn, notice_id, {"state": "discarded"})
    await audit(conn, "notice.discarded", "notice", notice_id, actor, {"kind": notice["kind"]})


def _kind_for(draft: NoticeDraft, new_status: str | None) -> tuple[str, str | None]:
    if draft.kind is not None:
        return draft.kind, None
    if new_status is not None and new_status in KIND_FOR_STATUS:
        return KIND_FOR_STATUS[new_status]
    return "progress", "progress"


def _only_moves_next_update(draft: NoticeDraft, changes: dict[str, Any]) -> bool:
    """An update that gives nothing but a new next update time: "no change yet, next update at ..."."""
    given = draft.fields.model_dump(exclude_none=True)
    return draft.kind is None and "next_update_at" in changes and set(changes) <= {"next_update_at"} and not given


def check_next_update(settings: Settings, promised_at: float | None, now: float, field: str) -> None:
    """A promised next update must lie ahead by at least `[promises] min_lead_seconds`."""
    if promised_at is not None and promises.too_near(settings, promised_at, now):
        lead = settings.promises.min_lead_seconds
        raise InvalidInput(
            f"{field}: {iso(promised_at)} is in the past or less than {lead:g} seconds from now; "
            "promise a time partners can be told about",
            field,
        )


def _merge_fields(
    settings: Settings, incident: dict[str, Any], given: NoticeFields, kind: str, stage: str | None, now: float
) -> NoticeFields:
    """A notice inherits the incident's title, impact, responsible contact and next update time
    (the time only while it still lies ahead: a stale promise is not repeated)."""
    promised_at = incident.get("next_update_at")
    still_ahead = promised_at is not None and not promises.too_near(settings, promised_at, now)
    inherited = {
        "title": incident.get("title"),
        "impact": incident.get("impact"),
        "responsible": incident.get("responsible"),
        "next_update_at": iso(promised_at) if still_ahead else None,
        "stage": stage,
    }
    if kind == "resolved":
        inherited.pop("next_update_at")  # a resolved notice promises no further update unless told to
    merged = {k: v for k, v in inherited.items() if v is not None}
    merged.update(given.model_dump(exclude_none=True))
    fields = parse_model(NoticeFields, merged, "notice.fields")
    check_required(kind, fields, "notice.fields")
    if given.next_update_at is not None:
        check_next_update(settings, to_timestamp(given.next_update_at), now, "notice.fields.next_update_at")
    return fields


async def _write_notice(
    conn: AsyncConnection,
    settings: Settings,
    incident_id: int,
    incident: dict[str, Any],
    kind: str,
    fields: NoticeFields,
    draft: NoticeDraft,
    actor: str | None,
    version: int | None = None,
) -> Outcome:
    corrects_id = None
    if draft.corrects_version is not None:
        corrects_id = await _notice_id_of_version(conn, incident_id, draft.corrects_version)
    version = version or await incident_store.next_notice_version(conn, incident_id)
    stored_fields = fields.model_dump(mode="json", exclude_none=True)
    if kind == "estimate":
        replaces = await replaced_estimate(conn, incident_id, stored_fields)
        if replaces is not None:
            stored_fields["replaces"] = replaces
    # Version 1 is written with its incident, in this transaction: no question can be asked yet.
    answers, answered_ids = await questions.attach_published_answers(conn, incident_id) if version > 1 else ([], [])
    if answers:
        stored_fields["qa"] = answers
    notice = {
        "incident_id": incident_id,
        "kind": kind,
        "version": version,
        "corrects_id": corrects_id,
        "state": "draft",
        "severity": incident["severity"],
        "status": incident["status"],
        "fields": stored_fields,
        "audience": draft.audience.model_dump(),
        "next_update_at": to_timestamp(fields.next_update_at),
        "created_by": actor,
        "allow_language_fallback": draft.allow_language_fallback,
    }
    now = time.time()
    if draft.follow_ups is not None and not draft.publish:
        raise InvalidInput(
            "follow_ups are scheduled with a published or scheduled notice, not a draft", "notice.follow_ups"
        )
    if draft.send_at is not None:
        notice.update(state="scheduled", send_at=to_timestamp(draft.send_at))
        scheduled.check_send_at(notice["send_at"], now, "notice.send_at")
    if version > 1 and not await incident_store.has_published_notice(conn, incident_id):
        # Partners never heard of the incident: a later change is for operators, not a draft to send.
        notice["state"] = "held"
    notice["id"] = await incident_store.insert_notice(conn, notice)
    if answered_ids:
        await question_store.mark_published(conn, answered_ids, notice["id"])
    await audit(conn, "notice.created", "notice", notice["id"], actor, {"kind": kind, "version": version})
    if notice["state"] == "held" or not draft.publish:
        return Outcome(incident_id, notice["id"], version, notice["state"], None)
    plan = None
    if notice["state"] != "scheduled":
        plan = await planner.publish(conn, settings, notice, incident)
        await audit(conn, "notice.published", "notice", notice["id"], actor, {"deliveries": plan.total})
    if draft.follow_ups is not None:
        await scheduled.schedule_follow_ups(conn, notice, draft.follow_ups, actor, now)
    return Outcome(incident_id, notice["id"], version, "published" if plan else "scheduled", plan)


ESTIMATE_FIGURES = ("time_estimate", "cost_estimate")


async def replaced_estimate(conn: AsyncConnection, incident_id: int, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The incident's latest published estimate, which a new one replaces: partners read both side by
    side, and a changed time or cost must say why (`change_reason`)."""
    earlier = [
        n
        for n in await incident_store.notices_of(conn, incident_id)
        if n["kind"] == "estimate" and n["state"] == "published"
    ]
    if not earlier:
        return None
    previous = max(earlier, key=lambda n: n["version"])
    changed = any(previous["fields"].get(name) != fields.get(name) for name in ESTIMATE_FIGURES)
    if changed and not fields.get("change_reason"):
        raise MissingField(
            f"this estimate changes the time or cost of update #{previous['version']}: say why",
            "notice.fields.change_reason",
        )
    return {
        "version": previous["version"],
        "notice_id": previous["id"],
        **{name: previous["fields"].get(name) for name in ESTIMATE_FIGURES},
    }


async def _notice_id_of_version(conn: AsyncConnection, incident_id: int, version: int) -> int:
    for notice in await incident_store.notices_of(conn, incident_id):
        if notice["version"] == version:
            return int(notice["id"])
    raise InvalidInput(f"incident has no notice version {version}", "notice.corrects_version")


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not hasattr(v, "isoformat") else v.isoformat()) for k, v in changes.items()}


def incident_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "severity": row["severity"],
        "status": row["status"],
        "components": row["components"],
        "impact": row["impact"],
        "responsible": row["responsible"],
        "next_update_at": iso(row["next_update_at"]),
        "estimates": row["estimates"],
        "source": row["source"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "resolved_at": iso(row["resolved_at"]),
    }
