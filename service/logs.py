"""Structured JSON logs with a request id, and no phone number or email address in any line."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# E.164 (+819012345678, +81 90-1234-5678) and Japanese national forms (090-1234-5678, 03-1234-5678).
PHONE = re.compile(r"(?<![\w+])(?:\+\d[\d \-]{6,16}\d|0\d{1,4}-?\d{1,4}-?\d{3,4})(?![\w])")


def mask(text: str) -> str:
    text = EMAIL.sub(lambda m: m.group(0)[0] + "***@" + m.group(0).rsplit("@", 1)[1], text)
    return PHONE.sub(lambda m: _mask_phone(m.group(0)), text)


def _mask_phone(value: str) -> str:
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 8:
        return value
    return ("+" if value.startswith("+") else "") + "*" * (len(digits) - 2) + "".join(digits[-2:])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        fields = getattr(record, "fields", None)  # logger.warning(..., extra={"fields": {...}})
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if key not in entry})
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, stream=None) -> logging.Handler:  # type: ignore[no-untyped-def]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party clients log request bodies (phone numbers) at INFO/DEBUG.
    for noisy in ("twilio", "aiosmtplib", "mail.log", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
