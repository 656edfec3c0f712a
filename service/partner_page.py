"""A page of their own for each partner contact, reached by a signed, expiring link in every notice.

Token: `<contact id>.<expiry>.<signature>` like acknowledgement links, but signed with a key derived
from `[ack] secret` for this purpose only, so an acknowledgement token never opens a partner page
or the other way round. The expiry counts from the delivery's creation, so every retry of a
delivery renders the same link (and body hash).

The page shows what the partner was told (each notice's text as published, in the contact's
language) and each incident's timeline as the partner lived it (only the notices it was sent and
only its own contacts' acknowledgements); it lets a contact acknowledge the notices sent to them,
ask a question about a notice sent to their partner (the same question as from the
acknowledgement page or by email: `service/questions.py`) and read their questions' answers, and
lets a tier-1 contact ask to change the partner's contacts; the change is applied only when an
admin approves it. Reading the page writes nothing: link scanners open every link in a mail.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from service import acks, questions, timeline
from service.acks import AckSigner, ExpiredToken, InvalidToken
from service.directory import ContactSpec
from service.directory.validation import issues
from service.errors import Conflict, NotFound
from service.incidents import incident_json
from service.notices import iso
from service.report import promises_of, status_history
from service.settings import Settings
from service.store import partner_view
from service.store import partners as partner_store
from service.store import suppressions as suppression_store
from service.store.models import Delivery
from service.store.records import audit

__all__ = ["ExpiredToken", "InvalidToken"]

PURPOSE = b"herald partner page"
CHANGE_FIELDS = ("name", "email", "phone", "language", "channels")
MAX_ID = 2**63 - 1  # a larger number from a form is no notice (and no PostgreSQL bigint)


def page_signer(settings: Settings) -> AckSigner:
    configured = settings.ack.secret.get_secret_value().encode() if settings.ack.secret else acks.process_secret()
    key = hmac.new(configured, PURPOSE, hashlib.sha256).digest()
    return AckSigner(key, settings.partner_page.ttl_days * 86400.0)


def page_link(settings: Settings, signer: AckSigner) -> Callable[[Delivery], str | None]:
    """The Dispatcher's `page_link`: this delivery's contact's page, instead of the status page."""
    base = settings.server.public_base_url.rstrip("/")

    def link(delivery: Delivery) -> str | None:
        return f"{base}/p/{signer.token(delivery.contact_id, delivery.created_at + signer.ttl_seconds)}"

    return link


@dataclass(frozen=True)
class Viewer:
    """The contact a valid token names, with its partner."""

    contact: dict[str, Any]
    partner: dict[str, Any]

    @property
    def language(self) -> str:
        return str(self.contact.get("language") or self.partner["language"])

    @property
    def may_request_changes(self) -> bool:
        return bool(self.contact["tier"] == 1)


async def viewer_of(conn: AsyncConnection, contact_id: int) -> Viewer | None:
    contact = await partner_view.contact_by_id(conn, contact_id)
    if contact is None:
        return None
    partner = await partner_store.get_partner(conn, contact["partner_id"], with_contacts=True)
    return Viewer(contact, partner) if partner is not None else None


async def page_data(
    conn: AsyncConnection, settings: Settings, viewer: Viewer, now: float | None = None
) -> dict[str, Any]:
    """Everything the page shows, read-only."""
    now = time.time() if now is None else now
    partner, lang = viewer.partner, viewer.language
    since = now - settings.partner_page.history_days * 86400.0
    found = await partner_view.incidents_for(conn, partner["id"], partner["components"] or [], since)
    incident_ids = [i["id"] for i in found]
    sent = await partner_view.notices_sent(conn, partner["id"], incident_ids)
    notice_ids = [n["id"] for n in sent]
    mine = await partner_view.deliveries_of_contact(conn, viewer.contact["id"], notice_ids)
    acknowledged = await partner_view.acknowledgements_of(conn, partner["id"], notice_ids)
    asked = await partner_view.questions_of_contact(conn, viewer.contact["id"], incident_ids)
    suppressed = await suppression_store.active(conn)
    by_incident: dict[int, list[dict[str, Any]]] = {}
    for notice in sent:
        by_incident.setdefault(notice["incident_id"], []).append(notice)
    version_of = {n["id"]: n["version"] for n in sent}
    return {
        "partner": partner,
        "contact": viewer.contact,
        "lang": lang,
        "may_request_changes": viewer.may_request_changes,
        "incidents": [
            {
                **incident,
                "timeline": [_notice_entry(n, lang, mine, settings) for n in by_incident.get(incident["id"], [])],
                "story": partner_story(incident, by_incident.get(incident["id"], []), acknowledged, now),
                "questions": [
                    _question_entry(q, lang, version_of) for q in asked if q["incident_id"] == incident["id"]
                ],
            }
            for incident in found
        ],
        "contacts": [_contact_entry(c, suppressed) for c in partner["contacts"]],
        "pending_requests": await partner_view.list_requests(conn, "pending", partner["id"]),
        "question_max": settings.questions.max_length,
    }


