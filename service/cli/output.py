"""Human output: tables that line up with Japanese text (two columns per wide character)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any


def width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text
    )


def pad(text: str, columns: int) -> str:
    return text + " " * max(columns - width(text), 0)


def clip(text: str, columns: int) -> str:
    """At most `columns` wide, ending in … when cut."""
    if width(text) <= columns:
        return text
    kept, used = [], 0
    for char in text:
        if used + width(char) > columns - 1:
            break
        kept.append(char)
        used += width(char)
    return "".join(kept) + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([width(h)] + [width(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(pad(value, w) for value, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value)
    return " ".join(str(value).split())


def text_in(value: Any, lang: str = "ja") -> str:
    """A Text value ({"ja": ..., "en": ...} or one string) as one line, in `lang` when it has it."""
    if isinstance(value, dict):
        value = value.get(lang) or next((v for v in value.values() if v), "")
    return "" if value is None else " ".join(str(value).split())


def as_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
