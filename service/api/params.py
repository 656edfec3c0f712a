"""What the read routes share: query parameters in (400 naming the field), incidents and notices out."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from typing import Any

from aiohttp import web

from service.api.errors import ApiError
from service.notices import iso

# An unencoded `+09:00` in a query string arrives as ` 09:00`.
_DECODED_PLUS = re.compile(r" (\d\d:?\d\d)$")


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


def incident_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "severity": row["severity"],
        "status": row["status"],
        "components": row["components"],
        "impact": row["impact"],
        "responsible": row["responsible"],
        "next_update_at": iso(row["next_update_at"]),
        "estimates": row["estimates"],
        "source": row["source"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "resolved_at": iso(row["resolved_at"]),
    }


def notice_json(row: dict[str, Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "kind": row["kind"],
        "version": row["version"],
        "corrects_id": row["corrects_id"],
        "state": row["state"],
        "severity": row["severity"],
        "status": row["status"],
        "fields": row["fields"],
        "audience": row["audience"],
        "next_update_at": iso(row["next_update_at"]),
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "published_at": iso(row["published_at"]),
        "deliveries": counts or {},
    }
