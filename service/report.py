"""The evidence report: for one incident, who was told what, when, and whether we kept our word.

Everything comes from what was recorded at the time: the notice's text as rendered when it was
published (`notices.rendered`), and the delivery log. Nothing is re-rendered, so the report shows
the text partners received even if templates or the directory have changed since.

The report is built once as JSON-ready data; the HTML page is a rendering of that same data, so the
two can never disagree.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncConnection

from service.incidents import incident_json
from service.notices import changed_fields, iso, notice_json
from service.operators import OPERATORS
from service.render import DEFAULT_TEMPLATES_DIR, SEVERITY_LABELS, STATUS_LABELS
from service.store import escalations as escalation_store
from service.store import incidents as incident_store
from service.store import log as log_store
from service.store import questions as question_store
from service.timeline import draw_timeline
from service.volume import explain

WEB_TEMPLATES = DEFAULT_TEMPLATES_DIR / "web"
FAILED = frozenset({"failed", "undelivered", "bounced", "dead"})
RENDERED_PARTS = ("subject", "txt", "sms")


async def build_report(conn: AsyncConnection, incident_id: int, now: float | None = None) -> dict[str, Any] | None:
    """The whole report for an incident, or None when there is no such incident."""
    now = time.time() if now is None else now
    incident = await incident_store.get_incident(conn, incident_id)
    if incident is None:
        return None
    notices = await incident_store.notices_of(conn, incident_id)
    logged = await log_store.recipients_of_incident(conn, incident_id)
    deliveries = [d for d in logged if d["partner_id"] != OPERATORS]
    steps = await escalation_store.of_notices(conn, [n["id"] for n in notices])
    steps_by_notice = {nid: list(rows) for nid, rows in groupby(steps, key=lambda e: e["notice_id"])}
    by_notice = {nid: list(rows) for nid, rows in groupby(deliveries, key=lambda d: d["notice_id"])}
    promises = promises_of(notices, now)
    version_of = {n["id"]: n["version"] for n in notices}
    asked = await question_store.questions_of_incident(conn, incident_id)
    fields_of = {n["id"]: n["fields"] for n in notices}
    return {
        "generated_at": iso(now),
        "incident": {**incident_json(incident), "status_history": status_history(incident, notices)},
        "notices": [
            {
                **notice_entry(n, by_notice.get(n["id"], []), promises.get(n["id"]), version_of.get(n["corrects_id"])),
                "escalations": [escalation_entry(e) for e in steps_by_notice.get(n["id"], [])],
                # A correction: what it changed in the version it corrects, field by field.
                "corrections": changed_fields(fields_of[n["corrects_id"]], n["fields"])
                if n["corrects_id"] in fields_of
                else [],
            }
            for n in notices
        ],
        # Reminders and alerts to our own on-call operators: evidence of what we did, not partner figures.
        "operator_messages": [recipient(d) for d in logged if d["partner_id"] == OPERATORS],
        "totals": {"deliveries": len(deliveries), "by_status": count_statuses(deliveries)},
        "questions": [question_entry(q, version_of) for q in asked],
    }


def question_entry(question: dict[str, Any], version_of: dict[int, int]) -> dict[str, Any]:
    """A partner's question as the report shows it: who asked what about which notice, how, when,
    and what we answered, when, by whom, and in which notice it was published."""
    return {
        "id": question["id"],
        "notice_version": version_of.get(question["notice_id"]),
        "partner_id": question["partner_id"],
        "partner_name": question.get("partner_name"),
        "contact_name": question.get("contact_name"),
        "source": question["source"],
        "language": question["language"],
        "body": question["body"],
        "asked_at": iso(question["asked_at"]),
        "state": question["state"],
        "answer": question["answer"],
        "answered_by": question["answered_by"],
        "answered_at": iso(question["answered_at"]),
        "published_in_version": version_of.get(question["published_in_notice_id"] or 0),
        "reminders": question["reminders"],
    }


def escalation_entry(escalation: dict[str, Any]) -> dict[str, Any]:
    return {
        "partner_id": escalation["partner_id"],
        "step": escalation["step"],
        "action": escalation["action"],
        "due_at": iso(escalation["due_at"]),
        "state": escalation["state"],
        "done_at": iso(escalation["done_at"]),
        "detail": escalation["detail"],
    }


def notice_entry(
    notice: dict[str, Any],
    deliveries: list[dict[str, Any]],
    promise: dict[str, Any] | None,
    corrects_version: int | None,
) -> dict[str, Any]:
    rendered = notice["rendered"] or {}
    return {
        **notice_json(notice, count_statuses(deliveries)),
        "corrects_version": corrects_version,
        "rendered": {lang: {part: text.get(part) for part in RENDERED_PARTS} for lang, text in rendered.items()},
        "promise": promise or unpromised(notice),
        "partners": partners_of(deliveries),
        "failures": sum(1 for d in deliveries if d["status"] in FAILED),
    }


def partners_of(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deliveries grouped by partner (they arrive ordered by notice, partner, tier, contact)."""
    return [
        {"partner_id": partner_id, "partner_name": rows[0]["partner_name"], "recipients": [recipient(d) for d in rows]}
        for partner_id, rows in (
            (pid, list(group)) for pid, group in groupby(deliveries, key=lambda d: d["partner_id"])
        )
    ]


