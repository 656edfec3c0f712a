"""What the console's middleware learns about a request, for handlers and pages (typed request keys)."""

from __future__ import annotations

from aiohttp import web

LANG = web.RequestKey("console_lang", str)
CSRF = web.RequestKey("console_csrf", str)
