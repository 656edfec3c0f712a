"""HMAC-SHA256 source signatures: `<header>: sha256=<hex of HMAC(secret, raw body)>`.

Used through `app[appkeys.ALTERNATE_AUTH]["ingest"]`, so a source may sign its body instead of sending a
bearer token (GitHub-style). The signature covers the exact bytes received, so it is checked
before the body is decoded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.principals import Principal
from service.settings import HmacSource

PREFIX = "sha256="
Hook = Callable[[web.Request], Awaitable[Principal | None]]


def sign(secret: bytes, body: bytes) -> str:
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, body: bytes, presented: str) -> bool:
    """Constant-time comparison of the presented header value with the expected one."""
    expected = sign(secret, body).encode()
    candidate = presented.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected, candidate)


def signature_hook(sources: list[HmacSource]) -> Hook:
    """An alternate-auth hook: the source whose secret signed the body, or None."""
    keyed = [
        (source.name, source.header, source.secret.get_secret_value().encode())
        for source in sources
        if source.secret is not None and source.secret.get_secret_value()
    ]

    async def hmac_principal(request: web.Request) -> Principal | None:
        presented = [
            (name, request.headers[header], secret) for name, header, secret in keyed if header in request.headers
        ]
        if not presented:
            return None
        body = await request.read()  # cached by aiohttp: the handler reads the same bytes
        found = None
        for name, value, secret in presented:  # check every candidate: no timing hint
            if signature_matches(secret, body, value):
                found = Principal(name, frozenset({"ingest"}))
        return found

    return hmac_principal
