"""What one contact receives, and when: SMS caps, merged updates, quiet hours, suppressed addresses.

The planner decides which channels a notice may take (tier policy × notice kind × the contact's
preferences); this module shapes that plan for each contact, with the reason written on the row so
the delivery log, the dry run and the evidence report can say why a message looks as it does:

- `capped`: the contact had `sms_cap` SMS about this incident within the window; the SMS row is
  kept as `skipped` and the update goes by email (a row with reason `capped` when email was not
  planned anyway). The next SMS that does go names the updates it did not carry.
- `merged`: an update planned while an earlier one still waits (see `held`) replaces it: the
  earlier row becomes `merged` and the new one says which versions it carries and what changed.
- `held`: due later than now: within `merge_window_seconds` of the last message to the contact on
  that channel (so a burst of updates becomes one message), or in the partner's quiet hours for
  non-urgent kinds. State changes of a critical incident are never held.
- `suppressed`: the address hard-bounced or the number refused SMS for good; the row is kept as
  `skipped` and the contact's next channel takes the notice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from service.render import STATUS_LABELS
from service.settings import Settings
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store.models import Contact, Partner

# Statuses of rows that never left and never will: they do not count as messages to the contact.
NOT_SENT = ("skipped", "merged")
# Notices a later update may replace while they wait; anything else is always sent as written.
REPLACEABLE_KINDS = frozenset({"progress"})
# Notices that may wait to be merged with a following one (unless urgent).
MERGEABLE_KINDS = frozenset({"progress", "resolved", "recovery_failed"})
STATE_CHANGE_KINDS = frozenset({"initial", "resolved", "recovery_failed"})
# Fields compared to say what changed across merged updates, in the order they are named.
COMPARED_FIELDS = ("stage", "progress_percent", "current_status", "impact", "summary", "recovery_eta", "next_update_at")

RowMaker = Callable[[str], dict[str, Any]]


@dataclass
class IncidentSituation:
    """What the planner knows about the notice's incident before planning a page of contacts."""

    notice: dict[str, Any]
    urgent: bool  # a state change of a critical incident: never held
    versions: dict[int, int] = field(default_factory=dict)  # notice id -> version
    notices_by_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    suppressed: frozenset[tuple[str, str]] = frozenset()


@dataclass
class ContactPlan:
    rows: list[dict[str, Any]] = field(default_factory=list)
    superseded: list[tuple[int, str]] = field(default_factory=list)  # (held delivery id, replaced by message id)


