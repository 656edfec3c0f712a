"""Notice rendering: one Jinja environment per language, every template compiled once.

Operator text reaches templates only as data, never as template source, and the environment is
sandboxed. Values are formatted by Python filters rather than template macros: a macro defined in a
plain-text template and called from an HTML one returns markup-safe text, which would skip escaping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import BaseLoader, ChainableUndefined, ChoiceLoader, FileSystemLoader, Template, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from service.notices import KINDS, LANGUAGES, OPERATOR_KINDS
from service.segments import ellipsis_for, fits_sms

PARTS: tuple[str, ...] = ("subject", "txt", "html", "sms")
DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

# Notice fields an SMS may quote; they are shortened first when the SMS is over its budget.
SMS_SHORTENABLE = ("summary", "current_status", "next_steps", "body")

SEVERITY_LABELS = {
    "ja": {"critical": "重大", "major": "重要", "minor": "軽微", "maintenance": "メンテナンス"},
    "en": {"critical": "Critical", "major": "Major", "minor": "Minor", "maintenance": "Maintenance"},
}
STATUS_LABELS = {
    "ja": {
        "investigating": "調査中",
        "identified": "原因特定済み",
        "recovering": "復旧作業中",
        "monitoring": "経過監視中",
        "resolved": "復旧済み",
        "recovery_failed": "復旧失敗",
    },
    "en": {
        "investigating": "Investigating",
        "identified": "Cause identified",
        "recovering": "Recovering",
        "monitoring": "Monitoring",
        "resolved": "Resolved",
        "recovery_failed": "Recovery failed",
    },
}
STAGE_LABELS = {
    "ja": {"started": "復旧作業開始", "progress": "復旧作業中", "completed": "復旧作業完了"},
    "en": {"started": "Recovery started", "progress": "Recovery in progress", "completed": "Recovery completed"},
}
PERCENT_FORMAT = {"ja": "（進捗 {}%）", "en": " ({}% complete)"}
RANGE_SEPARATOR = {"ja": " 〜 ", "en": " to "}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_BLANK_LINES = re.compile(r"\n{3,}")  # optional paragraphs leave gaps behind
_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    txt: str
    html: str
    sms: str


def one_line(value: Any) -> str:
    """Collapse line breaks into spaces: a subject with CR/LF could inject mail headers."""
    return _LINE_BREAKS.sub(" ", _text(value)).strip()


def nl2br(value: Any) -> Markup:
    return Markup("<br>\n").join(escape(value).splitlines())


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _label(labels: Mapping[str, str]) -> Callable[[Any], str]:
    return lambda value: labels.get(_text(value), _text(value))


class _Formatter:
    """The language- and timezone-bound filters one environment gets."""

    def __init__(self, lang: str, zone: ZoneInfo) -> None:
        self.lang = lang
        self.zone = zone

    def when(self, value: Any, short: bool = False) -> str:
        if isinstance(value, str) and value:
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            return ""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        local = value.astimezone(self.zone)
        zone, clock = local.tzname(), f"{local:%H:%M}"
        if self.lang == "ja":
            day = f"{local.month}月{local.day}日" if short else f"{local.year}年{local.month}月{local.day}日"
            return f"{day} {clock} ({zone})"
        day = f"{local.day} {MONTHS[local.month - 1]}" + ("" if short else f" {local.year}")
        return f"{day} {clock} {zone}"

    def field(self, notice: Any, name: str) -> str:
        """One notice field as display text; "" when it was not given."""
        if not isinstance(notice, Mapping):
            return ""
        if name == "stage":
            return self._stage(notice)
        if name == "window":
            start, end = self.when(notice.get("window_start")), self.when(notice.get("window_end"))
            return RANGE_SEPARATOR[self.lang].join((start, end)) if start or end else ""
        value = notice.get(name)
        return self.when(value) if isinstance(value, datetime) else _text(value).strip()

    def _stage(self, notice: Mapping[str, Any]) -> str:
        stage, percent = notice.get("stage"), notice.get("progress_percent")
        if not stage:
            return ""
        label = STAGE_LABELS[self.lang].get(stage, stage)
        return str(label) + (PERCENT_FORMAT[self.lang].format(percent) if isinstance(percent, int) else "")

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "when": self.when,
            "field": self.field,
            "severity": _label(SEVERITY_LABELS[self.lang]),
            "status": _label(STATUS_LABELS[self.lang]),
            "stage": _label(STAGE_LABELS[self.lang]),
            "oneline": one_line,
            "nl2br": nl2br,
        }


def _loader(directory: Path, own: Path | None) -> BaseLoader:
    """Built-in templates, each replaced by the company's own file of the same name when it has one."""
    if own is None:
        return FileSystemLoader(directory)
    return ChoiceLoader([FileSystemLoader(own), FileSystemLoader(directory)])


def _environment(directory: Path, formatter: _Formatter, own: Path | None = None) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=_loader(directory, own),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=ChainableUndefined,
        finalize=lambda value: "" if value is None else value,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(formatter.filters())
    return env


