"""Partner questions over HTTP: inbound mail from the mail server's pipe, the operators' list and
their answers."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from service import appkeys, questions
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import ApiError, read_body, read_model
from service.api.params import Limit, QueryId, parse_query
from service.errors import InvalidInput, NotFound
from service.ingest.mail import NotAMail, parse_mail
from service.notices import iso
from service.store import incidents as incident_store
from service.store import questions as question_store

routes = web.RouteTableDef()

MAIL_CONTENT_TYPES = ("message/rfc822", "text/plain", "application/octet-stream")
Outcome = Literal["question", "unmatched", "refused"]


class InboundQuery(BaseModel):
    outcome: list[Outcome] = Field([], description="question, unmatched (the operators' inbox), refused")
    limit: Limit = 50
    cursor: QueryId | None = Field(None, description="`next_cursor` of the previous page")


@routes.post("/v1/inbound/email")
@requires("ingest")
@operation(
    "A reply to a notice, as the mail server received it for the reply address",
    {202: replies.MailOutcome},
    raw_body=MAIL_CONTENT_TYPES,
    errors=(403,),
    tag="questions",
    description="The raw RFC 5322 message (piped in by the mail server). Kept whatever it is: a partner's "
    "reply becomes a question (202), mail matching no notice is kept as unmatched (202), a forged or another "
    "partner's reply token is refused (403, kept too).",
)
async def inbound_email(request: web.Request) -> web.Response:
    if request.content_type not in MAIL_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", "send the raw message as message/rfc822")
    raw = await read_body(request)
    try:
        mail = parse_mail(raw)
    except NotAMail as exc:
        raise InvalidInput(str(exc), code="not_a_mail") from exc
    async with request.app[appkeys.STORE].begin() as conn:
        outcome = await questions.receive_mail(
            conn, request.app[appkeys.SETTINGS], request.app[appkeys.REPLY_TOKENS], mail, raw
        )
    if outcome.outcome == "refused":
        raise ApiError(403, "refused", f"{outcome.reason} (kept as inbound mail {outcome.inbound_mail_id})")
    return web.json_response(outcome.as_json(), status=202)


@routes.get("/v1/inbound/email")
@requires("operator")
@operation("Inbound mail, newest first", {200: replies.InboundMailPage}, query=InboundQuery, tag="questions")
async def list_inbound_email(request: web.Request) -> web.Response:
    query = parse_query(request, InboundQuery)
    async with request.app[appkeys.STORE].read() as conn:
        rows = await question_store.list_inbound_mail(conn, tuple(query.outcome), query.cursor, query.limit)
    items = [{**row, "received_at": iso(row["received_at"])} for row in rows]
    next_cursor = rows[-1]["id"] if len(rows) == query.limit else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@routes.get("/v1/incidents/{id:\\d+}/questions")
@requires("operator")
@operation("Partners' questions about an incident", {200: replies.QuestionList}, errors=(404,), tag="questions")
async def incident_questions(request: web.Request) -> web.Response:
    incident_id = int(request.match_info["id"])
    async with request.app[appkeys.STORE].read() as conn:
        if await incident_store.get_incident(conn, incident_id) is None:
            raise NotFound(f"no incident {incident_id}")
        rows = await question_store.questions_of_incident(conn, incident_id)
    return web.json_response({"items": [question_json(row) for row in rows]})


@routes.post("/v1/questions/{id:\\d+}/answer")
@requires("operator")
@operation(
    "Answer a partner's question (emailed to the asker; optionally published in the next notice)",
    {202: replies.Answered},
    body=questions.AnswerRequest,
    errors=(404, 409),
    tag="questions",
)
async def answer_question(request: web.Request) -> web.Response:
    body, _ = await read_model(request, questions.AnswerRequest)
    question_id = int(request.match_info["id"])
    async with request.app[appkeys.STORE].begin() as conn:
        answered = await questions.answer(
            conn, request.app[appkeys.SETTINGS], question_id, body, principal_of(request).name
        )
    request.app[appkeys.DISPATCHER_WAKE]()
    return web.json_response(answered, status=202)


def question_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "notice_id": row["notice_id"],
        "partner_id": row["partner_id"],
        "partner_name": row.get("partner_name"),
        "contact_id": row["contact_id"],
        "contact_name": row.get("contact_name"),
        "source": row["source"],
        "language": row["language"],
        "body": row["body"],
        "asked_at": iso(row["asked_at"]),
        "state": row["state"],
        "answer": row["answer"],
        "answered_by": row["answered_by"],
        "answered_at": iso(row["answered_at"]),
        "published": row["publish"],
        "published_in_notice_id": row["published_in_notice_id"],
        "reminders": row["reminders"],
        "next_reminder_at": iso(row["remind_due_at"]),
    }
