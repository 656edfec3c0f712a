"""Who is reached on which channel, and how urgently: the rules the planner and escalation share.

Kept apart from both so that neither imports the other: the planner schedules escalations when it
publishes, and an escalation writes deliveries the way the planner does.
"""

from __future__ import annotations

from typing import Any

from service import compose
from service.settings import ANY_SEVERITY, SEVERITIES, Settings
from service.store.models import Contact, Partner

CHANNEL_RANK = {"sms": 0, "email": 1, "webhook": 2}


def priority_of(severity: str, tier: int, channel: str) -> int:
    """Lower leaves first: severity, then tier, then the faster channel (critical tier-1 SMS = 0)."""
    return SEVERITIES.index(severity) * 100 + (tier - 1) * 10 + CHANNEL_RANK.get(channel, 9)


def channels_for(settings: Settings, partner: Partner, severity: str, tier: int) -> list[str]:
    override = (partner.policy or {}).get(severity, {})
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
    settings: Settings, partner: Partner, contact: Contact, severity: str, kind: str | None = None
) -> list[str]:
    """Policy channels the notice's kind allows, the contact accepts and can be reached on, in the
    contact's order. A contact whose preferred channels the kind rules out (an SMS-only contact and a
    root-cause notice) gets the first allowed channel it can be reached on instead."""
    allowed = channels_for(settings, partner, severity, contact.tier)
    by_kind = kind_channels(settings, kind, severity) if kind is not None else None
    if by_kind is not None:
        allowed = [c for c in allowed if c in by_kind]
    preferred = contact.channels or allowed
    chosen = [c for c in preferred if c in allowed and contact.address(c)]
    if chosen or not contact.channels:
        return chosen
    return [c for c in allowed if contact.address(c)][:1]


def fallback_channels(settings: Settings, contact: Contact, kind: str, severity: str) -> list[str]:
    """Where a contact is reached when its planned address is suppressed: its own order, then any
    address it has, among the channels the notice's kind allows."""
    by_kind = kind_channels(settings, kind, severity)
    order = [*contact.channels, "email", "sms"]
    return [c for c in dict.fromkeys(order) if (by_kind is None or c in by_kind) and contact.address(c)]


def delivery_row(
    settings: Settings,
    notice: dict[str, Any],
    partner: Partner,
    contact: Contact,
    channel: str,
    now: float,
    escalation_step: int = 0,
) -> dict[str, Any]:
    return {
        "notice_id": notice["id"],
        "incident_id": notice["incident_id"],
        "partner_id": partner.id,
        "contact_id": contact.id,
        "tier": contact.tier,
        "channel": channel,
        "address": contact.address(channel),
        "language": contact.language or partner.language,
        "priority": priority_of(notice["severity"], contact.tier, channel),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "message_id": compose.message_id(settings, notice["id"], contact.id, channel, escalation_step),
        "escalation_step": escalation_step,
        "drill": notice.get("drill"),
        "reason": None,
        "detail": None,
        # Every row names the same columns: a multi-row insert takes its columns from the first.
        "purpose": "partner",
        "owner_id": None,
        "question_id": None,
        "created_at": now,
        "updated_at": now,
    }
