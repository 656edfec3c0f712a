"""Bearer tokens with scopes. Handlers declare their scope with @requires; the middleware checks."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web

from service import appkeys
from service.api.errors import ApiError, Handler
from service.principals import Principal
from service.settings import Scope, Settings

OPEN = "open"


def requires(scope: Scope | str) -> Callable[[Handler], Handler]:
    def mark(handler: Handler) -> Handler:
        handler.herald_scope = scope  # type: ignore[attr-defined]
        return handler

    return mark


def open_route(handler: Handler) -> Handler:
    return requires(OPEN)(handler)


class TokenTable:
    def __init__(self, settings: Settings) -> None:
        self._tokens = [
            (t.secret.get_secret_value().encode(), Principal(t.name, frozenset(t.scopes)))
            for t in settings.auth.tokens
            if t.secret is not None and t.secret.get_secret_value()
        ]

    def by_name(self, name: str) -> Principal | None:
        """The principal of a configured token (a console session keeps only the name)."""
        return next((principal for _, principal in self._tokens if principal.name == name), None)

    def lookup(self, presented: str) -> Principal | None:
        candidate = presented.encode("utf-8", "surrogateescape")  # the bytes as received
        found = None
        for secret, principal in self._tokens:  # compare against all: no timing hint
            if hmac.compare_digest(secret, candidate):
                found = principal
        return found


# The HTTP layer's own key: the bearer tokens it accepts (service/appkeys.py holds the others).
TOKENS = web.AppKey("tokens", TokenTable)


PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _route_scope(request: web.Request) -> str:
    handler = request.match_info.handler
    return getattr(handler, "herald_scope", "admin")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = _route_scope(request)
    if scope == OPEN or request.match_info.http_exception is not None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    principal = None
    if header.startswith("Bearer "):
        principal = request.app[TOKENS].lookup(header[len("Bearer ") :].strip())
    if principal is None:
        hook = request.app.get(appkeys.ALTERNATE_AUTH, {}).get(scope)
        principal = await hook(request) if hook else None
    if principal is None:
        raise ApiError(401, "unauthorized", "send a valid bearer token: Authorization: Bearer <token>")
    if not principal.allows(scope):
        raise ApiError(403, "forbidden", f"this token lacks the '{scope}' scope")
    request[PRINCIPAL] = principal
    return await handler(request)
