"""The partner page: `GET /p/{token}` shows, three POSTs act (acknowledge a notice, ask a question,
request a contact change).

Open routes: the signed token is the credential, and it names one contact of one partner; every
read is scoped to that partner. A GET writes nothing (mail gateways open every link); the forms
POST and redirect back (303), so a reload never repeats them and the page works without script.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys, partner_page, timeline
from service.api.acks import PAGE_HEADERS
from service.api.auth import open_route
from service.api.contract import FORM, operation
from service.notices import localise
from service.partner_text import service_names
from service.render import DEFAULT_TEMPLATES_DIR, SEVERITY_LABELS, STATUS_LABELS
from service.settings import Settings

routes = web.RouteTableDef()

CHANNEL_ORDERS = ("email,sms", "sms,email", "email", "sms")
DONE = ("acknowledged", "asked", "requested")


@lru_cache(maxsize=4)
def _pages(timezone: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(DEFAULT_TEMPLATES_DIR / "web"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    zone = ZoneInfo(timezone)
    env.filters["when"] = lambda at: datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M %Z") if at else ""
    env.filters["pick"] = lambda values, words: [words.get(value, value) for value in values]
    env.filters["timeline"] = pass_context(
        lambda context, story, size: timeline.draw(
            story, timezone, timeline.WORDS[context["lang"]], timeline.NARROW if size == "narrow" else timeline.PAGE
        )
    )
    return env


def _browser_language(request: web.Request) -> str:
    return "ja" if request.headers.get("Accept-Language", "").lower().startswith("ja") else "en"


def _render(
    settings: Settings, lang: str, status: int = 200, timezone: str | None = None, **values: Any
) -> web.Response:
    company = settings.company
    context = {
        "lang": lang,
        "company": {"name": company.name_ja if lang == "ja" else company.name_en},
        "severity_labels": SEVERITY_LABELS[lang],
        "status_labels": STATUS_LABELS[lang],
        "channel_orders": CHANNEL_ORDERS,
        "page": "page",
        "done": None,
        "error": None,
        "form": {},
        **values,
    }
    context["form"] = defaultdict(str, context["form"])  # fields the person has not filled in read as ""
    env = _pages(timezone or company.timezone)
    html = env.get_template(f"partner_{lang}.html.j2").render(context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


async def _viewer(request: web.Request) -> partner_page.Viewer | web.Response:
    """The contact the token names, or the page to answer with (403 forged, 410 expired)."""
    settings: Settings = request.app[appkeys.SETTINGS]
    try:
        contact_id = request.app[appkeys.PAGE_SIGNER].verify(request.match_info["token"])
    except partner_page.InvalidToken:
        return _render(settings, _browser_language(request), 403, page="invalid")
    except partner_page.ExpiredToken as expired:  # genuine, so the page can speak the contact's language
        async with request.app[appkeys.STORE].read() as conn:
            known = await partner_page.viewer_of(conn, expired.delivery_id)  # the id the token names
        lang = known.language if known is not None else _browser_language(request)
        return _render(settings, lang, 410, page="expired")
    async with request.app[appkeys.STORE].read() as conn:
        viewer = await partner_page.viewer_of(conn, contact_id)
    if viewer is None:  # the contact was removed from the directory since
        return _render(settings, _browser_language(request), 410, page="expired")
    return viewer


async def _show(request: web.Request, viewer: partner_page.Viewer, status: int = 200, **values: Any) -> web.Response:
    settings: Settings = request.app[appkeys.SETTINGS]
    async with request.app[appkeys.STORE].read() as conn:
        data = await partner_page.page_data(conn, settings, viewer)
    lang = data.pop("lang")
    for incident in data["incidents"]:
        incident["title_text"] = localise(incident["title"], lang)
        incident["services"] = service_names(settings, incident["components"] or [], lang)
    done = request.query.get("done")
    values.setdefault("form", _own_details(viewer.contact))
    return _render(
        settings,
        lang,
        status,
        timezone=viewer.partner.get("timezone"),
        token=request.match_info["token"],
        done=done if done in DONE else None,
        **data,
        **values,
    )


def _own_details(contact: dict[str, Any]) -> dict[str, str]:
    """The change form starts from the reader's own details: the change most often asked for."""
    return {
        "contact": contact["key"],
        "name": contact["name"],
        "email": contact["email"] or "",
        "phone": contact["phone"] or "",
        "language": contact["language"] or "",
        "channels": ",".join(contact["channels"] or []),
        "tier": str(contact["tier"]),
    }


