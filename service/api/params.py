"""What the read routes share: query parameters in (400 naming the field), incidents and notices out."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

from aiohttp import web

from service.api.errors import ApiError
from service.errors import NotFound
from service.validation import MAX_ID

# An unencoded `+09:00` in a query string arrives as ` 09:00`.
_DECODED_PLUS = re.compile(r" (\d\d:?\d\d)$")


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path (`{id:\\d+}`); one no column can hold names nothing (404)."""
    value = int(request.match_info[name])
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"no such {name} {request.match_info[name][:24]}")
    return value


def int_arg(request: web.Request, name: str, default: int | None, low: int = 1, high: int = 500) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an integer", name) from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_query", f"{name} must be between {low} and {high}", name)
    return value


def time_arg(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(_DECODED_PLUS.sub(r"+\1", raw.strip()))
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be an ISO 8601 time", name) from None
    if value.tzinfo is None:
        raise ApiError(400, "invalid_query", f"{name} needs a time zone (e.g. Z or +09:00)", name)
    return value.timestamp()


def choice_args(request: web.Request, name: str, allowed: Collection[str]) -> tuple[str, ...]:
    """A repeatable parameter (`?status=sent&status=failed`) whose values come from a fixed set."""
    values = tuple(request.query.getall(name, []))
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ApiError(400, "invalid_query", f"{name} '{unknown[0]}' is not one of: {', '.join(allowed)}", name)
    return values