def is_urgent(notice: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """A state change of a critical incident: the first notice, resolved, recovery failed, or a
    status different from the previous published notice's."""
    if notice["severity"] != "critical" or notice["incident_id"] is None:
        return False
    if notice["kind"] in STATE_CHANGE_KINDS or previous is None:
        return True
    return bool(notice["status"] and notice["status"] != previous["status"])


async def situation_of(
    conn: AsyncConnection, notice: dict[str, Any], suppressed: frozenset[tuple[str, str]]
) -> IncidentSituation:
    if notice["incident_id"] is None:
        return IncidentSituation(notice, urgent=False, suppressed=suppressed)
    earlier = await incident_store.notices_of(conn, notice["incident_id"])
    published = [n for n in earlier if n["state"] == "published" and n["id"] != notice["id"]]
    previous = published[-1] if published else None
    return IncidentSituation(
        notice,
        urgent=is_urgent(notice, previous),
        versions={n["id"]: n["version"] for n in earlier},
        notices_by_id={n["id"]: n for n in earlier},
        suppressed=suppressed,
    )


def plan_contact(
    settings: Settings,
    situation: IncidentSituation,
    partner: Partner,
    contact: Contact,
    channels: list[str],
    fallback: list[str],
    history: list[dict[str, Any]],
    make_row: RowMaker,
    now: float,
) -> ContactPlan:
    """The contact's rows for this notice: suppression, the SMS cap, merging, quiet hours, in that order."""
    plan = ContactPlan()
    channels = _avoid_suppressed(situation, contact, channels, fallback, make_row, plan)
    channels = _apply_sms_cap(settings, situation, contact, channels, history, make_row, plan, now)
    for channel in channels:
        row = make_row(channel)
        if channel == "sms":
            _say_what_sms_skipped(situation, row, history)
        _merge_or_hold(settings, situation, row, [h for h in history if h["channel"] == channel], plan, now)
        _hold_for_quiet_hours(settings, situation, partner, row, now)
        plan.rows.append(row)
    return plan


def shape_key(
    situation: IncidentSituation, partner: Partner, contact: Contact, channels: Sequence[str], fallback: Sequence[str]
) -> tuple[Any, ...]:
    """Everything `plan_contact` decides from for a contact with no history in the incident, apart
    from who the contact is: contacts with equal keys get rows that differ only in the fields the
    policy's row names them by, never in those decided here (status, reason, detail,
    next_attempt_at), so a plan can decide once per key.
    Keep it complete when `plan_contact` reads something new (tests/test_plan_shapes.py checks)."""
    suppressed = situation.suppressed
    barred = (
        tuple(c for c in dict.fromkeys([*channels, *fallback]) if (c, contact.address(c) or "") in suppressed)
        if suppressed
        else ()
    )
    return partner.timezone, tuple(channels), tuple(fallback), barred


def history_bears(settings: Settings, situation: IncidentSituation, history: list[dict[str, Any]], now: float) -> bool:
    """Whether anything in the contact's history could make `plan_contact` decide otherwise than
    for a contact with none: SMS that reach the cap, an update the cap kept off SMS, a held update
    a new one would replace, or a message within the merge window that a mergeable update waits
    for. When nothing can, the contact is planned like its peers (`shape_key`). One pass over the
    history: a whole incident's is read for each plan."""
    notice = situation.notice
    if not history or notice["incident_id"] is None:
        return False
    cap, window = settings.volume.sms_cap, settings.volume.merge_window_seconds
    since = now - settings.volume.sms_cap_window_seconds
    may_wait = window > 0 and not situation.urgent and notice["kind"] in MERGEABLE_KINDS
    recent_sms = 0
    for h in history:
        sent = h["status"] not in NOT_SENT
        if h["channel"] == "sms":
            if h["status"] == "skipped" and h["reason"] == "capped":
                return True
            recent_sms += sent and h["created_at"] >= since
            if cap and recent_sms >= cap:
                return True
        if window > 0 and _replaceable(situation, h, now):
            return True
        if may_wait and sent and now - (h["sent_at"] or h["next_attempt_at"]) < window:
            return True
    return False


async def contacts_history_may_bear(
    conn: AsyncConnection, settings: Settings, situation: IncidentSituation, now: float
) -> dict[int, str]:
    """Contact id -> partner id of every contact whose history in the notice's incident could make
    `history_bears` true: the database names them in one statement, and a plan reads the history
    of those alone (the others are planned as if they had none, which is what `history_bears`
    false means). The conditions are those of `history_bears`, each loosened (a held row of any
    notice kind), never tightened: a contact named here needlessly costs a read, one missed would
    be planned wrong (tests/test_plan_shapes.py plans both ways)."""
    notice = situation.notice
    if notice["incident_id"] is None or not any(
        n["state"] == "published" and n["id"] != notice["id"] for n in situation.notices_by_id.values()
    ):
        return {}  # only published notices have deliveries: the incident's first has no history
    cap, window = settings.volume.sms_cap, settings.volume.merge_window_seconds
    may_wait = window > 0 and not situation.urgent and notice["kind"] in MERGEABLE_KINDS
    return await delivery_store.contacts_with_history(
        conn,
        notice["incident_id"],
        capped=True,
        sms_cap=cap,
        sms_since=now - settings.volume.sms_cap_window_seconds,
        held_after=now if window > 0 else None,
        sent_since=now - window if may_wait else None,
        not_sent=NOT_SENT,
    )


def _skipped(row: dict[str, Any], reason: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {**row, "status": "skipped", "reason": reason, "detail": detail}


def _avoid_suppressed(
    situation: IncidentSituation,
    contact: Contact,
    channels: list[str],
    fallback: list[str],
    make_row: RowMaker,
    plan: ContactPlan,
) -> list[str]:
    def suppressed(channel: str) -> bool:
        return (channel, contact.address(channel) or "") in situation.suppressed

    kept = [c for c in channels if not suppressed(c)]
    for channel in channels:
        if channel not in kept:
            plan.rows.append(_skipped(make_row(channel), "suppressed", {"address_suppressed": True}))
    if kept or not channels:
        return kept
    for channel in fallback:
        if channel not in channels and contact.address(channel) and not suppressed(channel):
            return [channel]
    return []


def _sms_sent_recently(history: list[dict[str, Any]], since: float) -> int:
    return sum(1 for h in history if h["channel"] == "sms" and h["status"] not in NOT_SENT and h["created_at"] >= since)


def _apply_sms_cap(
    settings: Settings,
    situation: IncidentSituation,
    contact: Contact,
    channels: list[str],
    history: list[dict[str, Any]],
    make_row: RowMaker,
    plan: ContactPlan,
    now: float,
) -> list[str]:
    cap = settings.volume.sms_cap
    if "sms" not in channels or not cap or situation.notice["incident_id"] is None:
        return channels
    recent = _sms_sent_recently(history, now - settings.volume.sms_cap_window_seconds)
    if recent < cap:
        return channels
    detail = {"sms_in_window": recent, "cap": cap, "window_seconds": settings.volume.sms_cap_window_seconds}
    plan.rows.append(_skipped(make_row("sms"), "capped", detail))
    kept = [c for c in channels if c != "sms"]
    email = contact.address("email")
    if "email" not in kept and email and ("email", email) not in situation.suppressed:
        row = make_row("email")
        row.update(reason="capped", detail={"instead_of": "sms"})
        plan.rows.append(row)
    return kept


def _say_what_sms_skipped(situation: IncidentSituation, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Name the updates the cap kept off SMS since the last SMS that went."""
    skipped: list[int] = []
    for h in history:
        if h["channel"] != "sms":
            continue
        if h["status"] == "skipped" and h["reason"] == "capped":
            skipped.append(situation.versions.get(h["notice_id"], 0))
        elif h["status"] not in NOT_SENT:
            skipped = []
    if skipped:
        row["detail"] = {**(row.get("detail") or {}), "skipped_versions": skipped}


def _merge_or_hold(
    settings: Settings,
    situation: IncidentSituation,
    row: dict[str, Any],
    history: list[dict[str, Any]],
    plan: ContactPlan,
    now: float,
) -> None:
    window = settings.volume.merge_window_seconds
    notice = situation.notice
    if notice["incident_id"] is None or window <= 0:
        return
    waiting = [h for h in history if _replaceable(situation, h, now)]
    if waiting:
        carried = [v for h in waiting for v in _carried_versions(situation, h)]
        by_version = {n["version"]: n for n in situation.notices_by_id.values()}
        oldest = by_version.get(carried[0])
        row["reason"] = "merged"
        row["detail"] = {
            **(row.get("detail") or {}),
            "merged_versions": carried,
            "changes": what_changed(oldest, notice),
        }
        if not situation.urgent:
            row["next_attempt_at"] = max(h["next_attempt_at"] for h in waiting)
        plan.superseded.extend((h["id"], row["message_id"]) for h in waiting)
        return
    if situation.urgent or notice["kind"] not in MERGEABLE_KINDS:
        return
    last_out = max((h["sent_at"] or h["next_attempt_at"] for h in history if h["status"] not in NOT_SENT), default=None)
    if last_out is not None and now - last_out < window:
        row["next_attempt_at"] = last_out + window
        row["reason"] = "held"
        row["detail"] = {**(row.get("detail") or {}), "hold": "merge_window", "until": last_out + window}


def _replaceable(situation: IncidentSituation, row: dict[str, Any], now: float) -> bool:
    """A row still waiting for its merge window: not attempted yet, due later, an update."""
    held = row["status"] == "pending" and row["attempts"] == 0 and row["next_attempt_at"] > now
    notice = situation.notices_by_id.get(row["notice_id"])
    return held and notice is not None and notice["kind"] in REPLACEABLE_KINDS and row["reason"] in ("held", "merged")


def _carried_versions(situation: IncidentSituation, row: dict[str, Any]) -> list[int]:
    earlier = list((row.get("detail") or {}).get("merged_versions") or [])
    return [*earlier, situation.versions.get(row["notice_id"], 0)]


def what_changed(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    """Status (from → to) and the names of the fields that differ between two notices."""
    if before is None:
        return []
    changes: list[dict[str, Any]] = []
    if before["status"] != after["status"]:
        changes.append({"field": "status", "from": before["status"], "to": after["status"]})
    old, new = before["fields"] or {}, after["fields"] or {}
    changes.extend({"field": name} for name in COMPARED_FIELDS if old.get(name) != new.get(name))
    return changes


# --- quiet hours --------------------------------------------------------------------------------


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(settings: Settings, zone: ZoneInfo, now: float) -> float | None:
    """The end of the quiet hours `now` falls in, in `zone`; None outside them."""
    quiet = settings.quiet_hours
    start, end = _clock(quiet.start), _clock(quiet.end)
    if start == end:
        return None
    local = datetime.fromtimestamp(now, zone)
    clock = local.time()
    overnight = start > end
    inside = (clock >= start or clock < end) if overnight else (start <= clock < end)
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if overnight and clock >= start else local.date()
    return datetime.combine(day, end, zone).timestamp()


def _hold_for_quiet_hours(
    settings: Settings, situation: IncidentSituation, partner: Partner, row: dict[str, Any], now: float
) -> None:
    quiet = settings.quiet_hours
    if not quiet.enabled or situation.notice["kind"] not in quiet.kinds or situation.urgent:
        return
    zone = ZoneInfo(partner.timezone or settings.company.timezone)
    until = quiet_until(settings, zone, now)
    if until is None or until <= row["next_attempt_at"]:
        return
    row["next_attempt_at"] = until
    row["reason"] = "held"
    row["detail"] = {**(row.get("detail") or {}), "hold": "quiet_hours", "until": until, "timezone": zone.key}


# --- what the partner reads about it ------------------------------------------------------------

CHANGE_LABELS = {
    "ja": {
        "status": "状況",
        "stage": "復旧段階",
        "progress_percent": "進捗",
        "current_status": "現在の状況",
        "impact": "影響範囲",
        "summary": "概要",
        "recovery_eta": "復旧見込み",
        "next_update_at": "次回報告予定",
    },
    "en": {
        "status": "status",
        "stage": "recovery stage",
        "progress_percent": "progress",
        "current_status": "current status",
        "impact": "impact",
        "summary": "summary",
        "recovery_eta": "expected recovery",
        "next_update_at": "next update",
    },
}


def _versions(versions: list[int], lang: str) -> str:
    if lang == "ja":
        return "第" + "・".join(str(v) for v in versions) + "報"
    numbers = [f"#{v}" for v in versions]
    listed = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
    return ("update " if len(numbers) == 1 else "updates ") + listed


def _change(change: dict[str, Any], lang: str) -> str:
    label: str = CHANGE_LABELS[lang].get(change["field"], change["field"])
    if change["field"] != "status":
        return label
    before = STATUS_LABELS[lang].get(change.get("from") or "", change.get("from") or "")
    after = STATUS_LABELS[lang].get(change.get("to") or "", change.get("to") or "")
    return f"{label}（{before}→{after}）" if lang == "ja" else f"{label} ({before} → {after})"


def partner_note(detail: dict[str, Any] | None, lang: str, short: bool = False) -> str | None:
    """One sentence in the partner's language about what this message carries besides itself."""
    if not detail:
        return None
    sentences = []
    merged = detail.get("merged_versions")
    if merged:
        changes = [_change(c, lang) for c in detail.get("changes") or []]
        if lang == "ja":
            text = (
                f"（{_versions(merged, lang)}を含む最新の状況です）"
                if short
                else (
                    f"本報は、未送信だった{_versions(merged, lang)}の内容をまとめた最新の状況です。"
                    + (f"第{merged[0]}報からの変更点：{'、'.join(changes)}。" if changes else "")
                )
            )
        else:
            text = (
                f"(Includes {_versions(merged, lang)}.)"
                if short
                else (
                    f"This message brings {_versions(merged, lang)}, not sent yet, up to date."
                    + (f" Changed since update #{merged[0]}: {', '.join(changes)}." if changes else "")
                )
            )
        sentences.append(text)
    skipped = detail.get("skipped_versions")
    if skipped:
        if lang == "ja":
            sentences.append(f"※{_versions(skipped, lang)}はメールのみでお送りしました。")
        else:
            text = _versions(skipped, lang)
            sentences.append(f"{text[0].upper()}{text[1:]} went by email only.")
    return " ".join(sentences) if sentences else None


def explain(reason: str | None, detail: dict[str, Any] | None) -> str | None:
    """The reason on a delivery row in words for the log, the dry run and the evidence report."""
    detail = detail or {}
    if reason == "capped":
        if detail.get("instead_of"):
            return f"sent by email instead of {detail['instead_of']}: the SMS cap was reached"
        window = round(float(detail.get("window_seconds") or 3600) / 60)
        sent, cap = detail.get("sms_in_window"), detail.get("cap")
        return f"SMS not sent: {sent} SMS within {window} min reached the cap of {cap}"
    if reason == "merged":
        if detail.get("merged_into"):
            return f"not sent on its own: merged into {detail['merged_into']}"
        versions = ", ".join(f"#{v}" for v in detail.get("merged_versions") or [])
        return f"carries updates {versions}, which had not been sent yet"
    if reason == "held":
        why = "the partner's quiet hours" if detail.get("hold") == "quiet_hours" else "the merge window"
        return f"held for {why}"
    if reason == "suppressed":
        return "not sent: the address is suppressed"
    return None
