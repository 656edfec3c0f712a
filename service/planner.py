"""Planner: directory × policy[severity][tier] × component subscription → Delivery rows.

All deliveries of a notice are written in the caller's transaction, so a notice is either
published with its whole plan or not at all.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import compose, escalation, promises, volume
from service.errors import InvalidInput
from service.notices import LANGUAGE_NAMES, Audience, missing_text
from service.settings import ANY_SEVERITY, SEVERITIES, Settings
from service.store import audience as audience_store
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store import suppressions as suppression_store

PARTNERS_PER_PAGE = 1000
CHANNEL_RANK = {"sms": 0, "email": 1, "webhook": 2}
ADDRESS_FIELD = {"email": "email", "sms": "phone", "webhook": "webhook_url"}


@dataclass
class PlanSummary:
    total: int = 0
    by_tier: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    partners: int = 0
    # Rows the volume rules shaped (capped, merged, held, suppressed), by reason.
    by_reason: Counter[str] = field(default_factory=Counter)

    def count(self, row: dict[str, Any]) -> None:
        if row.get("reason"):
            self.by_reason[row["reason"]] += 1
        if row["status"] != "pending":
            return
        self.by_tier[str(row["tier"])] += 1
        self.by_channel[row["channel"]] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "partners": self.partners,
            "by_tier": dict(self.by_tier),
            "by_channel": dict(self.by_channel),
            "by_reason": dict(self.by_reason),
        }


def priority_of(severity: str, tier: int, channel: str) -> int:
    """Lower leaves first: severity, then tier, then the faster channel (critical tier-1 SMS = 0)."""
    return SEVERITIES.index(severity) * 100 + (tier - 1) * 10 + CHANNEL_RANK.get(channel, 9)  # type: ignore[arg-type]


def channels_for(settings: Settings, partner: dict[str, Any], severity: str, tier: int) -> list[str]:
    override = (partner.get("policy") or {}).get(severity, {})
    if str(tier) in override:
        return list(override[str(tier)])
    return list(settings.policy[severity].get(str(tier), []))  # type: ignore[index, call-overload]


def kind_channels(settings: Settings, kind: str, severity: str) -> list[str] | None:
    """Channels that may carry a notice of this kind and severity (`[notice_channels]`); None = any."""
    by_severity = settings.notice_channels.get(kind)  # type: ignore[call-overload]
    if by_severity is None:
        return None
    chosen = by_severity.get(severity, by_severity.get(ANY_SEVERITY))
    return None if chosen is None else list(chosen)


def planned_channels(
    settings: Settings, partner: dict[str, Any], contact: dict[str, Any], severity: str, kind: str | None = None
) -> list[str]:
    """Policy channels the notice's kind allows, the contact accepts and can be reached on, in the
    contact's order. A contact whose preferred channels the kind rules out (an SMS-only contact and a
    root-cause notice) gets the first allowed channel it can be reached on instead."""
    allowed = channels_for(settings, partner, severity, contact["tier"])
    by_kind = kind_channels(settings, kind, severity) if kind is not None else None
    if by_kind is not None:
        allowed = [c for c in allowed if c in by_kind]
    preferred = contact.get("channels") or allowed
    chosen = [c for c in preferred if c in allowed and contact.get(ADDRESS_FIELD.get(c, c))]
    if chosen or not contact.get("channels"):
        return chosen
    return [c for c in allowed if contact.get(ADDRESS_FIELD.get(c, c))][:1]


def fallback_channels(settings: Settings, contact: dict[str, Any], kind: str, severity: str) -> list[str]:
    """Where a contact is reached when its planned address is suppressed: its own order, then any
    address it has, among the channels the notice's kind allows."""
    by_kind = kind_channels(settings, kind, severity)
    order = [*(contact.get("channels") or []), "email", "sms"]
    return [c for c in dict.fromkeys(order) if (by_kind is None or c in by_kind) and contact.get(ADDRESS_FIELD[c])]


async def check_audience(conn: AsyncConnection, audience: Audience, path: str) -> None:
    if not audience.partners:
        return
    unknown = sorted(set(audience.partners) - await audience_store.known_partner_ids(conn, audience.partners))
    if unknown:
        raise InvalidInput(f"no partner with id {', '.join(unknown)}", f"{path}.partners", code="unknown_partner")


def audience_filter(
    audience: dict[str, Any], incident: dict[str, Any] | None
) -> tuple[list[str] | None, list[str] | None, list[int] | None]:
    """(partner ids, components, tiers) to select: listed partners, everyone, or the partners
    subscribed to the audience's components (by default the incident's)."""
    tiers = list(audience.get("tiers") or []) or None
    if audience.get("partners"):
        return list(audience["partners"]), None, tiers
    if audience.get("all_partners"):
        return None, None, tiers
    return None, list(audience.get("components") or (incident or {}).get("components") or []), tiers