PAGE = "text/html"
PAGES = {200: PAGE, 403: PAGE, 410: PAGE}


class AcknowledgeForm(BaseModel):
    """The acknowledgement button sends no fields."""


class QuestionForm(BaseModel):
    """A question about one notice the partner was sent (`notice`: its id); `incident` only says
    which incident's form to show a refusal beside."""

    notice: str
    question: str = Field(description="the contact's question, as typed on the page")
    incident: str | None = None


class ContactChangeForm(BaseModel):
    """The change form; `contact` is an existing contact's key or `new`, `channels` an order such
    as `email,sms`. Validated like the directory file before an admin sees it."""

    contact: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    language: str | None = None
    channels: str | None = None
    tier: str | None = None


@routes.get("/p/{token}")
@open_route
@operation("A partner contact's page (records nothing)", PAGES, tag="partner page")
async def show_page(request: web.Request) -> web.Response:
    """Reads only (see the module docstring)."""
    found = await _viewer(request)
    if isinstance(found, web.Response):
        return found
    return await _show(request, found)


Action = Callable[[AsyncConnection, partner_page.Viewer, dict[str, str]], Awaitable[object]]


async def _act(request: web.Request, action: Action, done: str) -> web.StreamResponse:
    """Every form on the page: check the link, do the action in one transaction, then back to the
    page (303) with its done message; a refusal shows the page again with the field and the words."""
    found = await _viewer(request)
    if isinstance(found, web.Response):
        return found
    form = {key: str(value).strip() for key, value in (await request.post()).items()}
    try:
        async with request.app[appkeys.STORE].begin() as conn:
            await action(conn, found, form)
    except partner_page.Refused as refused:
        error = {"field": refused.field, "message": refused.message, "form": done}
        return await _show(request, found, refused.status, error=error, form={**_own_details(found.contact), **form})
    raise web.HTTPSeeOther(f"/p/{request.match_info['token']}?done={done}")


@routes.post("/p/{token}/ack/{notice_id:\\d+}")
@open_route
@operation(
    "Acknowledge a notice from the partner page (then back to the page)",
    {**PAGES, 303: None, 404: PAGE},
    body=AcknowledgeForm,
    body_media=FORM,
    tag="partner page",
)
async def acknowledge(request: web.Request) -> web.StreamResponse:
    notice_id, user_agent = int(request.match_info["notice_id"]), request.headers.get("User-Agent")

    async def confirm(conn: AsyncConnection, viewer: partner_page.Viewer, form: dict[str, str]) -> object:
        return await partner_page.acknowledge_notice(conn, viewer, notice_id, user_agent)

    return await _act(request, confirm, "acknowledged")


@routes.post("/p/{token}/questions")
@open_route
@operation(
    "Ask a question about a notice sent to the partner (then back to the page, where the answer shows)",
    {**PAGES, 303: None, 404: PAGE, 422: PAGE},
    body=QuestionForm,
    body_media=FORM,
    tag="partner page",
)
async def ask_question(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[appkeys.SETTINGS]

    async def ask(conn: AsyncConnection, viewer: partner_page.Viewer, form: dict[str, str]) -> object:
        return await partner_page.ask_question(conn, settings, viewer, form.get("notice", ""), form.get("question", ""))

    return await _act(request, ask, "asked")


@routes.post("/p/{token}/contact-requests")
@open_route
@operation(
    "A tier-1 contact asks for a change of contacts; an admin applies it",
    {**PAGES, 303: None, 403: PAGE, 422: PAGE},
    body=ContactChangeForm,
    body_media=FORM,
    tag="partner page",
)
async def request_contact_change(request: web.Request) -> web.StreamResponse:
    return await _act(request, _request_change, "requested")


async def _request_change(conn: AsyncConnection, viewer: partner_page.Viewer, form: dict[str, str]) -> object:
    target = form.get("contact") or None
    wanted = {
        "name": form.get("name") or None,
        "email": form.get("email") or None,
        "phone": form.get("phone") or None,
        "language": form.get("language") or None,
        "channels": [c for c in (form.get("channels") or "").split(",") if c],
        "tier": form.get("tier") or None,
    }
    return await partner_page.request_change(conn, viewer, None if target == "new" else target, wanted)
