"""Composition: a notice plus a recipient → the exact text a channel sends, and its hash."""

from __future__ import annotations

import hashlib
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from channels.base import OutboundMessage
from service.notices import LANGUAGES, localise, render_fields, to_datetime
from service.render import Renderer
from service.settings import Settings

PARTS_BY_CHANNEL = {"email": ("subject", "txt", "html"), "sms": ("sms",), "webhook": ("subject", "txt")}


@lru_cache(maxsize=8)
def _renderer(timezone: str, max_sms_segments: int) -> Renderer:
    return Renderer(timezone=timezone, max_sms_segments=max_sms_segments)


def renderer(settings: Settings) -> Renderer:
    return _renderer(settings.company.timezone, settings.sms.max_segments)


def context(
    settings: Settings,
    notice: dict[str, Any],
    incident: dict[str, Any] | None,
    lang: str,
    recipient: dict[str, Any] | None = None,
    ack_url: str | None = None,
    corrects_version: int | None = None,
) -> dict[str, Any]:
    fields = render_fields(notice["fields"], lang)
    fields.setdefault("components", (incident or {}).get("components") or [])
    company = settings.company
    return {
        "kind": notice["kind"],
        "version": notice["version"],
        "lang": lang,
        "corrects_version": corrects_version,
        "company": {
            "name": company.name_ja if lang == "ja" else company.name_en,
            "status_page_url": company.status_page_url,
        },
        "incident": _incident_context(incident, lang),
        "notice": fields,
        "recipient": recipient or {"name": None, "partner_name": None, "tier": None},
        "ack_url": ack_url,
    }


def _incident_context(incident: dict[str, Any] | None, lang: str) -> dict[str, Any] | None:
    if incident is None:
        return None
    return {
        "id": incident["id"],
        "title": localise(incident["title"], lang),
        "severity": incident["severity"],
        "status": incident["status"],
        "components": incident.get("components") or [],
        "started_at": to_datetime(incident.get("created_at")),
    }


def evidence(settings: Settings, notice: dict[str, Any], incident: dict[str, Any] | None) -> dict[str, Any]:
    """The notice's text in every language, as published: kept with the notice as evidence."""
    result = {}
    for lang in LANGUAGES:
        rendered = renderer(settings).render(notice["kind"], lang, context(settings, notice, incident, lang))
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


def outbound(
    settings: Settings,
    delivery: dict[str, Any],
    notice: dict[str, Any],
    incident: dict[str, Any] | None,
    recipient: dict[str, Any] | None,
    ack_url: str | None = None,
    corrects_version: int | None = None,
) -> tuple[OutboundMessage, str]:
    lang = delivery["language"]
    ctx = context(settings, notice, incident, lang, recipient, ack_url, corrects_version)
    parts = {
        part: renderer(settings).render_part(notice["kind"], lang, part, ctx)
        for part in PARTS_BY_CHANNEL.get(delivery["channel"], ("subject", "txt"))
    }
    responsible = notice["fields"].get("responsible") or {}
    message = OutboundMessage(
        delivery_id=delivery["id"],
        message_id=delivery["message_id"],
        to=delivery["address"],
        text=parts.get("sms") or parts.get("txt", ""),
        subject=parts.get("subject"),
        html=parts.get("html"),
        reply_to=responsible.get("email"),
    )
    digest = hashlib.sha256("\x1f".join(parts[p] for p in sorted(parts)).encode()).hexdigest()
    return message, digest
