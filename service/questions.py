"""Partner questions: asked on the acknowledgement page or by replying to a notice email, answered
by an operator in the partner's language, sent to the asker through the dispatcher, and optionally
published as a Q&A in the incident's next notice. Unanswered questions remind the on-call operators.

A reply is matched to its notice by the signed token in the reply address
(`reply+q<delivery id>-<signature>@domain`), else by the Herald Message-ID it names in
`In-Reply-To` / `References`. The sender must be a contact of the partner the notice went to:
a forged token, or a reply from another partner's contact, is refused; mail that matches no
notice is kept as unmatched for an operator to read. Nothing piped in is ever dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys, operators, planner
from service.acks import process_secret
from service.errors import Conflict, InvalidInput, MissingField, NotFound
from service.ingest.mail import InboundMail
from service.notices import LANGUAGES, Text, written_in
from service.periodic import Periodic
from service.settings import Settings
from service.store import Store
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store import questions as question_store
from service.store import receipts as receipt_store
from service.store.models import Delivery
from service.store.records import audit

log = logging.getLogger("herald.questions")

Source = Literal["ack_page", "partner_page", "email"]
REPLY_TOKEN = re.compile(r"\+(q(\d+)-([a-z2-7]+))@")
SIGNATURE_BYTES = 10


class InvalidReplyToken(Exception):
    """The reply address carries a token Herald did not sign."""


class ReplyTokens:
    """Signed reply addresses: one per delivery, lower-case so mail systems cannot mangle them."""

    def __init__(self, secret: bytes, reply_address: str | None) -> None:
        self._secret = secret
        self.reply_address = reply_address

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplyTokens:
        configured = settings.ack.secret.get_secret_value() if settings.ack.secret else ""
        return cls(configured.encode() if configured else process_secret(), settings.questions.reply_address)

    def token(self, delivery_id: int) -> str:
        digest = hmac.new(self._secret, f"reply:{int(delivery_id)}".encode(), hashlib.sha256).digest()
        return f"q{int(delivery_id)}-{base64.b32encode(digest[:SIGNATURE_BYTES]).decode().lower()}"

    def address_for(self, delivery: Delivery) -> str | None:
        """The Reply-To of a partner's notice email; None when no reply address is configured."""
        if not self.reply_address or delivery.channel != "email" or delivery.purpose != "partner":
            return None
        local, _, domain = self.reply_address.rpartition("@")
        return f"{local}+{self.token(delivery.id)}@{domain}"

    def delivery_in(self, recipients: tuple[str, ...]) -> int | None:
        """The delivery a reply address among `recipients` names; None when none carries a token.
        Raises InvalidReplyToken for a token with a wrong signature."""
        for address in recipients:
            found = REPLY_TOKEN.search(address.lower())
            if found is None:
                continue
            if not hmac.compare_digest(self.token(int(found.group(2))), found.group(1)):
                raise InvalidReplyToken(found.group(1))
            return int(found.group(2))
        return None


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: Text
    # Publish as a Q&A in the incident's next notice, to every partner it goes to.
    publish: bool = False
    # The question as every partner should read it there (default: as asked).
    published_question: Text | None = None


async def ask(
    conn: AsyncConnection,
    settings: Settings,
    delivery: dict[str, Any],
    contact: dict[str, Any],
    body: str,
    source: Source,
    now: float | None = None,
    inbound_mail_id: int | None = None,
) -> int:
    """Record a question about the delivery's notice; its first reminder is due in the configured time."""
    now = time.time() if now is None else now
    values = {
        "incident_id": delivery["incident_id"],
        "notice_id": delivery["notice_id"],
        "partner_id": delivery["partner_id"],
        "contact_id": contact["id"],
        "delivery_id": delivery["id"],
        "source": source,
        "language": contact.get("language") or delivery["language"],
        "body": body.strip(),
        "asked_at": now,
        "state": "open",
        "remind_due_at": now + settings.questions.remind_after_minutes * 60.0,
        "reminders": 0,
        "inbound_mail_id": inbound_mail_id,
    }
    question_id = await question_store.insert_question(conn, values)
    await audit(
        conn,
        "question.asked",
        "question",
        question_id,
        None,
        {"notice_id": delivery["notice_id"], "partner_id": delivery["partner_id"], "source": source},
    )
    log.info("question %s asked about notice %s (%s)", question_id, delivery["notice_id"], source)
    return question_id


