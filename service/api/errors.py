"""One JSON error shape, from one middleware: {"error", "detail", "field"}.

Domain errors (service/errors.py) are mapped to HTTP here and nowhere else; `ApiError` is for what
only the HTTP edge can get wrong (a malformed body, a missing token, a wrong media type).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from service import appkeys
from service.errors import Conflict, HeraldError, InvalidInput, NotFound, Unavailable
from service.validation import check_json, parse_model, storable_problem

log = logging.getLogger("herald.api")
Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The one mapping from domain errors to HTTP statuses (most specific class first).
STATUS_OF: tuple[tuple[type[HeraldError], int], ...] = (
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
)


class ApiError(Exception):
    """An error of the HTTP exchange itself (400, 401, 403, 413, 415)."""

    def __init__(self, status: int, error: str, detail: str = "", field: str | None = None) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field


def error_response(status: int, error: str, detail: str = "", field: str | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail, "field": field}, status=status)


def http_status(exc: HeraldError | ApiError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 500


def domain_error_response(exc: HeraldError) -> web.Response:
    response = error_response(http_status(exc), exc.code, exc.detail, exc.field)
    if isinstance(exc, Unavailable):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_request_text(request)
        return await handler(request)
    except HeraldError as exc:
        if isinstance(exc, Unavailable):
            log.warning("%s %s: unavailable: %s", request.method, request.path, exc.detail)
        return domain_error_response(exc)
    except ApiError as exc:
        return error_response(exc.status, exc.error, exc.detail, exc.field)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", exc.text or "request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def check_request_text(request: web.Request) -> None:
    """Path segments and query values nothing could store never reach a handler."""
    for name, value in request.match_info.items():
        if storable_problem(value):
            raise NotFound(f"no such {name}")
    for name, value in request.query.items():
        problem = storable_problem(name) or storable_problem(value)
        if problem:
            raise ApiError(400, "invalid_query", f"{name}: {problem}", name)


async def read_body(request: web.Request) -> bytes:
    """The raw body, within the configured limit (413 beyond it; aiohttp caches it for re-reads)."""
    limit = request.app[appkeys.SETTINGS].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, content_type: str) -> Any:
    """Decode a JSON body: 415 for another media type, 400 when it is not JSON or nests too deep,
    422 naming the field for strings nothing can store."""
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        document = json.loads(body or b"null", parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "too_deep", "the body nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc
    check_json(document)
    return document


async def read_model(request: web.Request, model: type[Model]) -> tuple[Model, bytes]:
    """Read, size-check, decode and validate a JSON body; returns the model and the raw bytes."""
    body = await read_body(request)
    return parse_model(model, parse_json(body, request.content_type)), body
