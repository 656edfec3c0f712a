"""Composition: a notice plus a recipient → the exact text a channel sends, and its hash."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, replace
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import escape

from channels.base import OutboundMessage
from service.notices import LANGUAGES, iso, localise, render_fields, to_datetime
from service.partner_text import service_names
from service.render import Renderer
from service.settings import Settings
from service.store.models import Delivery, Incident, Notice, Recipient
from service.volume import partner_note

NOBODY = Recipient(None, None, None)  # the evidence copy greets no one in particular
DRILL_HEADER = "X-Herald-Drill"  # on every message a drill sends: sandbox | real
PARTS_BY_CHANNEL = {"email": ("subject", "txt", "html"), "sms": ("sms",), "webhook": ("subject", "txt")}


@lru_cache(maxsize=8)
def _renderer(timezone: str, max_sms_segments: int, own_dir: str | None) -> Renderer:
    return Renderer(timezone=timezone, max_sms_segments=max_sms_segments, own_dir=Path(own_dir) if own_dir else None)


def renderer(settings: Settings) -> Renderer:
    return _renderer(settings.company.timezone, settings.sms.max_segments, settings.templates.directory)


def context(
    settings: Settings,
    notice: Notice,
    incident: Incident | None,
    lang: str,
    recipient: Recipient | None = None,
    ack_url: str | None = None,
    corrects_version: int | None = None,
    reminder: bool = False,
    volume_note: str | None = None,
) -> dict[str, Any]:
    fields = render_fields(notice.fields, lang)
    fields.setdefault("components", (incident.components if incident else None) or [])
    company = settings.company
    return {
        "kind": notice.kind,
        "version": notice.version,
        "lang": lang,
        "corrects_version": corrects_version,
        # Sent again by an escalation step: worded as a reminder (【再送】/[Reminder]).
        "reminder": reminder,
        # Part of a drill (訓練): every subject, SMS and text says so.
        "drill": notice.drill is not None,
        "company": {
            "name": company.name_ja if lang == "ja" else company.name_en,
            # Each recipient's own partner page when the dispatcher has one, else the status page.
            "status_page_url": (recipient.page_url if recipient else None) or company.status_page_url,
        },
        "incident": _incident_context(incident, lang),
        "notice": fields,
        "services": service_names(settings, fields["components"], lang),
        "recipient": asdict(recipient or NOBODY),
        "ack_url": ack_url,
        # A reply to the notice email reaches us as a question (see service/questions.py).
        "can_reply": bool(settings.questions.reply_address),
        "volume_note": volume_note,
    }


def _incident_context(incident: Incident | None, lang: str) -> dict[str, Any] | None:
    if incident is None:
        return None
    return {
        "id": incident.id,
        "title": localise(incident.title, lang),
        "severity": incident.severity,
        "status": incident.status,
        "components": incident.components or [],
        "started_at": to_datetime(incident.created_at),
    }


def sms_cut(
    settings: Settings,
    notice: Notice,
    incident: Incident | None,
    lang: str,
    recipient: Recipient | None,
    ack_url: str | None,
    corrects_version: int | None = None,
) -> bool:
    """Whether this recipient's SMS had to be shortened to fit `[sms] max_segments`."""
    ctx = context(settings, notice, incident, lang, recipient, ack_url, corrects_version)
    return renderer(settings).sms_overflows(notice.kind, lang, ctx)


def evidence(settings: Settings, notice: Notice, incident: Incident | None) -> dict[str, Any]:
    """The notice's text in every language, as published: kept with the notice as evidence."""
    result = {}
    for lang in LANGUAGES:
        rendered = renderer(settings).render(notice.kind, lang, context(settings, notice, incident, lang))
        result[lang] = {"subject": rendered.subject, "txt": rendered.txt, "html": rendered.html, "sms": rendered.sms}
    return result


def message_id(settings: Settings, notice_id: int, contact_id: int, channel: str, step: int = 0) -> str:
    """Stable across retries and restarts, so receivers can de-duplicate an at-least-once send."""
    return f"<herald.n{notice_id}.c{contact_id}.{channel}.{step}@{sender_domain(settings)}>"


@lru_cache(maxsize=4)
def _domain(from_address: str) -> str:
    return parseaddr(from_address)[1].rpartition("@")[2] or "herald.invalid"


def sender_domain(settings: Settings) -> str:
    return _domain(settings.smtp.from_address)


# Rendered once per notice, language and part, then personalised: a 10,000-recipient broadcast
# renders its templates a handful of times instead of 30,000. SMS is rendered per recipient
# because fitting it into its segments depends on the exact text.
_SLOTS = {
    "name": "\ue000RN\ue000",
    "partner_name": "\ue000PN\ue000",
    "ack_url": "\ue000AK\ue000",
    "page_url": "\ue000PG\ue000",
}
# A shared part, split once at its slots: literal text at even indexes, slot names at odd ones.
Pieces = tuple[str, ...]
_SLOT_NAMES = {marker: name for name, marker in _SLOTS.items()}
_SLOT_MARKERS = re.compile("(" + "|".join(re.escape(marker) for marker in _SLOTS.values()) + ")")
_shared_parts: dict[tuple[Any, ...], Pieces] = {}
_SHARED_LIMIT = 512


