"""What every benchmark shares: sinks in a child process, a synthetic directory, Herald settings."""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pydantic import SecretStr

from bench.sinks import ACCOUNT_SID, AUTH_TOKEN
from service.settings import ROOT, Settings, Token

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
            "auth": {"tokens": [Token(name="bench", scopes=["admin"], secret=SecretStr(TOKEN))]},
            "smtp": {
                "host": "127.0.0.1",
                "port": sink.smtp_port,
                "tls": "none",
                "pool_size": 8,
                "from_address": "Herald <incident@herald.example.com>",
            },
            "twilio": {
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "from_number": "+15005550006",
                "api_base_url": sink.twilio_url,
            },
            "dispatch": {"poll_interval": 0.05, **dispatch},
            "directory": {"import_on_start": False},
            # The bench broadcast is an emergency maintenance the operator sends by SMS too, now.
            "notice_channels": {"maintenance": {"any": ["sms", "email"]}},
            "quiet_hours": {"enabled": False},
        }
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# Herald in a process of its own (bench.e2e, bench.priority, bench.growth): its peak RSS is then
# Herald's alone, not the driver's, the seeding's or the comparison clients'.

UNSETTLED = ("pending", "sending")


@dataclass
class HeraldProcess:
    process: asyncio.subprocess.Process
    base_url: str
    log_path: Path
    sampled_peak_rss: int = 0

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def peak_rss_mb(self) -> float:
        """The kernel's high-water mark (VmHWM) where there is one, else the 100 ms samples' maximum."""
        return max(_vm_hwm_bytes(self.pid), self.sampled_peak_rss) / 2**20

    async def sample_rss(self, interval: float = 0.1) -> None:
        process = psutil.Process(self.pid)
        while self.alive:
            try:
                self.sampled_peak_rss = max(self.sampled_peak_rss, process.memory_info().rss)
            except psutil.Error:
                return
            await asyncio.sleep(interval)


def _vm_hwm_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reveal(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"cannot serialise {type(value).__name__}")


@asynccontextmanager
async def herald_process(settings: Settings, workdir: Path) -> AsyncIterator[HeraldProcess]:
    """`bench._herald_proc` on `settings` (listening on a free 127.0.0.1 port it reports), stopped on exit."""
    server = settings.server.model_copy(update={"host": "127.0.0.1", "port": 0})
    config = workdir / "herald.json"
    config.write_text(json.dumps(settings.model_copy(update={"server": server}).model_dump(), default=_reveal))
    log_path = workdir / "herald.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._herald_proc",
            str(config),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"Herald did not start; its log:\n{log_tail(log_path)}")
        herald = HeraldProcess(process, f"http://127.0.0.1:{line[1]}", log_path)
        sampler = asyncio.create_task(herald.sample_rss())
        try:
            yield herald
        finally:
            sampler.cancel()
    finally:
        await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def log_errors(path: Path) -> int:
    """Error lines in Herald's JSON log: a figure from a run that logged errors needs a second look."""
    return sum(1 for line in path.read_text(errors="replace").splitlines() if '"level": "error"' in line)


async def post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        reply = await response.json()
        if response.status not in (200, 201, 202):
            raise RuntimeError(f"POST {url}: {response.status} {reply}")
        return dict(reply)


class DeliveryLog:
    """Read-only look at Herald's SQLite file from the driver (WAL: readers never block its writer)."""

    def __init__(self, db_path: Path) -> None:
        self.db = sqlite3.connect(db_path, timeout=30, isolation_level=None)

    def close(self) -> None:
        self.db.close()

    def count(self, where: str = "1", *args: Any) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM deliveries WHERE {where}", args).fetchone()[0])

    def unsettled(self) -> int:
        return self.count("status IN (?, ?)", *UNSETTLED)

    def rows(self, where: str = "1", *args: Any) -> list[sqlite3.Row]:
        self.db.row_factory = sqlite3.Row
        try:
            return self.db.execute(f"SELECT * FROM deliveries WHERE {where}", args).fetchall()
        finally:
            self.db.row_factory = None

    async def wait_until_settled(self, timeout: float, herald: HeraldProcess | None = None) -> None:
        deadline = time.monotonic() + timeout
        while self.unsettled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.unsettled()} deliveries still unsettled after {timeout:.0f} s")
            if herald is not None and not herald.alive:
                raise RuntimeError(f"Herald exited; its log:\n{log_tail(herald.log_path)}")
            await asyncio.sleep(0.2)


def settle_timeout(deliveries: int) -> float:
    """Generous but bounded: a minute, plus 10 ms a delivery (a floor of 100 deliveries/s)."""
    return 60 + deliveries / 100


def broadcast_figures(log: DeliveryLog, posted_at: float) -> dict[str, Any]:
    """Throughput and created→submitted latency of a settled broadcast, from the delivery log.

    The clock stops at the last outcome written (`sent_at`, else `failed_at`), so the figure does
    not depend on how often the driver polled.
    """
    rows = log.rows()
    finished = [r["sent_at"] or r["failed_at"] or r["updated_at"] for r in rows]
    seconds = max(finished) - posted_at if finished else float("nan")
    emails = [r for r in rows if r["channel"] == "email"]
    email_seconds = max((r["sent_at"] or r["updated_at"]) for r in emails) - posted_at if emails else float("nan")
    latencies = [r["sent_at"] - r["created_at"] for r in rows if r["sent_at"] is not None]
    return {
        "deliveries": len(rows),
        "sent": sum(1 for r in rows if r["status"] == "sent"),
        "emails": len(emails),
        "seconds": seconds,
        "rate": len(rows) / seconds,
        "email_rate": len(emails) / email_seconds if emails else float("nan"),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }
