"""Notices: what partners are told. Fields are checked when a notice is created, never at send time.

Operator text may be one string (used for every language) or `{"ja": ..., "en": ...}`; a partner
reads the text in its language, falling back to the other language rather than to nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from service.errors import InvalidInput, MissingField
from service.validation import Email, Line, MessageText, Moment, Phone

Kind = Literal[
    "initial",
    "progress",
    "resolved",
    "recovery_failed",
    "root_cause",
    "bcp_revision",
    "maintenance",
    "estimate",
    "custom",
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
# Messages to our own on-call operators (service/operators.py): never sent to partners.
OPERATOR_KINDS: tuple[str, ...] = (
    "operator_promise_due",
    "operator_promise_overdue",
    "operator_unacknowledged",
    "operator_question_unanswered",
)
Language = Literal["ja", "en"]
# A component name as incidents and subscriptions spell it.
Component = Annotated[Line, StringConstraints(min_length=1, max_length=64)]
LANGUAGES: tuple[str, ...] = ("ja", "en")


def not_blank(value: Any) -> Any:
    """Text a partner reads says something, in at least one language."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    if isinstance(value, dict) and not any(str(v).strip() for v in value.values()):
        raise ValueError("must have text in at least one language")
    return value


# Text a partner reads: one string for every language, or one per language.
Text = Annotated[MessageText | dict[Language, MessageText], AfterValidator(not_blank)]
Title = Annotated[Line | dict[Language, Line], AfterValidator(not_blank)]

# What each kind must say (besides the responsible contact, which every notice names).
REQUIRED: dict[str, tuple[str, ...]] = {
    "initial": ("summary", "impact", "current_status", "outlook", "next_update_at"),
    "progress": ("stage", "current_status", "next_update_at"),
    "resolved": ("summary",),
    "recovery_failed": ("summary", "current_status", "next_steps", "next_update_at"),
    "root_cause": ("cause", "countermeasures"),
    "bcp_revision": ("summary", "changes"),
    "maintenance": ("summary", "impact", "window_start", "window_end"),
    # An estimate is only honest with what it rests on and what could change it.
    "estimate": ("summary", "time_estimate", "cost_estimate", "assumptions", "risks", "next_update_at"),
    "custom": ("subject", "body"),
}