def body_problem(settings: Settings, body: str) -> Literal["empty", "too_long"] | None:
    """Why a question's text cannot be taken (a code each page words in its own language); None
    when it is fine."""
    if not body.strip():
        return "empty"
    if len(body.strip()) > settings.questions.max_length:
        return "too_long"
    return None


def check_body(settings: Settings, body: str) -> str | None:
    """Why a question's text cannot be taken, in English; None when it is fine."""
    problem = body_problem(settings, body)
    if problem == "empty":
        return "the question is empty"
    if problem == "too_long":
        return f"the question is longer than {settings.questions.max_length} characters"
    return None


# --- inbound mail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailOutcome:
    outcome: Literal["question", "unmatched", "refused"]
    reason: str | None
    inbound_mail_id: int
    question_id: int | None = None
    notice_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "inbound_mail_id": self.inbound_mail_id,
            "question_id": self.question_id,
            "notice_id": self.notice_id,
        }


@dataclass(frozen=True)
class _Match:
    outcome: Literal["question", "unmatched", "refused"]
    reason: str | None = None
    delivery: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None


async def receive_mail(
    conn: AsyncConnection, settings: Settings, tokens: ReplyTokens, mail: InboundMail, raw: bytes
) -> MailOutcome:
    """Keep the mail, whatever it is, and turn a partner's reply into a question."""
    match = await _match(conn, tokens, mail)
    if match.outcome == "question" and not mail.text:
        match = _Match("unmatched", "no text above the quoted notice", match.delivery, match.contact)
    delivery = match.delivery or {}
    now = time.time()
    mail_id = await question_store.insert_inbound_mail(
        conn,
        {
            "received_at": now,
            "message_id": mail.message_id,
            "sender": mail.sender,
            "subject": mail.subject,
            "text": mail.text,
            "raw": raw.decode("utf-8", errors="replace"),
            "outcome": match.outcome,
            "reason": match.reason,
            "notice_id": delivery.get("notice_id"),
            "partner_id": delivery.get("partner_id"),
        },
    )
    question_id = None
    if match.outcome == "question" and match.delivery and match.contact:
        question_id = await ask(conn, settings, match.delivery, match.contact, mail.text, "email", now, mail_id)
        await question_store.set_inbound_question(conn, mail_id, question_id)
    else:
        log.warning("inbound mail %s %s: %s", mail_id, match.outcome, match.reason)
    return MailOutcome(match.outcome, match.reason, mail_id, question_id, delivery.get("notice_id"))


async def _match(conn: AsyncConnection, tokens: ReplyTokens, mail: InboundMail) -> _Match:
    try:
        delivery_id = tokens.delivery_in(mail.recipients)
    except InvalidReplyToken:
        return _Match("refused", "the reply address carries a token Herald did not sign")
    delivery = None
    if delivery_id is not None:
        delivery = await delivery_store.get_delivery(conn, delivery_id)
        if delivery is None or delivery.get("purpose", "partner") != "partner":
            return _Match("refused", "the reply address names no notice Herald sent")
    else:
        for message_id in mail.references:
            found = await receipt_store.delivery_by_message_id(conn, message_id)
            if found is not None and found.get("purpose", "partner") == "partner":
                delivery = found
                break
    if delivery is None:
        return _Match("unmatched", "no reply token and no In-Reply-To naming a notice Herald sent")
    return await _sender_of(conn, delivery, mail.sender or "")


async def _sender_of(conn: AsyncConnection, delivery: dict[str, Any], sender: str) -> _Match:
    """A reply counts only from a contact of the partner the notice went to."""
    contacts = await question_store.contact_by_email(conn, sender)
    own = [c for c in contacts if c["partner_id"] == delivery["partner_id"]]
    if own:
        chosen = next((c for c in own if c["id"] == delivery["contact_id"]), own[0])
        return _Match("question", None, delivery, chosen)
    if contacts:
        return _Match("refused", "the sender is a contact of another partner than the notice's", delivery)
    return _Match("unmatched", "the sender is not a contact of the partner the notice went to", delivery)


# --- answers --------------------------------------------------------------------------------------