def partner_story(
    incident: dict[str, Any],
    sent: list[dict[str, Any]],
    acknowledged: list[tuple[int, int, int, float]],
    now: float,
) -> timeline.Story | None:
    """The incident's timeline as this partner lived it: the statuses it was told, the notices it
    was sent and the promises they made (kept by the next notice *it* received), and only its own
    contacts' acknowledgements. None before the partner was sent anything."""
    if not sent:
        return None
    ids = {n["id"] for n in sent}
    promises = promises_of(sent, now)
    return timeline.Story(
        incident={**incident_json(incident), "status_history": status_history(incident, sent)},
        notices=[
            {
                "id": n["id"],
                "version": n["version"],
                "kind": n["kind"],
                "published_at": iso(n["published_at"]),
                "promise": promises[n["id"]],
            }
            for n in sorted(sent, key=lambda n: n["published_at"])
        ],
        acks=timeline.first_acknowledgements(a for a in acknowledged if a[0] in ids),
        generated_at=str(iso(now)),
    )


def _question_entry(question: dict[str, Any], lang: str, version_of: dict[int, int]) -> dict[str, Any]:
    answer = question["answer"] or {}
    return {
        "id": question["id"],
        "version": version_of.get(question["notice_id"]),
        "body": question["body"],
        "asked_at": question["asked_at"],
        "answer": answer.get(question["language"]) or answer.get(lang) or next(iter(answer.values()), None),
        "answered_at": question["answered_at"],
    }


