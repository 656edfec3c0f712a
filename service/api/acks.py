"""Acknowledgement pages: `GET /ack/{token}` asks, `POST /ack/{token}` records.

A GET never acknowledges anything: mail gateways and link scanners (Microsoft Safe Links,
Proofpoint, Mimecast) fetch every link in a message before a person sees it, so a GET that
acknowledged would tell us a notice was read when nobody read it — and would silently cancel the
escalation meant for exactly that case. Only a person pressing the button sends the POST.

These are open routes (the signed token is the credential) returning autoescaped HTML in the
delivery's language.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field

from service import acks, appkeys, questions
from service.api.auth import open_route
from service.api.contract import FORM, operation
from service.render import DEFAULT_TEMPLATES_DIR
from service.settings import Settings
from service.store import deliveries as delivery_store
from service.store import questions as question_store
from service.store import receipts as receipt_store

routes = web.RouteTableDef()

_pages = Environment(
    loader=FileSystemLoader(DEFAULT_TEMPLATES_DIR / "web"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The token is in the URL: keep it out of caches, search indexes, Referer headers and frames.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def render_page(settings: Settings, lang: str, page: str, status: int = 200, **values: Any) -> web.Response:
    lang = lang if lang in ("ja", "en") else "en"
    company = settings.company
    context = {
        "page": page,
        "company": {
            "name": company.name_ja if lang == "ja" else company.name_en,
            "status_page_url": company.status_page_url,
        },
        "subject": None,
        "partner_name": None,
        "acknowledged_at": None,
        "question_action": None,
        "question_error": None,
        "question_text": "",
        "question_max": settings.questions.max_length,
        **values,
    }
    html = _pages.get_template(f"ack_{lang}.html.j2").render(context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


def _browser_language(request: web.Request) -> str:
    """For a forged link we know no delivery, so no language: follow the browser."""
    return "ja" if request.headers.get("Accept-Language", "").lower().startswith("ja") else "en"


def _local_time(settings: Settings, at: float) -> str:
    zone = ZoneInfo(settings.company.timezone)
    return datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M %Z")


async def _verified_delivery(request: web.Request) -> dict[str, Any] | web.Response:
    """The delivery the token names, or the error page to answer with (403 forged, 410 expired)."""
    settings: Settings = request.app[appkeys.SETTINGS]
    try:
        delivery_id = request.app[appkeys.ACK_SIGNER].verify(request.match_info["token"])
    except acks.InvalidToken:
        return render_page(settings, _browser_language(request), "invalid", 403)
    except acks.ExpiredToken as expired:
        async with request.app[appkeys.STORE].read() as conn:
            delivery = await delivery_store.get_delivery(conn, expired.delivery_id)
        lang = delivery["language"] if delivery else _browser_language(request)
        return render_page(settings, lang, "expired", 410)
    async with request.app[appkeys.STORE].read() as conn:
        delivery = await delivery_store.get_delivery(conn, delivery_id)
    if delivery is None:
        return render_page(settings, _browser_language(request), "expired", 410)
    return delivery


async def _describe(request: web.Request, delivery: dict[str, Any]) -> dict[str, Any]:
    async with request.app[appkeys.STORE].read() as conn:
        subject = await receipt_store.notice_subject(conn, delivery["notice_id"], delivery["language"])
        names = await delivery_store.recipients(conn, [delivery["contact_id"]])
    return {
        "subject": subject,
        "partner_name": names.get(delivery["contact_id"], {}).get("partner_name"),
        "question_action": f"/ack/{request.match_info['token']}/questions",
    }


@routes.get("/ack/{token}")
@open_route
@operation(
    "The acknowledgement page (records nothing)",
    {200: "text/html", 403: "text/html", 410: "text/html"},
    tag="acknowledgements",
)
async def confirm_page(request: web.Request) -> web.Response:
    """Ask for confirmation; records nothing (see the module docstring)."""
    settings: Settings = request.app[appkeys.SETTINGS]
    found = await _verified_delivery(request)
    if isinstance(found, web.Response):
        return found
    described = await _describe(request, found)
    if found["acknowledged_at"] is not None:
        acknowledged_at = _local_time(settings, found["acknowledged_at"])
        return render_page(settings, found["language"], "done", acknowledged_at=acknowledged_at, **described)
    return render_page(settings, found["language"], "confirm", **described)


class QuestionForm(BaseModel):
    question: str = Field(description="the partner's question, as typed on the page")


@routes.post("/ack/{token}/questions")
@open_route
@operation(
    "Ask a question about the notice from the acknowledgement page",
    {200: "text/html", 403: "text/html", 410: "text/html", 422: "text/html"},
    body=QuestionForm,
    body_media=FORM,
    tag="questions",
)
async def ask_question(request: web.Request) -> web.Response:
    """A question about the notice from the acknowledgement page (a plain form, no script)."""
    settings: Settings = request.app[appkeys.SETTINGS]
    found = await _verified_delivery(request)
    if isinstance(found, web.Response):
        return found
    form = await request.post()
    text = str(form.get("question") or "")
    problem = questions.check_body(settings, text)
    described = await _describe(request, found)
    if problem is not None:
        page = "done" if found["acknowledged_at"] is not None else "confirm"
        return render_page(
            settings, found["language"], page, 422, question_error=problem, question_text=text, **described
        )
    async with request.app[appkeys.STORE].begin() as conn:
        contact = await question_store.get_contact(conn, found["contact_id"])
        if contact is None:
            return render_page(settings, found["language"], "expired", 410)
        await questions.ask(conn, settings, found, contact, text, "ack_page")
    return render_page(settings, found["language"], "asked", **described)


@routes.post("/ack/{token}")
@open_route
@operation("Acknowledge a notice", {200: "text/html", 403: "text/html", 410: "text/html"}, tag="acknowledgements")
async def acknowledge(request: web.Request) -> web.Response:
    settings: Settings = request.app[appkeys.SETTINGS]
    found = await _verified_delivery(request)
    if isinstance(found, web.Response):
        return found
    async with request.app[appkeys.STORE].begin() as conn:
        delivery = await delivery_store.get_delivery(conn, found["id"], for_update=True)
        if delivery is None:  # deliveries are never deleted
            raise LookupError(f"delivery {found['id']} vanished")
        recorded = await acks.acknowledge(conn, delivery, request.headers.get("User-Agent"))
    described = await _describe(request, found)
    acknowledged_at = _local_time(settings, recorded.at)
    return render_page(settings, found["language"], "done", acknowledged_at=acknowledged_at, **described)
