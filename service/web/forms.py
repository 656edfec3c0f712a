"""Console forms: what each notice kind asks for, form fields to the API's own models, and errors
back to the field they belong to, in the operator's language.

The forms build the very payloads the JSON API takes (IncidentCreate, IncidentUpdate, Broadcast),
so the console is checked by the same models and the same core functions as the API.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from service.errors import HeraldError
from service.notices import REQUIRED
from service.web import words

# Notice fields a kind shows besides its required ones.
OPTIONAL: dict[str, tuple[str, ...]] = {
    "initial": (),
    "progress": ("progress_percent", "recovery_eta", "outlook"),
    "resolved": ("impact",),
    "recovery_failed": ("outlook",),
    "root_cause": ("summary",),
    "bcp_revision": ("title",),
    "maintenance": ("title",),
    "estimate": ("recovery_eta", "change_reason"),
    "custom": (),
}
DATETIMES = frozenset({"next_update_at", "window_start", "window_end", "recovery_eta"})
CHOICES: dict[str, tuple[str, ...]] = {"stage": ("started", "progress", "completed")}
NUMBERS = frozenset({"progress_percent"})
UPDATE_KINDS = ("progress", "estimate", "resolved", "recovery_failed", "root_cause", "custom")
BROADCAST_KINDS = ("maintenance", "bcp_revision", "custom")
# Fields the incident itself holds in the new-incident form; its initial notice inherits them.
INCIDENT_LEVEL = ("impact", "next_update_at")
RESPONSIBLE_KEYS = ("responsible.name", "responsible.department", "responsible.email", "responsible.phone")


def notice_fields(kind: str, incident_level: tuple[str, ...] = ()) -> list[str]:
    """The notice fields a kind's form shows, required first; `incident_level` ones are elsewhere."""
    optional = OPTIONAL.get(kind, ())
    names = [*[n for n in optional if n == "title"], *REQUIRED[kind], *optional]
    return [n for n in dict.fromkeys(names) if n not in incident_level]


def kind_of(value: Any, allowed: tuple[str, ...]) -> str:
    return str(value) if value in allowed else allowed[0]


@dataclass
class Form:
    """One submitted console form: its raw values, what it turns into, and errors by field."""

    values: Mapping[str, str]
    lang: str
    zone: ZoneInfo
    errors: dict[str, str] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)

    def get(self, key: str) -> str:
        return str(self.values.get(key, "")).strip()

    def text(self, name: str) -> str | dict[str, str] | None:
        """A bilingual field (`name.ja`, `name.en`) as the API's Text: both, one, or nothing."""
        self.known.add(name)
        found = {lang: self.get(f"{name}.{lang}") for lang in words.LANGUAGES}
        found = {lang: value for lang, value in found.items() if value}
        return found or None

    def moment(self, name: str) -> str | None:
        """A datetime-local value, read in the company's time zone."""
        self.known.add(name)
        raw = self.get(name)
        if not raw:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            self.errors[name] = words.say(self.lang, "err_datetime")
            return None
        return (value if value.tzinfo else value.replace(tzinfo=self.zone)).isoformat()

    def number(self, name: str) -> int | None:
        self.known.add(name)
        raw = self.get(name)
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            self.errors[name] = words.say(self.lang, "err_number")
            return None

    def plain(self, name: str) -> str | None:
        self.known.add(name)
        return self.get(name) or None

    def listed(self, name: str) -> list[str]:
        self.known.add(name)
        return [part for part in re.split(r"[\s,、]+", self.get(name)) if part]

    def value(self, name: str) -> Any:
        if name in DATETIMES:
            return self.moment(name)
        if name in NUMBERS:
            return self.number(name)
        if name in CHOICES:
            return self.plain(name)
        return self.text(name)

    def fields(self, names: list[str]) -> dict[str, Any]:
        return drop_empty({name: self.value(name) for name in names})

    def responsible(self) -> dict[str, Any] | None:
        self.known.update(RESPONSIBLE_KEYS)
        found = drop_empty(
            {
                "name": self.text("responsible.name"),
                "department": self.text("responsible.department"),
                "email": self.plain("responsible.email"),
                "phone": self.plain("responsible.phone"),
            }
        )
        return found or None

    def require(self, names: tuple[str, ...] | list[str], given: Mapping[str, Any]) -> None:
        for name in names:
            if given.get(name) is None and name not in self.errors:
                self.errors[name] = words.say(self.lang, "err_required")

    def validate(self, model: type[BaseModel], payload: dict[str, Any]) -> Any:
        """The payload as the API's model, or None with every problem set beside its field."""
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            for error in exc.errors():
                key = self.key_for([str(p) for p in error["loc"]])
                self.errors.setdefault(key, pydantic_message(self.lang, error))
            return None

    def refused(self, exc: HeraldError) -> None:
        """A refusal from the core (a missing field, an unknown partner, a bad transition)."""
        key = self.key_for((exc.field or "").split("."))
        self.errors.setdefault(key, api_message(self.lang, exc))

    def key_for(self, path: list[str]) -> str:
        """The form field a model path points at: the longest known prefix, past `notice.fields.`."""
        parts = [p for p in path if p]
        while parts and parts[0] in ("notice", "fields"):
            parts = parts[1:]
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in self.known:
                return candidate
            if candidate == "responsible":
                return "responsible.name"
        return ".".join(parts[:1]) or "_form"

    def digest(self, payload: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}


def pydantic_message(lang: str, error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    text = str(error.get("msg", ""))
    if kind == "missing" or "must not be empty" in text or "at least one language" in text:
        return words.say(lang, "err_required")
    if kind.startswith(("datetime", "timezone")):
        return words.say(lang, "err_datetime")
    if kind.startswith(("int", "less_than", "greater_than")):
        return words.say(lang, "err_number")
    if kind in ("literal_error", "enum"):
        return words.say(lang, "err_choice")
    if "too_long" in kind:
        return words.say(lang, "err_too_long")
    return words.say(lang, "err_invalid") + (f" ({text})" if lang == "en" else "")


def api_message(lang: str, exc: HeraldError) -> str:
    if exc.code in ("missing_field", "missing_language"):
        return words.say(lang, "err_required")
    if exc.code == "unknown_partner":
        return words.say(lang, "err_unknown_partner", ids=exc.detail.rpartition("id ")[2])
    if exc.code == "invalid_transition":
        return words.say(lang, "err_transition")
    if (exc.field or "").endswith("window_end"):
        return words.say(lang, "err_window")
    return words.say(lang, "err_invalid") + (f" ({exc.detail})" if lang == "en" else "")


def values_of(multidict: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in multidict.items() if isinstance(value, str)}