class Responsible(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Title
    department: Title | None = None
    email: Email | None = None
    phone: Phone | None = None


class NoticeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    summary: Text | None = None
    impact: Text | None = None
    current_status: Text | None = None
    outlook: Text | None = None
    stage: Literal["started", "progress", "completed"] | None = None
    progress_percent: int | None = Field(None, ge=0, le=100)
    next_steps: Text | None = None
    cause: Text | None = None
    countermeasures: Text | None = None
    changes: Text | None = None
    window_start: Moment | None = None
    window_end: Moment | None = None
    recovery_eta: Moment | None = None
    cost_estimate: Text | None = None
    time_estimate: Text | None = None
    assumptions: Text | None = None
    risks: Text | None = None
    # Why this estimate differs from the one it replaces (needed when time or cost changed).
    change_reason: Text | None = None
    subject: Title | None = None
    body: Text | None = None
    responsible: Responsible | None = None
    next_update_at: Moment | None = None
    # A progress notice that only moves the next update: "no change yet, next update at ...".
    no_change: bool | None = None
    # Set by Herald on a correction: the names of the fields it changed (partners are told which).
    corrected: list[str] | None = None
    # Set by Herald on the notices a maintenance announcement schedules: the reminder before the
    # window opens, the completion notice after it closes.
    maintenance_phase: Literal["reminder", "completed"] | None = None

    @field_validator("*", mode="after")
    @classmethod
    def _no_empty_text(cls, value: Any) -> Any:
        return not_blank(value)


class Audience(BaseModel):
    """Who a notice is for. Empty means: partners subscribed to the incident's components."""

    model_config = ConfigDict(extra="forbid")

    all_partners: bool = False
    partners: list[Annotated[str, StringConstraints(max_length=64)]] = Field([], max_length=10_000)
    components: list[Component] = Field([], max_length=200)
    tiers: list[Literal[1, 2, 3]] = Field([], max_length=3)


# What a "no change yet" progress notice says when the operator gives nothing but the new time.
NO_CHANGE_STATUS = {
    "ja": "現在のところ、状況に大きな変化はございません。引き続き復旧に向けて対応しております。",
    "en": "There is no significant change yet; we are still working to restore service.",
}


def check_required(kind: str, fields: NoticeFields, prefix: str = "fields") -> None:
    for name in REQUIRED[kind]:
        if name == "stage" and fields.no_change:
            continue
        if getattr(fields, name) is None:
            raise MissingField(f"a '{kind}' notice needs '{name}'", f"{prefix}.{name}")
    if fields.responsible is None:
        raise MissingField("every notice names our responsible contact", f"{prefix}.responsible")
    if fields.window_start and fields.window_end and fields.window_end <= fields.window_start:
        raise InvalidInput("window_end must be after window_start", f"{prefix}.window_end")


def localise(value: Any, lang: str) -> Any:
    """Pick the partner's language from a stored Text value (recursively for nested dicts)."""
    if isinstance(value, dict):
        if value and set(value) <= set(LANGUAGES):
            other = "en" if lang == "ja" else "ja"
            return value.get(lang) or value.get(other)
        return {key: localise(item, lang) for key, item in value.items()}
    if isinstance(value, list):
        return [localise(item, lang) for item in value]
    return value


def to_datetime(value: float | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return datetime.fromtimestamp(value, tz=UTC)


def to_timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def iso(value: float | None) -> str | None:
    dt = to_datetime(value)
    return dt.isoformat().replace("+00:00", "Z") if dt else None


DATETIME_FIELDS = ("window_start", "window_end", "recovery_eta", "next_update_at")


def render_fields(stored: dict[str, Any], lang: str) -> dict[str, Any]:
    """Stored notice fields → what templates read: one language, real datetimes."""
    fields = {name: localise(value, lang) for name, value in stored.items()}
    for name in DATETIME_FIELDS:
        fields[name] = to_datetime(fields.get(name))
    return fields


# --- language completeness ------------------------------------------------------------------------

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
LANGUAGE_NAMES = {"ja": "Japanese", "en": "English"}


def written_in(value: str | dict[str, Any]) -> set[str]:
    """Languages a Text value has text in. A plain string with Japanese script is Japanese only;
    any other plain string (a product name, a code, a time) reads the same in every language."""
    if isinstance(value, dict):
        return {lang for lang in LANGUAGES if str(value.get(lang) or "").strip()}
    return {"ja"} if _JAPANESE.search(value) else set(LANGUAGES)


def missing_text(fields: dict[str, Any], readers: set[str], prefix: str = "") -> list[str]:
    """Paths of operator text (`summary.en`, `responsible.name.en`) with nothing in a language that
    some recipients read, in field order."""
    missing = []
    for name, value in fields.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and not (set(value) <= set(LANGUAGES)):
            missing += missing_text(value, readers, f"{path}.")
        elif isinstance(value, (str, dict)) and name not in NOT_TEXT:
            missing += [f"{path}.{lang}" for lang in LANGUAGES if lang in readers - written_in(value)]
    return missing


# Stored fields that are not prose: times, enumerations, addresses.
NOT_TEXT = frozenset({*DATETIME_FIELDS, "stage", "maintenance_phase", "email", "phone", "components"})


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
        "send_at": iso(row.get("send_at")),
        "follows_id": row.get("follows_id"),
        "deliveries": counts or {},
    }


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Field by field, what a correction changed (the evidence report shows this)."""
    names = sorted((set(before) | set(after)) - {"corrected"})
    return [
        {"field": n, "before": before.get(n), "after": after.get(n)} for n in names if before.get(n) != after.get(n)
    ]
