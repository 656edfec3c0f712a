"""Dry-run previews: what a notice would say, and to whom, before anyone is told.

A preview is made inside `Store.rehearse()`: the incident flow, the notice and the planner run as
they do for real and the transaction is rolled back. The preview and the publication it stands
for are made by the same code, so they cannot disagree; whatever the planner decides about a
delivery shows up here without this module knowing about it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import compose, planner
from service.dispatcher import load_notice
from service.notices import LANGUAGES, iso
from service.segments import SegmentInfo, sms_segments
from service.settings import Settings
from service.store import incidents as incident_store
from service.store.engine import rehearsing
from service.store.models import Delivery, Incident, Notice, Recipient

AckLink = Callable[[Delivery], str | None]

# Sample acknowledgement links are as long as those of a seven-digit delivery id.
SAMPLE_DELIVERY_ID = 9_999_999
SAMPLE_NAMES = {"ja": ("ご担当者名", "取引先名"), "en": ("Contact Name", "Partner Name")}
# Operator text a partner reads (responsible.name and .department are checked as well).
TEXT_FIELDS = (
    "title",
    "summary",
    "impact",
    "current_status",
    "outlook",
    "next_steps",
    "cause",
    "countermeasures",
    "changes",
    "cost_estimate",
    "time_estimate",
    "assumptions",
    "risks",
    "change_reason",
    "subject",
    "body",
)
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass
class Preview:
    notice: dict[str, Any] | None = None
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    audience: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "notice": self.notice,
            "messages": self.messages,
            "audience": self.audience,
            "warnings": self.warnings,
        }

    @property
    def recipients(self) -> int:
        return int(self.audience.get("contacts", 0))


async def preview_notice(
    conn: AsyncConnection,
    settings: Settings,
    notice_id: int | None,
    plan: planner.PlanSummary | None,
    ack_link: AckLink,
    now: float | None = None,
) -> Preview:
    """The preview of a notice written in the caller's rehearsal. A draft is published in the
    rehearsal too, so an operator sees what publishing it would do."""
    if not rehearsing():
        raise RuntimeError("a preview publishes drafts: make it only inside Store.rehearse()")
    if notice_id is None:
        return Preview()  # the incident changes without telling partners
    now = time.time() if now is None else now
    if plan is None:
        draft = await incident_store.get_notice(conn, notice_id)
        if draft is None:
            raise LookupError(f"no notice {notice_id}")
        plan = await planner.publish(conn, settings, draft)
    loaded = await load_notice(conn, notice_id)
    notice, incident, corrects_version = loaded.notice, loaded.incident, loaded.corrects_version
    languages = [lang for lang in LANGUAGES if plan.languages[lang]] or list(LANGUAGES)
    renders = _Renders(settings, notice, incident, corrects_version, ack_link, now)
    messages = {lang: renders.messages(lang) for lang in languages}
    audience = {
        **plan.as_json(),
        "contacts": plan.contacts,
        "deliveries": plan.total,
        "by_tier_channel": _by_tier_channel(plan),
        "languages": dict(plan.languages),
        "sms_segments": sum(renders.sms(lang, tier)[1].segments * count for (lang, tier), count in plan.sms.items()),
    }
    warnings = [
        *language_gaps(notice.fields, languages, plan),
        *promise_warnings(notice, incident, now),
        *[
            {"code": "sms_cut", "language": lang, "detail": f"the {lang} SMS was shortened to fit its segment budget"}
            for lang in languages
            if messages[lang]["sms"]["cut"]
        ],
        *audience_warnings(plan),
    ]
    return Preview(_notice_json(notice, corrects_version), messages, audience, warnings)


def sample_recipient(lang: str, tier: int) -> Recipient:
    name, partner_name = SAMPLE_NAMES[lang]
    return Recipient(name, partner_name, tier)


class _Renders:
    """The notice rendered by the dispatcher's own composer, for a sample recipient per language."""

    def __init__(
        self,
        settings: Settings,
        notice: Notice,
        incident: Incident | None,
        corrects_version: int | None,
        ack_link: AckLink,
        now: float,
    ) -> None:
        self.settings, self.notice, self.incident = settings, notice, incident
        self.corrects_version, self.ack_link, self.now = corrects_version, ack_link, now
        self._sms: dict[tuple[str, int], tuple[str, SegmentInfo, bool]] = {}

    def _delivery(self, lang: str, channel: str, tier: int) -> Delivery:
        return Delivery(
            id=SAMPLE_DELIVERY_ID,
            notice_id=self.notice.id,
            incident_id=self.notice.incident_id,
            partner_id="",
            contact_id=0,
            tier=tier,
            channel=channel,
            address="",
            language=lang,
            priority=0,
            status="pending",
            attempts=0,
            next_attempt_at=self.now,
            message_id="",
            escalation_step=0,
            created_at=self.now,
            updated_at=self.now,
            recipient=sample_recipient(lang, tier),
        )

    def _compose(self, lang: str, channel: str, tier: int) -> tuple[str | None, str, str | None, str | None]:
        delivery = self._delivery(lang, channel, tier)
        ack_url = self.ack_link(delivery)
        message, _ = compose.outbound(
            self.settings, delivery, self.notice, self.incident, ack_url, self.corrects_version
        )
        return message.subject, message.text, message.html, ack_url

    def sms(self, lang: str, tier: int) -> tuple[str, SegmentInfo, bool]:
        """(text, segments, cut) of the SMS a contact of this tier reads (tiers differ by the link)."""
        if (lang, tier) not in self._sms:
            _, text, _, ack_url = self._compose(lang, "sms", tier)
            recipient = sample_recipient(lang, tier)
            cut = compose.sms_cut(
                self.settings, self.notice, self.incident, lang, recipient, ack_url, self.corrects_version
            )
            self._sms[lang, tier] = (text, sms_segments(text), cut)
        return self._sms[lang, tier]

    def messages(self, lang: str) -> dict[str, Any]:
        subject, text, html, _ = self._compose(lang, "email", 1)
        sms_text, info, cut = self.sms(lang, 1)
        return {
            "email": {"subject": subject, "text": text, "html": html},
            "sms": {
                "text": sms_text,
                "length": len(sms_text),
                "units": info.units,
                "encoding": info.encoding,
                "segments": info.segments,
                "max_segments": self.settings.sms.max_segments,
                "cut": cut,
            },
        }