async def publish(
    conn: AsyncConnection, settings: Settings, notice: dict[str, Any], incident: dict[str, Any] | None = None
) -> PlanSummary:
    """Mark the notice published, keep its rendered text as evidence, and plan its deliveries.
    `incident` is the notice's incident as the caller already holds it (read when not given)."""
    if incident is None and notice["incident_id"] is not None:
        incident = await incident_store.get_incident(conn, notice["incident_id"])
    now = time.time()
    rendered = compose.evidence(settings, notice, incident)
    await incident_store.update_notice(
        conn, notice["id"], {"state": "published", "published_at": now, "rendered": rendered}
    )
    await promises.on_published(conn, settings, notice, now)
    summary = PlanSummary()
    readers: set[str] = set()
    async for rows in plan_deliveries(conn, settings, notice, incident, now, summary):
        readers.update(row["language"] for row in rows)
        await delivery_store.insert_deliveries(conn, rows)
        await escalation.schedule_for_notice(conn, settings, notice, [r for r in rows if r["status"] == "pending"], now)
    if not notice.get("allow_language_fallback"):
        check_languages(notice, readers)
    return summary


def check_languages(notice: dict[str, Any], readers: set[str]) -> None:
    """422 naming every operator-written field that has no text in a language some recipients
    read, unless the operator allowed the fallback for this notice. Raised inside the publishing
    transaction, so nothing of the notice is kept."""
    missing = missing_text(notice["fields"], readers)
    if not missing:
        return
    prefix = "notice.fields." if notice["incident_id"] is not None else "fields."
    paths = [prefix + path for path in missing]
    languages = sorted({path.rsplit(".", 1)[1] for path in missing})
    raise InvalidInput(
        f"recipients read {' and '.join(LANGUAGE_NAMES[lang] for lang in languages)}, but these fields have no text "
        f"in it: {', '.join(paths)}; write them in every language or set allow_language_fallback",
        paths[0],
        code="missing_language",
    )


async def plan_deliveries(
    conn: AsyncConnection,
    settings: Settings,
    notice: dict[str, Any],
    incident: dict[str, Any] | None,
    now: float,
    summary: PlanSummary,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The notice's deliveries a page of partners at a time, so a broadcast to the whole directory
    holds one page in memory, not every row; `summary` counts what was planned."""
    audience = notice["audience"] or {}
    situation = await volume.situation_of(conn, notice, await suppression_store.active(conn))
    after = None
    while True:
        page = await audience_store.partners_with_contacts(
            conn, *audience_filter(audience, incident), after=after, limit=PARTNERS_PER_PAGE
        )
        if not page:
            return
        contact_ids = [c["id"] for p in page for c in p["contacts"]]
        history = await volume.contact_history(conn, notice["incident_id"], contact_ids)
        rows: list[dict[str, Any]] = []
        superseded: list[tuple[int, str]] = []
        for partner in page:
            planned_for_partner = 0
            for contact in partner["contacts"]:
                plan = plan_contact(settings, situation, notice, partner, contact, history.get(contact["id"], []), now)
                rows.extend(plan.rows)
                superseded.extend(plan.superseded)
                for row in plan.rows:
                    summary.count(row)
                    planned_for_partner += row["status"] == "pending"
            summary.partners += planned_for_partner > 0
        summary.total += sum(1 for row in rows if row["status"] == "pending")
        await volume.mark_merged(conn, superseded, now)
        yield rows
        if len(page) < PARTNERS_PER_PAGE:
            return
        after = page[-1]["id"]


def plan_contact(
    settings: Settings,
    situation: volume.IncidentSituation,
    notice: dict[str, Any],
    partner: dict[str, Any],
    contact: dict[str, Any],
    history: list[dict[str, Any]],
    now: float,
) -> volume.ContactPlan:
    """One contact's rows: the policy's channels, shaped by caps, merging, quiet hours and suppression."""
    kind, severity = notice["kind"], notice["severity"]
    return volume.plan_contact(
        settings,
        situation,
        partner,
        contact,
        planned_channels(settings, partner, contact, severity, kind),
        fallback_channels(settings, contact, kind, severity),
        history,
        lambda channel: delivery_row(settings, notice, partner, contact, channel, now),
        now,
    )


def delivery_row(
    settings: Settings,
    notice: dict[str, Any],
    partner: dict[str, Any],
    contact: dict[str, Any],
    channel: str,
    now: float,
    escalation_step: int = 0,
) -> dict[str, Any]:
    return {
        "notice_id": notice["id"],
        "incident_id": notice["incident_id"],
        "partner_id": partner["id"],
        "contact_id": contact["id"],
        "tier": contact["tier"],
        "channel": channel,
        "address": contact[ADDRESS_FIELD.get(channel, channel)],
        "language": contact.get("language") or partner["language"],
        "priority": priority_of(notice["severity"], contact["tier"], channel),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "message_id": compose.message_id(settings, notice["id"], contact["id"], channel, escalation_step),
        "escalation_step": escalation_step,
        "reason": None,
        "detail": None,
        "created_at": now,
        "updated_at": now,
    }
