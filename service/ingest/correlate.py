"""From IncidentEvents to incidents: dedup, flap damping and the partner-facing gate.

The rules, per alert group (one row in alert_groups):

- A firing group with no open incident opens one. Its initial notice is published at once when the
  severity is in `ingest.auto_publish` (default: critical); otherwise it waits as a draft for an
  operator (`GET /v1/notices/drafts`, `POST /v1/notices/{id}/publish`).
- A firing group that is already known is a re-send (Alertmanager repeats every repeat_interval):
  nothing changes for partners — no notice, no deliveries ("duplicate").
- New alerts joining the group widen the incident's components. Partners who were told about the
  incident hear of the wider impact in a progress notice; if nothing was published yet, the
  incident is updated silently (the waiting draft, once published, reaches the new components'
  partners too because the plan reads the incident's components at publish time). A graver
  severity is raised the same way; if it reaches an auto-publish severity while the initial notice
  is still a draft, that draft is published.
- A resolve is held for `ingest.flap_window` seconds (stored in alert_groups.pending so a restart
  keeps it). Firing again within the window cancels it: no resolve and no re-open notice, so a
  flapping alert costs partners nothing beyond the notices of one incident. A resolve that stays
  is applied by the DampingFlusher; its resolved notice is published only when partners had been
  told, otherwise it is kept as a draft next to the unpublished initial one.
- An incident an operator resolved stays resolved while its alerts keep firing; the group's next
  firing after it resolves at the source opens a new incident.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from service import incidents as incident_flow
from service import partner_text
from service.incidents import TRANSITIONS, IncidentCreate, IncidentUpdate, NoticeDraft, Outcome
from service.ingest.events import SEVERITY_RANK, IncidentEvent
from service.notices import NoticeFields, Text
from service.settings import Settings
from service.store import Store
from service.store import alerts as alert_store
from service.store import incidents as incident_store

log = logging.getLogger("herald.ingest")

Action = Literal["opened", "updated", "resolved", "duplicate", "held"]
DAMPING_ACTOR = "herald-damping"
TRANSITIONS_KEPT = 20
# A monitoring source cannot answer a 422: automatic notices (bilingual by default configuration,
# alert annotations in whatever languages they have) let a reader fall back to the other language.
AUTOMATIC_FALLBACK = True


@dataclass(frozen=True)
class IngestResult:
    incident_id: int | None
    notice_id: int | None
    action: Action
    deliveries: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "notice_id": self.notice_id, "action": self.action}


async def apply_event(
    conn: AsyncConnection, settings: Settings, event: IncidentEvent, actor: str | None, now: float
) -> IngestResult:
    """Apply one event inside the caller's transaction (the same one that stores the raw body)."""
    group = await alert_store.get_group(conn, event.key, for_update=True)
    if event.status == "firing":
        return await _on_firing(conn, settings, event, group, actor, now)
    return await _on_resolved(conn, settings, group, actor, now)


async def _on_firing(
    conn: AsyncConnection,
    settings: Settings,
    event: IncidentEvent,
    group: dict[str, Any] | None,
    actor: str | None,
    now: float,
) -> IngestResult:
    if group is None or (group["state"] == "resolved" and group["pending"] is None):
        return await _open(conn, settings, event, group, actor, now)
    changes = _firing_changes(group, event, now)
    added, graver = _widening(group, event)
    if group["incident_status"] == "resolved" or not (added or graver):
        await _save_if_changed(conn, group, changes)
        return IngestResult(group["incident_id"], None, "duplicate")
    components = [*(group["incident_components"] or []), *added]
    outcome = await _widen(
        conn, settings, group["incident_id"], components, event.severity if graver else None, actor, now
    )
    changes["components"] = _union(group["components"], event.components)
    await alert_store.update_group(conn, group["key"], changes)
    return _result(outcome, "updated")


def plain_repeat(group: dict[str, Any] | None, event: IncidentEvent) -> bool:
    """A re-send that changes nothing, not even the group row: answered "duplicate" without writing.

    The same rule apply_event follows, checked on a group read in bulk (see ingest.writer).
    """
    if group is None:
        return event.status == "resolved"
    if event.status == "resolved":
        return bool(group["state"] == "resolved")
    if group["state"] != "firing" or group["pending"] is not None:
        return False
    if group["fingerprints"] != sorted(event.fingerprints):
        return False
    added, graver = _widening(group, event)
    return group["incident_status"] == "resolved" or not (added or graver)


