"""Checks a company's own templates before a partner ever sees them: every file parses, has a name
Herald uses, and every kind renders in every language with sample notices (every field given, and
only the required ones)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from service import compose
from service.notices import DATETIME_FIELDS, KINDS, LANGUAGES, OPERATOR_KINDS, REQUIRED, NoticeFields
from service.render import PARTS, Renderer
from service.settings import Settings
from service.store.models import Incident, Notice, Recipient

KNOWN_NAMES = frozenset(f"{kind}.{part}.j2" for kind in KINDS + OPERATOR_KINDS for part in PARTS)
_SAMPLE_TIME = datetime(2026, 11, 25, 5, 10, tzinfo=UTC)
_RESPONSIBLE = {
    "name": {"ja": "運用センター", "en": "Operations Center"},
    "department": {"ja": "情報システム部", "en": "IT Operations"},
    "email": "ops@example.com",
    "phone": "+81-3-0000-0000",
}


@dataclass(frozen=True)
class TemplateProblem:
    where: str  # "ja/initial.txt.j2:3" or "en/progress"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def check_templates(settings: Settings, own_dir: Path) -> list[TemplateProblem]:
    if not own_dir.is_dir():
        return [TemplateProblem(str(own_dir), "no such directory")]
    problems = _unknown_files(own_dir) + _syntax_errors(own_dir)
    if problems:
        return problems
    try:
        renderer = Renderer(
            timezone=settings.company.timezone, max_sms_segments=settings.sms.max_segments, own_dir=own_dir
        )
    except TemplateError as exc:  # e.g. a filter that does not exist, found when compiling
        where = getattr(exc, "filename", None) or getattr(exc, "name", None) or str(own_dir)
        line = getattr(exc, "lineno", None)
        return [TemplateProblem(f"{where}:{line}" if line else str(where), str(exc))]
    for kind in KINDS:
        for lang in LANGUAGES:
            for label, fields in (("every field", _every_field()), ("only the required fields", _required(kind))):
                notice = Notice(
                    id=1, incident_id=42, kind=kind, version=2, state="draft", severity="critical", fields=fields,
                    audience={},
                )  # fmt: skip
                context = compose.context(
                    settings,
                    notice,
                    _incident(),
                    lang,
                    Recipient("山田 太郎", "株式会社ABC商事", 1),
                    ack_url=f"{settings.server.public_base_url.rstrip('/')}/ack/sample",
                    corrects_version=1,
                )
                try:
                    renderer.render(kind, lang, context)
                except Exception as exc:
                    problems.append(TemplateProblem(f"{lang}/{kind}", f"rendering with {label}: {exc}"))
    return problems


def _unknown_files(own_dir: Path) -> list[TemplateProblem]:
    problems = []
    for path in sorted(own_dir.rglob("*.j2")):
        relative = path.relative_to(own_dir)
        known = (
            len(relative.parts) == 2
            and relative.parts[0] in LANGUAGES
            and (path.name in KNOWN_NAMES or path.name.startswith("_"))
        )
        if not known:
            problems.append(
                TemplateProblem(
                    str(relative),
                    f"Herald never uses this file: names are <lang>/<kind>.<part>.j2 with lang in "
                    f"{', '.join(LANGUAGES)}, part in {', '.join(PARTS)}, or a shared _name.j2",
                )
            )
    return problems


def _syntax_errors(own_dir: Path) -> list[TemplateProblem]:
    parser = SandboxedEnvironment()
    problems = []
    for path in sorted(own_dir.rglob("*.j2")):
        try:
            parser.parse(path.read_text(encoding="utf-8"), path.name, str(path))
        except TemplateSyntaxError as exc:
            problems.append(TemplateProblem(f"{path.relative_to(own_dir)}:{exc.lineno}", exc.message or "syntax error"))
        except UnicodeDecodeError as exc:
            problems.append(TemplateProblem(str(path.relative_to(own_dir)), f"not UTF-8 text ({exc.reason})"))
    return problems


def _every_field() -> dict[str, Any]:
    """A value for every notice field, read from the model so new fields are covered too."""
    fields: dict[str, Any] = {}
    for name, info in NoticeFields.model_fields.items():
        annotation = str(info.annotation)
        if name in DATETIME_FIELDS:
            fields[name] = (_SAMPLE_TIME + timedelta(hours=len(fields))).timestamp()
        elif name == "responsible":
            fields[name] = _RESPONSIBLE
        elif name == "stage":
            fields[name] = "progress"
        elif "int" in annotation:
            fields[name] = 50
        elif "str" in annotation:
            fields[name] = {"ja": f"（{name} の例文）", "en": f"(sample {name})"}
    return fields


def _required(kind: str) -> dict[str, Any]:
    every = _every_field()
    return {name: every[name] for name in (*REQUIRED[kind], "responsible")}


def _incident() -> Incident:
    return Incident(
        id=42,
        title={"ja": "受発注システムの障害", "en": "Order system outage"},
        severity="critical",
        status="investigating",
        components=["orders"],
        created_at=_SAMPLE_TIME.timestamp(),
    )