async def answer(
    conn: AsyncConnection, settings: Settings, question_id: int, request: AnswerRequest, actor: str | None
) -> dict[str, Any]:
    """Record the answer and plan its email to the asker (written before the HTTP reply)."""
    question = await question_store.get_question(conn, question_id, for_update=True)
    if question is None:
        raise NotFound(f"no question {question_id}")
    if question["state"] == "answered":
        raise Conflict(f"question {question_id} was answered already", code="already_answered")
    lang = question["language"]
    answer_text = request.answer if isinstance(request.answer, dict) else {lang: request.answer}
    if not str(answer_text.get(lang) or "").strip():
        raise MissingField(f"answer in the partner's language ({lang})", f"answer.{lang}")
    contact = await question_store.get_contact(conn, question["contact_id"])
    if contact is None or not contact.get("email"):
        raise InvalidInput("the asker has no email address in the directory", "question", code="unreachable_asker")
    notice = await incident_store.get_notice(conn, question["notice_id"])
    assert notice is not None  # noqa: S101 - questions reference notices by foreign key
    now = time.time()
    published = None
    if request.publish:
        published = {"question": request.published_question or question["body"], "answer": answer_text}
        _check_every_language(published)
    await question_store.update_question(
        conn,
        question_id,
        {
            "state": "answered",
            "answer": answer_text,
            "answered_by": actor,
            "answered_at": now,
            "publish": published,
            "remind_due_at": None,
        },
    )
    row = planner.internal_row(
        settings, notice, question["partner_id"], "answer", contact["email"], lang, now, f"q{question_id}.answer"
    )
    row.update(contact_id=contact["id"], tier=contact["tier"], question_id=question_id)
    await delivery_store.insert_deliveries(conn, [row])
    await audit(conn, "question.answered", "question", question_id, actor, {"publish": request.publish})
    return {"question_id": question_id, "state": "answered", "publish": request.publish}


def _check_every_language(published: dict[str, Any]) -> None:
    """A published Q&A goes to every partner the next notice reaches, whatever their language."""
    for name, value in published.items():
        for lang in LANGUAGES:
            if lang not in written_in(value):
                field = "published_question" if name == "question" else "answer"
                raise InvalidInput(
                    f"a published Q&A needs its {field} in every language", f"{field}.{lang}", code="missing_language"
                )


async def attach_published_answers(conn: AsyncConnection, incident_id: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The Q&A a new notice of the incident carries, and the questions it publishes."""
    found = await question_store.answers_to_publish(conn, incident_id)
    return [q["publish"] for q in found], [q["id"] for q in found]


# --- reminders ------------------------------------------------------------------------------------


async def remind_due(store: Store, settings: Settings, now: float | None = None) -> int:
    """Claim unanswered questions whose reminder is due and remind the on-call operators
    (`[[on_call]]`) of each, like every other message to our operators."""
    now = time.time() if now is None else now
    written = 0
    every = settings.questions.remind_every_minutes * 60.0
    async with store.begin() as conn:
        for question in await question_store.claim_due_reminders(conn, settings.questions.batch_size, now):
            written += await _remind(conn, settings, question, now)
            await question_store.update_question(
                conn,
                question["id"],
                {"reminders": question["reminders"] + 1, "remind_due_at": now + every if every > 0 else None},
            )
    return written


async def _remind(conn: AsyncConnection, settings: Settings, question: dict[str, Any], now: float) -> int:
    notice = await incident_store.get_notice(conn, question["notice_id"])
    incident = await incident_store.get_incident(conn, question["incident_id"]) if question["incident_id"] else None
    asker = (await delivery_store.recipients(conn, [question["contact_id"]])).get(question["contact_id"], {})
    fields = {
        "question_id": question["id"],
        "question": question["body"],
        "language": question["language"],
        "partner_name": asker.get("partner_name") or question["partner_id"],
        "contact_name": asker.get("name"),
        "notice_version": (notice or {}).get("version"),
        "minutes_waiting": max(1, math.floor((now - question["asked_at"]) / 60)),
    }
    written = await operators.notify_operators(conn, settings, "operator_question_unanswered", fields, incident, now)
    await audit(conn, "question.reminded", "question", question["id"], None, {"deliveries": written})
    return written


class QuestionReminders:
    """Sends due reminders once at start, then every `poll_interval` seconds."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings: Settings = app[appkeys.SETTINGS]
        self._periodic = Periodic("question-reminders", self.run_once, self.settings.questions.poll_interval)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> int:
        written = await remind_due(self.app[appkeys.STORE], self.settings)
        if written:
            self.app[appkeys.DISPATCHER_WAKE]()
        return written


async def questions_ctx(app: web.Application) -> AsyncIterator[None]:
    reminders = QuestionReminders(app)
    app[appkeys.QUESTION_REMINDERS] = reminders
    reminders.start()
    yield
    await reminders.stop()