def _widening(group: dict[str, Any], event: IncidentEvent) -> tuple[list[str], bool]:
    """Components the event adds to the incident, and whether it is graver than the incident."""
    added = [c for c in event.components if c not in (group["incident_components"] or [])]
    graver = SEVERITY_RANK[event.severity] < SEVERITY_RANK.get(group["incident_severity"], 9)
    return added, graver


async def _on_resolved(
    conn: AsyncConnection, settings: Settings, group: dict[str, Any] | None, actor: str | None, now: float
) -> IngestResult:
    if group is None:
        return IngestResult(None, None, "duplicate")  # a resolve for a group Herald never saw fire
    if group["state"] == "resolved":
        return IngestResult(group["incident_id"], None, "duplicate")  # held already, or settled
    transitions = _remember(group, "resolved", now)
    flap_window = settings.ingest.flap_window
    if flap_window <= 0:
        await alert_store.update_group(
            conn, group["key"], {"state": "resolved", "fingerprints": [], "transitions": transitions}
        )
        return await settle_resolve(conn, settings, group, actor)
    await alert_store.update_group(
        conn,
        group["key"],
        {
            "state": "resolved",
            "fingerprints": [],
            "transitions": transitions,
            "pending": {"action": "resolve", "held_at": now, "actor": actor},
            "pending_due_at": now + flap_window,
        },
    )
    return IngestResult(group["incident_id"], None, "held")


async def settle_resolve(
    conn: AsyncConnection, settings: Settings, group: dict[str, Any], actor: str | None
) -> IngestResult:
    """Resolve the group's incident (the held resolve is due, or damping is off) and clear the hold."""
    await alert_store.update_group(conn, group["key"], {"pending": None, "pending_due_at": None})
    status = group["incident_status"]
    if "resolved" not in TRANSITIONS.get(status, frozenset()):
        log.info("incident %s is %s: the source's resolve is left to an operator", group["incident_id"], status)
        return IngestResult(group["incident_id"], None, "duplicate")
    published = await incident_store.has_published_notice(conn, group["incident_id"])
    update = IncidentUpdate(
        status="resolved",
        notice=NoticeDraft(
            fields=NoticeFields(summary=settings.ingest.resolved_summary),
            publish=published,
            allow_language_fallback=AUTOMATIC_FALLBACK,
        ),
    )
    outcome = await incident_flow.update_incident(conn, settings, group["incident_id"], update, actor)
    return _result(outcome, "resolved")


async def _open(
    conn: AsyncConnection,
    settings: Settings,
    event: IncidentEvent,
    previous: dict[str, Any] | None,
    actor: str | None,
    now: float,
) -> IngestResult:
    """Open an incident for a group seen for the first time, or firing again after it resolved."""
    ingest = settings.ingest
    # Partners read service names and the alerts' partner annotations, never the alert's own text.
    neutral = partner_text.neutral_summary(settings, event.components, event.severity)
    impact = partner_text.in_every_language(event.partner_impact, {}) if event.partner_impact else None
    request = IncidentCreate(
        title=partner_text.alert_title(settings, event.components),  # type: ignore[arg-type]
        severity=event.severity,  # type: ignore[arg-type]
        components=list(event.components),
        impact=impact or event.impact,  # type: ignore[arg-type]
        responsible=ingest.responsible,
        next_update_at=_next_update(settings, now),
        notice=NoticeDraft(
            kind="initial",
            fields=NoticeFields(
                summary=partner_text.in_every_language(event.partner_summary, neutral),  # type: ignore[arg-type]
                impact=impact or event.impact or ingest.impact,  # type: ignore[arg-type]
                current_status=ingest.current_status,
                outlook=ingest.outlook,
            ),
            publish=event.severity in ingest.auto_publish,
            allow_language_fallback=AUTOMATIC_FALLBACK,
        ),
    )
    # A group's later episodes need their own source_key (incidents.source_key is unique).
    source_key = event.key if previous is None else f"{event.key}#{now:.6f}"
    outcome = await incident_flow.open_incident(conn, settings, request, actor, event.source, source_key)
    row = {
        "incident_id": outcome.incident_id,
        "state": "firing",
        "fingerprints": sorted(event.fingerprints),
        "components": list(event.components),
        "transitions": [[now, "firing"]],
        "pending": None,
        "pending_due_at": None,
    }
    if previous is None:
        await alert_store.insert_group(conn, {"key": event.key, "source": event.source, **row})
    else:
        await alert_store.update_group(conn, event.key, row)
    return _result(outcome, "opened")