def _shared_part(
    settings: Settings,
    notice: Notice,
    incident: Incident | None,
    lang: str,
    part: str,
    has_ack: bool,
    tier: int,
    corrects_version: int | None,
    reminder: bool,
    volume_note: str | None = None,
    has_page: bool = False,
) -> Pieces:
    # A dry run's notice is rolled back and SQLite may give its id to the next notice: the
    # publication time tells the two apart.
    key: tuple[Any, ...] = (notice.id, notice.version, notice.published_at, lang, part, has_ack, tier)
    key += (corrects_version, reminder, volume_note, has_page, id(settings))
    cached = _shared_parts.get(key)
    if cached is None:
        page_slot = _SLOTS["page_url"] if has_page else None
        recipient = Recipient(_SLOTS["name"], _SLOTS["partner_name"], tier, page_slot)
        ack_slot = _SLOTS["ack_url"] if has_ack else None
        ctx = context(settings, notice, incident, lang, recipient, ack_slot, corrects_version, reminder, volume_note)
        rendered = _SLOT_MARKERS.split(renderer(settings).render_part(notice.kind, lang, part, ctx))
        cached = tuple(_SLOT_NAMES[p] if n % 2 else p for n, p in enumerate(rendered))
        if len(_shared_parts) >= _SHARED_LIMIT:
            _shared_parts.pop(next(iter(_shared_parts)))
        _shared_parts[key] = cached
    return cached


def _personalise(pieces: Pieces, part: str, recipient: Recipient, ack_url: str | None) -> str:
    """The shared part with this recipient's values in its slots, in one pass (a value that
    happens to contain a slot marker is never filled in again)."""
    if len(pieces) == 1:
        return pieces[0]
    values = {
        "name": recipient.name or "",
        "partner_name": recipient.partner_name or "",
        "ack_url": ack_url or "",
        "page_url": recipient.page_url or "",
    }
    if part == "html":
        values = {slot: str(escape(value)) for slot, value in values.items()}
    filled = list(pieces)
    filled[1::2] = [values[slot] for slot in pieces[1::2]]
    return "".join(filled)


def outbound(
    settings: Settings,
    delivery: Delivery,
    notice: Notice,
    incident: Incident | None,
    ack_url: str | None = None,
    corrects_version: int | None = None,
    page_url: str | None = None,
    reply_to: str | None = None,
) -> tuple[OutboundMessage, str]:
    """The message `delivery` sends (greeting its `recipient`, linking `page_url`, the contact's
    own page, where it would link the status page), and the hash of its text."""
    lang = delivery.language
    recipient = replace(delivery.recipient or Recipient(None, None, delivery.tier), page_url=page_url)
    reminder = bool(delivery.escalation_step)
    parts = {}
    detail = delivery.detail
    for part in PARTS_BY_CHANNEL.get(delivery.channel, ("subject", "txt")):
        if part == "sms":
            note = partner_note(detail, lang, short=True)
            ctx = context(settings, notice, incident, lang, recipient, ack_url, corrects_version, reminder, note)
            parts[part] = renderer(settings).render_part(notice.kind, lang, part, ctx)
            continue
        shared = _shared_part(
            settings,
            notice,
            incident,
            lang,
            part,
            ack_url is not None,
            delivery.tier,
            corrects_version,
            reminder,
            partner_note(detail, lang) if part != "subject" else None,
            has_page=bool(recipient.page_url),
        )
        parts[part] = _personalise(shared, part, recipient, ack_url)
    responsible = notice.fields.get("responsible") or {}
    if delivery.channel == "webhook":
        parts = {"json": webhook_body(delivery, notice, incident, recipient, parts, ack_url, corrects_version)}
    message = OutboundMessage(
        delivery_id=delivery.id,
        message_id=delivery.message_id,
        to=delivery.address,
        text=parts.get("sms") or parts.get("json") or parts.get("txt", ""),
        subject=parts.get("subject"),
        html=parts.get("html"),
        reply_to=reply_to or responsible.get("email"),
        headers={DRILL_HEADER: notice.drill} if notice.drill else {},
    )
    digest = hashlib.sha256("\x1f".join(parts[p] for p in sorted(parts)).encode()).hexdigest()
    return message, digest


def webhook_body(
    delivery: Delivery,
    notice: Notice,
    incident: Incident | None,
    recipient: Recipient,
    parts: dict[str, str],
    ack_url: str | None,
    corrects_version: int | None,
) -> str:
    """The JSON a partner's system receives: the Standard Webhooks envelope (type, timestamp, data)
    around the notice in the contact's language, both as text and as fields. Nothing in it changes
    between retries, so its hash is the evidence of what was sent."""
    lang = delivery.language
    fields = render_fields(notice.fields, lang)
    published = notice.published_at or notice.created_at
    payload = {
        "type": "notice.published",
        "timestamp": iso(published) if isinstance(published, int | float) else published,
        "data": {
            "message_id": delivery.message_id,
            "language": lang,
            "notice": {
                "id": notice.id,
                "kind": notice.kind,
                "version": notice.version,
                "corrects_version": corrects_version,
                "fields": {name: _json_value(value) for name, value in fields.items() if value is not None},
            },
            "incident": None
            if incident is None
            else {
                "id": incident.id,
                "title": localise(incident.title, lang),
                "severity": incident.severity,
                "status": incident.status,
                "components": incident.components or [],
            },
            "recipient": {
                "partner_name": recipient.partner_name,
                "name": recipient.name,
                "tier": delivery.tier,
            },
            "subject": parts.get("subject"),
            "text": parts.get("txt"),
            "acknowledge_url": ack_url,
        },
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
