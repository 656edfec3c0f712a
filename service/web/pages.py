"""Rendering console pages: templates/web/console/*.html.j2 with the operator's language and times."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from jinja2 import FileSystemLoader, StrictUndefined

from service.api.auth import PRINCIPAL
from service.notices import REQUIRED, localise
from service.render import DEFAULT_TEMPLATES_DIR
from service.settings import Settings
from service.web import words
from service.web.keys import CSRF, LANG


def setup(console: web.Application, settings: Settings) -> None:
    env = aiohttp_jinja2.setup(
        console,
        loader=FileSystemLoader(DEFAULT_TEMPLATES_DIR / "web"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    zone = ZoneInfo(settings.company.timezone)
    env.globals["zone_name"] = datetime.now(zone).tzname()
    env.filters["when"] = lambda value: when(value, zone)
    env.filters["local_input"] = lambda value: local_input(value, zone)
    env.filters["number"] = lambda value: f"{int(value or 0):,}"


def when(value: float | None, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, zone).strftime("%Y-%m-%d %H:%M")


def local_input(value: float | None, zone: ZoneInfo) -> str:
    """A time as a datetime-local input shows it, in the company's time zone."""
    if value is None:
        return ""
    return datetime.fromtimestamp(value, zone).strftime("%Y-%m-%dT%H:%M")


def minutes_between(earlier: float, later: float) -> int:
    return int((later - earlier) // 60)


# Messages a redirect may ask the next page to show (`?flash=published`).
FLASHES = ("discarded", "published", "requeued")


def render(request: web.Request, name: str, values: dict[str, Any], status: int = 200) -> web.Response:
    lang = request.get(LANG, "en")
    principal = request.get(PRINCIPAL)
    context = {
        "lang": lang,
        "other_lang": "en" if lang == "ja" else "ja",
        "t": lambda key, **kw: words.say(lang, key, **kw),
        "label": lambda name: words.field_label(lang, name),
        "kind_label": lambda kind: words.kind_label(lang, kind),
        "severity_label": lambda value: words.severity_label(lang, value),
        "status_label": lambda value: words.status_label(lang, value),
        "stage_label": lambda value: words.stage_label(lang, value),
        "delivery_status": lambda value: words.delivery_status_label(lang, value),
        "warning_text": lambda warning: words.warning_text(lang, warning),
        "required_fields": lambda kind: REQUIRED[kind],
        "reasons": [key for key in words.WORDS if key.startswith("reason_")],
        "text": lambda value: localise(value, lang) if value is not None else "",
        "principal": principal,
        "is_admin": bool(principal and principal.allows("admin")),
        "csrf": request.get(CSRF, ""),
        "path": request.path_qs,
        "now": time.time(),
        "flash": words.say(lang, flash) if (flash := request.query.get("flash")) in FLASHES else None,
        **values,
    }
    response = aiohttp_jinja2.render_template(name, request, context, status=status)
    response.charset = "utf-8"
    return response
