"""What every benchmark shares: sinks in a child process, a synthetic directory, Herald settings."""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from service.settings import ROOT, Settings, Token
from service.store import Store
from service.store import tables

from bench.sinks import ACCOUNT_SID, AUTH_TOKEN

TOKEN = "bench-operator-token-0123456789"


@dataclass(frozen=True)
class Sinks:
    smtp_port: int
    twilio_url: str


@asynccontextmanager
async def sinks() -> AsyncIterator[Sinks]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sinks", cwd=str(ROOT), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
    assert line and line[0] == "READY", f"sink did not start: {line}"
    try:
        yield Sinks(int(line[1]), f"http://127.0.0.1:{line[2]}")
    finally:
        process.kill()
        await process.wait()


def herald_settings(db_path: Path, sink: Sinks, **dispatch: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": f"sqlite+aiosqlite:///{db_path}"},
            "auth": {"tokens": [Token(name="bench", scopes=["admin"], secret=TOKEN)]},  # type: ignore[list-item]
            "smtp": {"host": "127.0.0.1", "port": sink.smtp_port, "tls": "none", "pool_size": 8,
                     "from_address": "Herald <incident@herald.example.com>"},
            "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15005550006",
                       "api_base_url": sink.twilio_url},
            "dispatch": {"poll_interval": 0.05, **dispatch},
            "directory": {"import_on_start": False},
        }
    )


def partner_rows(count: int, emails: int = 2, phones: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` partners subscribed to every component, each with `emails` email and `phones` SMS contacts."""
    now = time.time()
    partners, contacts = [], []
    for p in range(count):
        pid = f"partner-{p:06d}"
        partners.append({"id": pid, "name": f"取引先 {p} 株式会社", "language": "ja" if p % 4 else "en",
                         "components": ["*"], "policy": None, "created_at": now, "updated_at": now})
        for e in range(emails):
            contacts.append({"partner_id": pid, "key": f"e{e}", "name": f"担当 {e}", "tier": 1 if e == 0 else 2,
                             "email": f"contact{e}.{p}@partner{p}.example.jp", "phone": None, "channels": ["email"],
                             "language": None, "created_at": now, "updated_at": now})
        for s in range(phones):
            contacts.append({"partner_id": pid, "key": f"s{s}", "name": f"当番 {s}", "tier": 1,
                             "email": None, "phone": f"+8190{p:08d}", "channels": ["sms"],
                             "language": None, "created_at": now, "updated_at": now})
    return partners, contacts


async def seed_directory(settings: Settings, partners: int, emails: int = 2, phones: int = 1) -> None:
    store = Store(settings.database.url)
    await store.upgrade()
    partner_list, contact_list = partner_rows(partners, emails, phones)
    async with store.begin() as conn:  # bulk rows: the directory import validates one by one
        await conn.execute(tables.partners.insert(), partner_list)
        for start in range(0, len(contact_list), 5000):
            await conn.execute(tables.contacts.insert(), contact_list[start : start + 5000])
    await store.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