async def _widen(
    conn: AsyncConnection,
    settings: Settings,
    incident_id: int,
    components: list[str],
    severity: str | None,
    actor: str | None,
    now: float,
) -> Outcome:
    """New alerts joined: widen components (and raise severity); tell partners only if they were told."""
    published = await incident_store.has_published_notice(conn, incident_id)
    next_update = _next_update(settings, now)
    notice = None
    if published:
        status = _fill_services(settings, settings.ingest.components_added_status, components)
        notice = NoticeDraft(
            fields=NoticeFields(current_status=status, next_update_at=next_update),
            allow_language_fallback=AUTOMATIC_FALLBACK,
        )
    update = IncidentUpdate(components=components, severity=severity, next_update_at=next_update, notice=notice)  # type: ignore[arg-type]
    outcome = await incident_flow.update_incident(conn, settings, incident_id, update, actor)
    if not published and severity in settings.ingest.auto_publish:
        return await _publish_waiting_initial(conn, settings, incident_id, severity, actor) or outcome
    return outcome


async def _publish_waiting_initial(
    conn: AsyncConnection, settings: Settings, incident_id: int, severity: str, actor: str | None
) -> Outcome | None:
    """The incident became grave enough to auto-publish: send the initial notice still waiting as a draft."""
    for notice in await incident_store.notices_of(conn, incident_id):
        if notice["kind"] == "initial" and notice["state"] == "draft":
            await incident_store.update_notice(conn, notice["id"], {"severity": severity})
            return await incident_flow.publish_draft(conn, settings, notice["id"], actor)
    return None


def _firing_changes(group: dict[str, Any], event: IncidentEvent, now: float) -> dict[str, Any]:
    """The group row after a firing event: any held resolve is cancelled (a flap)."""
    changes: dict[str, Any] = {
        "state": "firing",
        "fingerprints": sorted(event.fingerprints),
        "pending": None,
        "pending_due_at": None,
    }
    if group["state"] != "firing":
        changes["transitions"] = _remember(group, "firing", now)
    return changes


async def _save_if_changed(conn: AsyncConnection, group: dict[str, Any], changes: dict[str, Any]) -> None:
    """A repeat_interval re-send changes nothing: skip the write so duplicates stay cheap."""
    if all(group.get(name) == value for name, value in changes.items()):
        return
    await alert_store.update_group(conn, group["key"], changes)


def _remember(group: dict[str, Any], state: str, now: float) -> list[list[Any]]:
    return [*(group["transitions"] or []), [now, state]][-TRANSITIONS_KEPT:]


def _union(first: list[str] | None, second: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys([*(first or []), *second]))


def _next_update(settings: Settings, now: float) -> datetime:
    return datetime.fromtimestamp(now, tz=UTC) + timedelta(minutes=settings.ingest.next_update_minutes)


def _fill_services(settings: Settings, text: Text, components: list[str]) -> Text:
    """Fill `{components}` with the partner-facing service names, in each text's language."""
    if isinstance(text, str):
        return text.replace("{components}", ", ".join(partner_text.service_names(settings, components, "en")))
    return {
        lang: part.replace(
            "{components}", partner_text.listed(partner_text.service_names(settings, components, lang), lang)
        )
        for lang, part in text.items()
    }


def _result(outcome: Outcome, action: Action) -> IngestResult:
    total = outcome.plan.total if outcome.plan is not None else 0
    return IngestResult(outcome.incident_id, outcome.notice_id, action, total)


async def flush_due(store: Store, settings: Settings, now: float | None = None) -> list[IngestResult]:
    """Apply every held resolve whose window has passed, one transaction per group."""
    now = time.time() if now is None else now
    async with store.read() as conn:
        keys = await alert_store.due_group_keys(conn, now)
    results = []
    for key in keys:
        async with store.begin() as conn:
            group = await alert_store.get_group(conn, key, for_update=True)
            if group is None or group["pending"] is None or group["pending_due_at"] > now:
                continue  # a firing event cancelled the hold meanwhile
            results.append(await settle_resolve(conn, settings, group, group["pending"].get("actor") or DAMPING_ACTOR))
    return results