def recipient(delivery: dict[str, Any]) -> dict[str, Any]:
    return {
        "delivery_id": delivery["id"],
        "contact_id": delivery["contact_id"],
        "contact_name": delivery["contact_name"],
        "tier": delivery["tier"],
        "channel": delivery["channel"],
        "address": delivery["address"],
        "language": delivery["language"],
        "escalation_step": delivery["escalation_step"],
        "status": delivery["status"],
        "attempts": delivery["attempts"],
        "created_at": iso(delivery["created_at"]),
        "sent_at": iso(delivery["sent_at"]),
        "delivered_at": iso(delivery["delivered_at"]),
        "acknowledged_at": iso(delivery["acknowledged_at"]),
        "failed_at": iso(delivery["failed_at"]),
        "error_code": delivery["error_code"],
        "last_error": delivery["last_error"],
        "reason": delivery["reason"],
        "reason_text": explain(delivery["reason"], delivery["detail"]),
        "detail": delivery["detail"],
    }


def count_statuses(deliveries: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for delivery in deliveries:
        counts[delivery["status"]] = counts.get(delivery["status"], 0) + 1
    return counts


def promises_of(notices: list[dict[str, Any]], now: float) -> dict[int, dict[str, Any]]:
    """Each published notice's promised next update against the next notice that actually went out
    (the next one by publication time: a draft published late counts when it was sent)."""
    published = sorted((n for n in notices if n["published_at"] is not None), key=lambda n: n["published_at"])
    found = {}
    for index, notice in enumerate(published):
        following = published[index + 1] if index + 1 < len(published) else None
        found[notice["id"]] = promise(notice["next_update_at"], following, now)
    return found


def promise(promised_at: float | None, following: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """on_time / late (by minutes) when a later notice went out; otherwise open until the promised
    time passes, then overdue. A minute late counts as late: partners were given an exact time."""
    kept_at = following["published_at"] if following else None
    result: dict[str, Any] = {
        "promised_at": iso(promised_at),
        "next_version": following["version"] if following else None,
        "next_published_at": iso(kept_at),
        "state": "none",
        "minutes_late": None,
    }
    if promised_at is None:
        return result
    if kept_at is not None:
        late = kept_at - promised_at
        result.update(state="late" if late > 0 else "on_time", minutes_late=_minutes(late) if late > 0 else None)
    elif now > promised_at:
        result.update(state="overdue", minutes_late=_minutes(now - promised_at))
    else:
        result["state"] = "open"
    return result


def unpromised(notice: dict[str, Any]) -> dict[str, Any]:
    """A draft promised nothing: partners never saw it."""
    return {
        "promised_at": iso(notice["next_update_at"]),
        "next_version": None,
        "next_published_at": None,
        "state": "unpublished",
        "minutes_late": None,
    }


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def status_history(incident: dict[str, Any], notices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Status changes as partners saw them (each published notice carries the incident's status),
    plus a final change made without a notice, dated by the incident's own record."""
    history: list[dict[str, Any]] = []
    published = sorted((n for n in notices if n["published_at"] is not None), key=lambda n: n["published_at"])
    for notice in published:
        if notice["status"] and (not history or history[-1]["status"] != notice["status"]):
            history.append(
                {"status": notice["status"], "at": iso(notice["published_at"]), "notice_version": notice["version"]}
            )
    if not history or history[-1]["status"] != incident["status"]:
        at = (
            incident["resolved_at"]
            if incident["status"] == "resolved" and incident["resolved_at"]
            else incident["updated_at"]
        )
        history.append({"status": incident["status"], "at": iso(at), "notice_version": None})
    return history


def render_html(report: dict[str, Any], timezone: str) -> str:
    timeline = draw_timeline(report, timezone)
    return _environment(timezone).get_template("report.html.j2").render(report=report, timeline=timeline)


def render_page(template: str, timezone: str, **context: Any) -> str:
    """Another page of templates/web/ with the report's filters (times in the company's zone)."""
    return _environment(timezone).get_template(template).render(**context)


@lru_cache(maxsize=4)
def _environment(timezone: str) -> Environment:
    """Autoescaped: operator, partner and provider text is data, never markup."""
    env = Environment(
        loader=FileSystemLoader(WEB_TEMPLATES),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    zone = ZoneInfo(timezone)
    env.filters["when"] = lambda value: _when(value, zone)
    env.filters["bilingual"] = bilingual
    env.filters["severity"] = lambda value: _label(SEVERITY_LABELS, value)
    env.filters["status"] = lambda value: _label(STATUS_LABELS, value)
    env.globals["timezone"] = timezone
    return env


def _when(value: str | None, zone: ZoneInfo) -> str:
    if not value:
        return "—"
    moment = datetime.fromisoformat(value).astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _label(labels: dict[str, dict[str, str]], value: str | None) -> str:
    if not value:
        return "—"
    return f"{labels['en'].get(value, value)} / {labels['ja'].get(value, value)}"


def bilingual(value: Any) -> str:
    """Operator text is one string or {"ja": ..., "en": ...}: show every language given, Japanese first."""
    if isinstance(value, dict):
        return " / ".join(str(value[lang]) for lang in ("ja", "en") if value.get(lang))
    return "" if value is None else str(value)
