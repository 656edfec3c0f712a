"""Small helpers shared by the tests: tokens, settings, waiting on a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from service.settings import Settings, Token

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
EXAMPLE_DIRECTORY = ROOT / "config" / "partners.example.yaml"

TOKENS = {"ingest": "t-ingest-0123456789", "operator": "t-operator-0123456789", "admin": "t-admin-0123456789"}


def auth(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


def make_settings(db_url: str, **sections: dict[str, Any]) -> Settings:
    base: dict[str, Any] = {
        "database": {"url": db_url},
        "auth": {"tokens": [Token(name=s, scopes=[s], secret=v) for s, v in TOKENS.items()]},  # type: ignore[arg-type, list-item]
        "dispatch": {"poll_interval": 0.05, "backoff_initial": 0.05, "backoff_max": 0.2, "backoff_jitter": 0.01},
        "directory": {"path": str(EXAMPLE_DIRECTORY), "import_on_start": False},
        # Quiet hours depend on the clock: tests that mean them switch them on with a window around now.
        "quiet_hours": {"enabled": False},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return Settings.model_validate(base)


async def wait_until(
    condition: Callable[[], Awaitable[Any]] | Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll a condition until it is truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
