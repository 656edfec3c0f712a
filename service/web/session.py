"""Console sessions, CSRF and scopes: one middleware, on the console's own sub-application.

Signing in trades a bearer token for a session cookie (aiohttp-session, Fernet-encrypted, HttpOnly,
SameSite=Strict, Secure when the public base URL is https, limited to /console). The session keeps
the token's *name*, not its secret: each request looks the name up again, so a token removed from
the configuration ends its sessions too. Every form POST carries the session's CSRF token.
Routes outside /console (API, acknowledgement and partner pages) never see this middleware.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from service.api.auth import OPEN, PRINCIPAL, TOKENS, TokenTable
from service.api.errors import ApiError, Handler, http_status
from service.errors import HeraldError
from service.principals import Principal
from service.settings import Settings
from service.web import words
from service.web.keys import CSRF, LANG
from service.web.pages import render

log = logging.getLogger("herald.console")

PREFIX = "/console"
COOKIE = "herald_console"
LANG_COOKIE = "herald_lang"
PUBLIC = "public"
# Console pages load only what Herald serves; a previewed email runs in a sandboxed frame.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def page(scope: str) -> Callable[[Handler], Handler]:
    """A console route and who may open it: PUBLIC, "operator" or "admin". The API's bearer
    check lets it through (OPEN); this module's middleware checks the session instead."""

    def mark(handler: Handler) -> Handler:
        handler.herald_scope = OPEN  # type: ignore[attr-defined]
        handler.herald_page = True  # type: ignore[attr-defined]  # not part of the API's contract
        handler.console_scope = scope  # type: ignore[attr-defined]
        return handler

    return mark


def session_key(settings: Settings) -> bytes:
    configured = settings.console.secret.get_secret_value() if settings.console.secret else ""
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    log.warning(
        "no console secret configured (HERALD_CONSOLE__SECRET); using a random one for this process: "
        "console sessions end at restart"
    )
    return secrets.token_bytes(32)


def setup(console: web.Application, settings: Settings) -> None:
    max_age = int(settings.console.session_minutes * 60)
    storage = EncryptedCookieStorage(
        session_key(settings),
        cookie_name=COOKIE,
        max_age=max_age,
        path=PREFIX,
        secure=settings.server.public_base_url.startswith("https://"),
        httponly=True,
        samesite="Strict",
    )
    setup_sessions(console, storage)
    console.middlewares.append(console_middleware)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def lang_of(request: web.Request) -> str:
    return str(request.get(LANG, "en"))


def csrf_token(session: Session) -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


async def sign_in(request: web.Request, principal: Principal) -> None:
    """A fresh session (never the one used before signing in) holding the principal's name."""
    lang = lang_of(request)
    session = await new_session(request)
    session.update({"principal": principal.name, "signed_in_at": time.time(), "lang": lang})
    csrf_token(session)


async def sign_out(request: web.Request) -> None:
    session = await get_session(request)
    session.invalidate()


def _language(request: web.Request, session: Session) -> str:
    chosen = session.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in words.LANGUAGES:
        return str(chosen)
    return "ja" if request.headers.get("Accept-Language", "").lower().startswith("ja") else "en"


def _signed_in(request: web.Request, session: Session) -> Principal | None:
    name = session.get("principal")
    if not name:
        return None
    tokens: TokenTable = request.config_dict[TOKENS]
    return tokens.by_name(str(name))


def _scope(request: web.Request) -> str:
    return str(getattr(request.match_info.handler, "console_scope", PUBLIC))


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    session = await get_session(request)
    request[LANG] = _language(request, session)
    request[CSRF] = csrf_token(session)
    try:
        response = await _guarded(request, handler, session)
    except HeraldError as exc:
        response = error_page(request, http_status(exc), exc.detail)
    except ApiError as exc:
        response = error_page(request, exc.status, exc.detail or exc.error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_page(request, exc.status, exc.reason)
    response.headers.update({k: v for k, v in HEADERS.items() if k not in response.headers})
    return response


async def _guarded(request: web.Request, handler: Handler, session: Session) -> web.StreamResponse:
    if request.method == "POST":
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")), request[CSRF]):
            return error_page(request, 403, words.say(request[LANG], "csrf_refused"))
    scope = _scope(request)
    if scope == PUBLIC:
        return await handler(request)
    principal = _signed_in(request, session)
    if principal is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"{PREFIX}/sign-in?next={quote(request.path_qs)}")
        return error_page(request, 401, words.say(request[LANG], "signed_out"))
    if not principal.allows(scope):
        return error_page(request, 403, words.say(request[LANG], "admins_only"))
    request[PRINCIPAL] = principal
    return await handler(request)


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "console/error.html.j2", {"status": status, "message": message}, status=status)


def safe_next(target: Any) -> str:
    """Only a path inside the console: a sign-in link must not send anyone elsewhere."""
    text = str(target or "")
    if text.startswith(PREFIX + "/") and not text.startswith("//") and "\\" not in text:
        return text
    return PREFIX + "/"


__all__ = ["CSRF", "LANG", "PUBLIC", "lang_of", "page", "principal_of", "safe_next", "setup", "sign_in", "sign_out"]
