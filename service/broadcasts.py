"""Broadcasts: notices not tied to an incident (scheduled maintenance, a BCP revision, a general notice)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from service import scheduled
from service.errors import InvalidInput, MissingField
from service.incidents import NoticeDraft, Outcome
from service.notices import Audience, check_required, to_timestamp
from service.planner import check_audience, publish
from service.settings import Settings, Severity
from service.store import incidents as incident_store
from service.store.records import audit


class Broadcast(NoticeDraft):
    model_config = ConfigDict(extra="forbid")
    severity: Severity = "maintenance"
    audience: Audience = Audience(all_partners=True)


async def open_broadcast(conn: AsyncConnection, settings: Settings, draft: Broadcast, actor: str | None) -> Outcome:
    if draft.kind is None:
        raise MissingField("a broadcast names its notice kind", "kind")
    check_required(draft.kind, draft.fields)
    await check_audience(conn, draft.audience, "audience")
    notice: dict[str, Any] = {
        "incident_id": None,
        "kind": draft.kind,
        "version": 1,
        "corrects_id": None,
        "state": "draft",
        "severity": draft.severity,
        "status": None,
        "fields": draft.fields.model_dump(mode="json", exclude_none=True),
        "audience": draft.audience.model_dump(),
        "next_update_at": None,
        "created_by": actor,
        "allow_language_fallback": draft.allow_language_fallback,
    }
    if draft.follow_ups is not None and not draft.publish:
        raise InvalidInput("follow_ups go with a published or scheduled notice, not a draft", "follow_ups")
    now = time.time()
    if draft.send_at is not None:
        notice.update(state="scheduled", send_at=to_timestamp(draft.send_at))
        scheduled.check_send_at(notice["send_at"], now, "send_at")
    notice["id"] = await incident_store.insert_notice(conn, notice)
    await audit(conn, "notice.created", "notice", notice["id"], actor, {"kind": draft.kind, "broadcast": True})
    plan = await publish(conn, settings, notice) if draft.publish and notice["state"] == "draft" else None
    if draft.follow_ups is not None:
        await scheduled.schedule_follow_ups(conn, notice, draft.follow_ups, actor, now)
    return Outcome(None, notice["id"], 1, "published" if plan else notice["state"], plan)
