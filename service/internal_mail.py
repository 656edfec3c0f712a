"""Messages that are not a partner's notice but travel the same outbox: an answer to a partner's
question, and an account owner's copy of a notice with the partner's delivery and acknowledgement
status. Reminders to our operators are operator notices (service/operators.py). The dispatcher
composes these with the data read here, in the batch's read transaction, just before sending.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import OutboundMessage
from service import compose
from service.notices import localise, to_datetime
from service.settings import Settings
from service.store import deliveries as delivery_store
from service.store import owners as owner_store
from service.store import questions as question_store
from service.store.models import Delivery, Incident, Notice, Recipient

Composed = tuple[OutboundMessage, str]
# The deliveries composed here; a partner's notice and an operator notice are composed like notices.
LETTERS = frozenset({"internal", "answer"})


async def compose_letter(
    conn: AsyncConnection,
    settings: Settings,
    delivery: Delivery,
    notice: Notice,
    incident: Incident | None,
    reply_address: Callable[[Delivery], str | None] = lambda delivery: None,
) -> Composed:
    if delivery.purpose == "internal":
        return await _owner_copy(conn, settings, delivery, notice, incident)
    if delivery.question_id is None:
        raise ValueError(f"delivery {delivery.id} ({delivery.purpose}) names no question")
    question = await question_store.get_question(conn, delivery.question_id)
    if question is None:
        raise ValueError(f"delivery {delivery.id} answers a missing question {delivery.question_id}")
    names = await delivery_store.recipients(conn, [question["contact_id"]])
    asker = names.get(question["contact_id"], {})
    lang = delivery.language
    context = {
        "company": _company(settings, lang),
        "recipient": {"name": asker.get("name"), "partner_name": asker.get("partner_name")},
        "question": {**question, "asked_at": to_datetime(question["asked_at"])},
        "notice_subject": ((notice.rendered or {}).get(lang) or {}).get("subject", ""),
        "incident": {"id": notice.incident_id},
        "answer": localise(question["answer"], lang),
    }
    # A follow-up reply to the answer is matched like a reply to the notice itself.
    reply_to = None
    if question["delivery_id"]:
        reply_to = reply_address(replace(delivery, id=question["delivery_id"], channel="email", purpose="partner"))
    return _letter(settings, delivery, "question_answer", context, reply_to)


def _company(settings: Settings, lang: str) -> dict[str, Any]:
    company = settings.company
    return {"name": company.name_ja if lang == "ja" else company.name_en, "status_page_url": company.status_page_url}


def _letter(
    settings: Settings, delivery: Delivery, name: str, context: dict[str, Any], reply_to: str | None
) -> Composed:
    renderer = compose.renderer(settings)
    subject = renderer.render_letter(name, delivery.language, "subject", context)
    text = renderer.render_letter(name, delivery.language, "txt", context)
    message = OutboundMessage(
        delivery_id=delivery.id,
        message_id=delivery.message_id,
        to=delivery.address,
        text=text,
        subject=subject,
        reply_to=reply_to,
    )
    return message, _digest(subject, text)


def _digest(*parts: str | None) -> str:
    return hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()


async def _owner_copy(
    conn: AsyncConnection, settings: Settings, delivery: Delivery, notice: Notice, incident: Incident | None
) -> Composed:
    """The notice as the partner reads it, in the owner's language, under an internal header with
    each of the partner's contacts: what they were sent, whether it arrived, whether they
    acknowledged it (and the previous notice), and how to call them."""
    owner = await owner_store.get_owner(conn, delivery.owner_id) if delivery.owner_id else None
    lang = delivery.language
    contacts = await owner_store.partner_status(conn, delivery.partner_id, notice)
    partner_name = contacts[0]["partner_name"] if contacts else delivery.partner_id
    # Composed as the partner's tier-1 contacts read it, without their acknowledgement link.
    stand_in = replace(delivery, tier=1, recipient=Recipient((owner or {}).get("name"), partner_name, 1))
    notice_message, _ = compose.outbound(settings, stand_in, notice, incident, None)
    renderer = compose.renderer(settings)
    context = {
        "company": _company(settings, lang),
        "partner": {"id": delivery.partner_id, "name": partner_name},
        "contacts": contacts,
        "at": to_datetime(time.time()),
        "version": notice.version,
        "told": sum(1 for c in contacts if c["deliveries"]),
        "acknowledged": sum(1 for c in contacts if any(d["acknowledged_at"] for d in c["deliveries"])),
    }
    if delivery.channel == "sms":
        header = renderer.render_letter("owner_header", lang, "sms", context).strip()
        text = f"{header}\n{notice_message.text}"
        return _replace(notice_message, text=text), _digest(text)
    subject = renderer.render_letter("owner_header", lang, "subject", context) + (notice_message.subject or "")
    text = renderer.render_letter("owner_header", lang, "txt", context) + "\n" + notice_message.text
    html = notice_message.html
    if html:
        block = renderer.render_letter("owner_header", lang, "html", context)
        start = html.find(">", html.find("<body")) + 1
        html = html[:start] + block + html[start:]
    message = _replace(notice_message, subject=subject, text=text, html=html)
    return message, _digest(subject, text, html)


def _replace(message: OutboundMessage, **changes: Any) -> OutboundMessage:
    """An owner's copy replies to nobody in particular: it is for reading and calling."""
    return replace(message, reply_to=None, **changes)
