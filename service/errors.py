"""Domain errors: why the core refuses or cannot do what it was asked.

The core (incidents, notices, planner, ingest, receipts, report, store) raises these and knows
nothing of HTTP; `service/api/errors.py` maps each class to one status code, in one place:
InvalidInput → 422, NotFound → 404, Conflict → 409, Unavailable → 503 with Retry-After.
A request that ends in anything else is a bug (500).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError


class HeraldError(Exception):
    """`code` is the machine-readable word clients branch on; `field` is the path of the culprit."""

    default_code: ClassVar[str] = "error"

    def __init__(self, detail: str, field: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.code = code or self.default_code


class InvalidInput(HeraldError):
    """The request is well-formed but a value in it is not acceptable (it names the field)."""

    default_code = "invalid_field"


class MissingField(InvalidInput):
    default_code = "missing_field"


class NotFound(HeraldError):
    default_code = "not_found"


class Conflict(HeraldError):
    """The request is valid but contradicts the current state (an invalid transition, a reused key)."""

    default_code = "conflict"


class Unavailable(HeraldError):
    """Herald cannot do this right now (database unreachable or locked, starting, stopping): retry."""

    default_code = "unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's location as a readable path: `alerts[0].labels.severity`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def invalid_input(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """The first problem pydantic found, as an InvalidInput naming its field path."""
    first = exc.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
    path = field_path(([prefix] if prefix else []) + loc)
    return InvalidInput(f"{path}: {first['msg']}" if path else first["msg"], path or None)
