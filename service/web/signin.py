"""Signing in and out, and the operator's language."""

from __future__ import annotations

from aiohttp import web

from service.api.auth import TOKENS
from service.web import words
from service.web.pages import render
from service.web.session import LANG_COOKIE, PREFIX, PUBLIC, lang_of, page, safe_next, sign_in, sign_out

routes = web.RouteTableDef()
LANG_COOKIE_SECONDS = 365 * 86400


@routes.get("/sign-in")
@page(PUBLIC)
async def sign_in_page(request: web.Request) -> web.Response:
    return render(request, "console/sign_in.html.j2", {"next": safe_next(request.query.get("next")), "error": None})


@routes.post("/sign-in")
@page(PUBLIC)
async def sign_in_with_token(request: web.Request) -> web.Response:
    form = await request.post()
    principal = request.config_dict[TOKENS].lookup(str(form.get("token", "")).strip())
    target = safe_next(form.get("next"))
    if principal is None or not (principal.allows("operator")):
        error = words.say(lang_of(request), "token_refused")
        return render(request, "console/sign_in.html.j2", {"next": target, "error": error}, status=401)
    await sign_in(request, principal)
    raise web.HTTPSeeOther(target)


@routes.post("/sign-out")
@page(PUBLIC)
async def sign_out_now(request: web.Request) -> web.Response:
    await sign_out(request)
    raise web.HTTPSeeOther(f"{PREFIX}/sign-in")


@routes.post("/language")
@page(PUBLIC)
async def choose_language(request: web.Request) -> web.Response:
    """The operator's language, kept in the session and in a cookie that outlives it."""
    form = await request.post()
    lang = str(form.get("lang", ""))
    response = web.HTTPSeeOther(safe_next(form.get("next")))
    if lang in words.LANGUAGES:
        from aiohttp_session import get_session

        session = await get_session(request)
        session["lang"] = lang
        response.set_cookie(
            LANG_COOKIE, lang, max_age=LANG_COOKIE_SECONDS, path=PREFIX, httponly=True, samesite="Strict"
        )
    raise response
