"""Turning command-line options into the API's values: bilingual text, times, JSON files."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.cli import exits
from service.cli.client import ApiFailure


def add_text_option(parser: argparse.ArgumentParser, name: str, what: str) -> None:
    parser.add_argument(
        f"--{name}",
        action="append",
        metavar="TEXT",
        help=f"{what}: one text for every language, or give it twice as ja=… and en=…",
    )


def text_value(values: list[str] | None) -> str | dict[str, str] | None:
    """["…"] → "…"; ["ja=…", "en=…"] → {"ja": "…", "en": "…"}."""
    if not values:
        return None
    by_language = {}
    for value in values:
        lang, sep, text = value.partition("=")
        if sep and lang in ("ja", "en"):
            by_language[lang] = text
        elif len(values) == 1:
            return value
        else:
            raise ApiFailure(exits.USAGE, f"give one text, or each language as ja=… / en=… (got {value!r})")
    return by_language


def minutes_from_now(minutes: float | None) -> str | None:
    if minutes is None:
        return None
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(timespec="seconds")


def read_json_file(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        body = json.loads(text)
    except OSError as exc:
        raise ApiFailure(exits.USAGE, f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ApiFailure(exits.USAGE, f"{path}: not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiFailure(exits.USAGE, f"{path}: expected a JSON object")
    return body


def set_if_given(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != []:
        target[key] = value
