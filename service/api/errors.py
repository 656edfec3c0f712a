"""One JSON error shape, from one middleware: {"error", "detail", "field"}."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

log = logging.getLogger("herald.api")
Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", field: str | None = None) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field


def error_response(status: int, error: str, detail: str = "", field: str | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail, "field": field}, status=status)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's location as a readable path: `alerts[0].labels.severity`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def validation_error(exc: ValidationError, prefix: str = "") -> ApiError:
    first = exc.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
    path = field_path(([prefix] if prefix else []) + loc)
    return ApiError(422, "invalid_field", f"{path}: {first['msg']}", path or None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
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


async def read_body(request: web.Request) -> bytes:
    """The raw body, within the configured limit (413 beyond it; aiohttp caches it for re-reads)."""
    limit = request.app["settings"].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes") from None


def parse_json(body: bytes, content_type: str) -> Any:
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc


def parse_model(model: type[Model], payload: Any, prefix: str = "") -> Model:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, prefix) from exc


async def read_model(request: web.Request, model: type[Model]) -> tuple[Model, bytes]:
    """Read, size-check, decode and validate a JSON body; returns the model and the raw bytes."""
    body = await read_body(request)
    return parse_model(model, parse_json(body, request.content_type)), body