def _notice_entry(notice: dict[str, Any], lang: str, mine: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    rendered = (notice["rendered"] or {}).get(lang) or {}
    text = _without_salutation(rendered.get("txt") or "")
    received = [d for d in mine if d["notice_id"] == notice["id"]]
    acknowledged = [d["acknowledged_at"] for d in received if d["acknowledged_at"] is not None]
    return {
        "id": notice["id"],
        "version": notice["version"],
        "kind": notice["kind"],
        "published_at": notice["published_at"],
        "subject": rendered.get("subject"),
        "text": text,
        "acknowledged_at": min(acknowledged) if acknowledged else None,
        "can_acknowledge": bool(received) and not acknowledged and received[0]["tier"] in settings.ack.tiers,
    }


def _without_salutation(text: str) -> str:
    """The published text is kept without a recipient ("Dear ," / "様"): the page starts after it."""
    head, blank, rest = text.lstrip("\n").partition("\n\n")
    if blank and (head.startswith("Dear") or head.rstrip().endswith("様")):
        return rest
    return text


def _contact_entry(contact: dict[str, Any], suppressed: frozenset[tuple[str, str]]) -> dict[str, Any]:
    return {
        **contact,
        "email_suppressed": ("email", contact["email"] or "") in suppressed,
        "phone_suppressed": ("sms", contact["phone"] or "") in suppressed,
    }


class Refused(Exception):
    """A form the page cannot accept: `field` names the form field, `message` says why (a key the
    page words in the contact's language), `status` is the HTTP answer."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


async def acknowledge_notice(
    conn: AsyncConnection, viewer: Viewer, notice_id: int, user_agent: str | None
) -> acks.Acknowledgement:
    """The contact confirms a notice sent to them; refused (404) when it was not sent to them."""
    received = (
        await partner_view.deliveries_of_contact(conn, viewer.contact["id"], [notice_id]) if notice_id <= MAX_ID else []
    )
    if not received:
        raise Refused("", "not_yours", 404)
    return await acks.acknowledge(conn, received[0], user_agent)


async def ask_question(conn: AsyncConnection, settings: Settings, viewer: Viewer, notice: str, text: str) -> int:
    """A question about a notice sent to the viewer's partner, recorded like one from the
    acknowledgement page or a reply (reminders, answers, the report follow from there)."""
    delivery = None
    if notice.isdigit() and int(notice) <= MAX_ID:
        delivery = await partner_view.delivery_of_notice(conn, viewer.partner["id"], int(notice), viewer.contact["id"])
    if delivery is None:
        raise Refused("notice", "not_sent", 404)
    problem = questions.body_problem(settings, text)
    if problem is not None:
        raise Refused("question", problem)
    return await questions.ask(conn, settings, delivery, viewer.contact, text, "partner_page")


async def request_change(conn: AsyncConnection, viewer: Viewer, target_key: str | None, form: dict[str, Any]) -> int:
    """Validate a tier-1 contact's request and keep it for an admin; returns its id."""
    if not viewer.may_request_changes:
        raise Refused("", "only tier-1 contacts may request changes", 403)
    partner = viewer.partner
    current = next((c for c in partner["contacts"] if c["key"] == target_key), None) if target_key else None
    if target_key and current is None:
        raise Refused("contact", f"no contact {target_key!r}")
    wanted = {
        "key": current["key"] if current else _new_key(partner, form),
        "tier": current["tier"] if current else form.get("tier"),
        **{name: form.get(name) for name in CHANGE_FIELDS},
    }
    try:
        spec = ContactSpec.model_validate(wanted)
    except ValidationError as exc:
        loc, message = issues(exc)[0]
        raise Refused(str(loc[0]) if loc else "", message) from exc
    request_id = await partner_view.insert_request(conn, partner["id"], viewer.contact["id"], target_key, spec.row())
    await audit(
        conn,
        "contact_change.requested",
        "contact_change_request",
        request_id,
        f"contact:{viewer.contact['id']}",
        {"partner_id": partner["id"], "contact_key": target_key, "fields": sorted(_changed(current, spec.row()))},
    )
    return request_id


def _new_key(partner: dict[str, Any], form: dict[str, Any]) -> str:
    taken = {c["key"] for c in partner["contacts"]}
    number = 1
    while f"contact-{number}" in taken:
        number += 1
    return f"contact-{number}"


def _changed(current: dict[str, Any] | None, wanted: dict[str, Any]) -> set[str]:
    if current is None:
        return set(CHANGE_FIELDS) | {"tier"}
    return {name for name in CHANGE_FIELDS if current.get(name) != wanted.get(name)}


async def decide(
    conn: AsyncConnection, request_id: int, approve: bool, actor: str | None, note: str | None = None
) -> dict[str, Any]:
    """Apply (approve) or refuse a pending request; the directory changes only on approval."""
    found = await partner_view.get_request(conn, request_id, for_update=True)
    if found is None:
        raise NotFound(f"no contact change request {request_id}")
    if found["state"] != "pending":
        raise Conflict(f"request {request_id} was {found['state']} already", code="already_decided")
    change = ContactSpec.model_validate(found["change"]).row()
    if approve:
        existing = await partner_store.get_contact(conn, found["partner_id"], change["key"])
        if existing is None:
            await partner_store.insert_contact(conn, found["partner_id"], change)
        else:
            await partner_store.update_contact(conn, found["partner_id"], change["key"], change)
    state = "approved" if approve else "rejected"
    await partner_view.decide_request(conn, request_id, state, actor, note)
    await audit(
        conn,
        f"contact_change.{state}",
        "contact_change_request",
        request_id,
        actor,
        {"partner_id": found["partner_id"], "contact_key": change["key"]},
    )
    decided = await partner_view.get_request(conn, request_id)
    assert decided is not None  # noqa: S101 - decided in this transaction
    return decided