class Renderer:
    """own_dir: the company's templates (`<lang>/<kind>.<part>.j2`, layouts and macros too), each
    overriding the built-in file of the same name; the others stay built in."""

    def __init__(
        self,
        templates_dir: Path | None = None,
        timezone: str = "Asia/Tokyo",
        max_sms_segments: int = 3,
        own_dir: Path | None = None,
    ) -> None:
        self.templates_dir = Path(templates_dir) if templates_dir else DEFAULT_TEMPLATES_DIR
        self.own_dir = Path(own_dir) if own_dir else None
        self.zone = ZoneInfo(timezone)
        self.max_sms_segments = max_sms_segments
        self._templates: dict[tuple[str, str, str], Template] = {}
        self._environments: dict[str, SandboxedEnvironment] = {}
        for lang in LANGUAGES:
            own = self.own_dir / lang if self.own_dir else None
            env = self._environments[lang] = _environment(self.templates_dir / lang, _Formatter(lang, self.zone), own)
            for shared in env.list_templates(filter_func=lambda name: name.startswith("_")):
                env.get_template(shared)  # layouts and macros join the environment's cache now
            for kind in KINDS + OPERATOR_KINDS:
                for part in PARTS:
                    self._templates[kind, lang, part] = env.get_template(f"{kind}.{part}.j2")

    def render(self, kind: str, lang: str, context: Mapping[str, Any]) -> RenderedMessage:
        return RenderedMessage(**{part: self.render_part(kind, lang, part, context) for part in PARTS})

    def render_part(self, kind: str, lang: str, part: str, context: Mapping[str, Any]) -> str:
        template = self._template(kind, lang, part)
        variables = {**context, "kind": kind, "lang": lang}
        if part == "subject":
            return one_line(template.render(variables))
        if part == "sms":
            return self._render_sms(template, variables)
        if part == "txt":
            return _BLANK_LINES.sub("\n\n", template.render(variables)).strip() + "\n"
        return template.render(variables)

    def render_letter(self, name: str, lang: str, part: str, context: Mapping[str, Any]) -> str:
        """A message that is not a notice (an answer, a reminder, an internal header):
        `templates/<lang>/<name>.<part>.j2`, with the notices' filters."""
        template = self._environments[lang].get_template(f"{name}.{part}.j2")
        text = template.render({**context, "lang": lang})
        if part == "subject":
            return one_line(text)
        return _BLANK_LINES.sub("\n\n", text).strip() + "\n" if part == "txt" else text

    def sms_overflows(self, kind: str, lang: str, context: Mapping[str, Any]) -> bool:
        """Whether the SMS as written is over its segment budget, so that `render_part` cuts it."""
        template = self._template(kind, lang, "sms")
        return not self._fits(template.render({**context, "kind": kind, "lang": lang}).strip())

    def _template(self, kind: str, lang: str, part: str) -> Template:
        try:
            return self._templates[kind, lang, part]
        except KeyError:
            raise ValueError(
                f"no template for kind={kind!r} lang={lang!r} part={part!r}; "
                f"kinds: {', '.join(KINDS)}; languages: {', '.join(LANGUAGES)}; parts: {', '.join(PARTS)}"
            ) from None

    def _render_sms(self, template: Template, variables: dict[str, Any]) -> str:
        text = template.render(variables).strip()
        if self._fits(text):
            return text
        ellipsis = ellipsis_for(text)
        notice = dict(variables.get("notice") or {})

        def render_shortened(limit: int) -> str:
            shortened = {**notice, **_shortened(notice, limit, ellipsis)}
            return template.render({**variables, "notice": shortened}).strip()

        longest = max(len(_text(notice.get(name))) for name in SMS_SHORTENABLE)
        limit = _largest(longest, lambda limit: self._fits(render_shortened(limit)))
        if limit is not None:
            return render_shortened(limit)
        return self._truncate_keeping_link(render_shortened(0), _sms_link(variables), ellipsis)

    def _truncate_keeping_link(self, text: str, link: str, ellipsis: str) -> str:
        head, tail = text, ellipsis
        if link and text.endswith(link) and self._fits(f"{ellipsis}\n{link}"):
            head, tail = text[: -len(link)], f"{ellipsis}\n{link}"
        keep = _largest(len(head), lambda size: self._fits(head[:size].rstrip() + tail)) or 0
        return head[:keep].rstrip() + tail

    def _fits(self, text: str) -> bool:
        return fits_sms(text, self.max_sms_segments)


def _shortened(notice: Mapping[str, Any], limit: int, ellipsis: str) -> dict[str, str]:
    return {
        name: _text(notice[name])[:limit].rstrip() + ellipsis
        for name in SMS_SHORTENABLE
        if len(_text(notice.get(name))) > limit
    }


def _sms_link(variables: Mapping[str, Any]) -> str:
    company = variables.get("company") or {}
    return _text(variables.get("ack_url") or company.get("status_page_url"))


def _largest(upper: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in 0..upper with fits(n), for a fits that only turns false as n grows."""
    low, high, best = 0, upper, None
    while low <= high:
        middle = (low + high) // 2
        if fits(middle):
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best