def _by_tier_channel(plan: planner.PlanSummary) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for (tier, channel), count in sorted(plan.by_tier_channel.items()):
        table.setdefault(str(tier), {})[channel] = count
    return table


def _notice_json(notice: Notice, corrects_version: int | None) -> dict[str, Any]:
    return {
        "kind": notice.kind,
        "version": notice.version,
        "corrects_version": corrects_version,
        "severity": notice.severity,
        "status": notice.status,
        "fields": notice.fields,
        "audience": notice.audience,
        "next_update_at": iso(notice.next_update_at),
    }


def written_in(text: str) -> str | None:
    """The one language a single-language text is obviously written in, if any."""
    japanese, latin = bool(_JAPANESE.search(text)), bool(_LATIN.search(text))
    if japanese and not latin:
        return "ja"
    if latin and not japanese:
        return "en"
    return None


def _texts(fields: dict[str, Any]) -> list[tuple[str, Any]]:
    found = [(f"fields.{name}", fields[name]) for name in TEXT_FIELDS if fields.get(name) is not None]
    responsible = fields.get("responsible") or {}
    found += [
        (f"fields.responsible.{name}", responsible[name]) for name in ("name", "department") if responsible.get(name)
    ]
    return found


def missing_languages(value: Any, languages: list[str]) -> list[str]:
    if isinstance(value, dict):
        return [lang for lang in languages if not str(value.get(lang) or "").strip()]
    language = written_in(str(value))
    return [lang for lang in languages if language is not None and lang != language]


def language_gaps(fields: dict[str, Any], languages: list[str], plan: planner.PlanSummary) -> list[dict[str, Any]]:
    """Text some recipients would read in the other language (or in none)."""
    warnings = []
    for path, value in _texts(fields):
        for lang in missing_languages(value, languages):
            readers = plan.languages[lang]
            warnings.append(
                {
                    "code": "missing_language",
                    "field": path,
                    "language": lang,
                    "contacts": readers,
                    "detail": f"{path} has no {lang} text; {readers} contacts read {lang}",
                }
            )
    return warnings


def promise_warnings(notice: Notice, incident: Incident | None, now: float) -> list[dict[str, Any]]:
    promised = notice.next_update_at
    if promised is not None and promised < now:
        return [
            {"code": "next_update_past", "field": "fields.next_update_at", "detail": "the next update time is past"}
        ]
    still_open = incident is not None and incident.status != "resolved" and notice.kind != "resolved"
    if promised is None and still_open:
        return [
            {
                "code": "next_update_missing",
                "field": "fields.next_update_at",
                "detail": "the incident is open but the notice promises no next update time",
            }
        ]
    return []


def audience_warnings(plan: planner.PlanSummary) -> list[dict[str, Any]]:
    warnings: list[dict[str, Any]] = []
    if plan.total == 0:
        warnings.append({"code": "no_recipients", "detail": "nobody would receive this notice"})
    if plan.without_tier1:
        warnings.append(
            {
                "code": "no_tier1_contact",
                "count": plan.without_tier1,
                "partners": plan.without_tier1_listed,
                "detail": f"{plan.without_tier1} partners have no reachable tier-1 contact for this notice",
            }
        )
    return warnings
