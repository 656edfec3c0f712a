"""What the read routes share: query parameters in (400 naming the field), incidents and notices out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar, get_origin

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from service.api.errors import ApiError
from service.errors import NotFound
from service.validation import MAX_ID, Moment

# An unencoded `+09:00` in a query string arrives as ` 09:00`.
_DECODED_PLUS = re.compile(r" (\d\d:?\d\d)$")
Query = TypeVar("Query", bound=BaseModel)


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path (`{id:\\d+}`); one no column can hold names nothing (404)."""
    value = int(request.match_info[name])
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"no such {name} {request.match_info[name][:24]}")
    return value


def _plus_restored(value: Any) -> Any:
    return _DECODED_PLUS.sub(r"+\1", value.strip()) if isinstance(value, str) else value


# A time in a query string: ISO 8601 with its zone (`2026-11-25T10:00:00+09:00` or `...Z`).
QueryTime = Annotated[Moment, BeforeValidator(_plus_restored)]
# Ids in query strings (cursors, filters).
QueryId = Annotated[int, Field(ge=1, le=MAX_ID)]
Limit = Annotated[int, Field(ge=1, le=500)]


def parse_query(request: web.Request, model: type[Query]) -> Query:
    """The query string validated by `model` (the contract documents the same model); a bad
    value is a 400 naming the parameter. Repeatable parameters are the model's list fields."""
    data: dict[str, Any] = {}
    for name, spec in model.model_fields.items():
        values = request.query.getall(name, [])
        if values:
            data[name] = values if get_origin(spec.annotation) is list else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        raise ApiError(400, "invalid_query", f"{name}: {first['msg']}", name or None) from None


def timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class DryRunQuery(BaseModel):
    dry_run: bool = Field(
        False, description="true: validate and plan as for real, write nothing, answer 200 with the preview"
    )


def dry_run_arg(request: web.Request) -> bool:
    """`?dry_run=true`: validate and plan as for real, write nothing, answer with a preview."""
    return parse_query(request, DryRunQuery).dry_run
