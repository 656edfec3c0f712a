"""What every benchmark shares: sinks in a child process, a synthetic directory, Herald settings."""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.sinks import ACCOUNT_SID, AUTH_TOKEN
from service.settings import ROOT, Settings, Token
from service.store import Store, normalise_url

TOKEN = "bench-operator-token-0123456789"


@dataclass(frozen=True)
class Sinks:
    smtp_port: int
    twilio_url: str
    control_url: str

    async def counts(self) -> dict[str, dict[str, Any]]:
        """What the SMTP sink and the Twilio-compatible server received since the last reset."""
        async with aiohttp.ClientSession() as session, session.get(self.control_url + "/counts") as response:
            return dict(await response.json())

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as session, session.post(self.control_url + "/reset") as response:
            response.raise_for_status()


@asynccontextmanager
async def sinks(sms_rate: float | None = None, sms_burst: int = 1) -> AsyncIterator[Sinks]:
    """`bench.sinks` in a child process; with `sms_rate` its Twilio server enforces that rate."""
    extra = ["--sms-rate", str(sms_rate), "--sms-burst", str(sms_burst)] if sms_rate else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sinks", *extra, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
    assert line and line[0] == "READY", f"sink did not start: {line}"
    try:
        yield Sinks(int(line[1]), f"http://127.0.0.1:{line[2]}", f"http://127.0.0.1:{line[3]}")
    finally:
        process.kill()
        await process.wait()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def fresh_database(url: str | None, workdir: Path, name: str = "herald") -> str:
    """An empty database for one run: a new SQLite file in `workdir` when `url` is None or SQLite,
    else the PostgreSQL database at `url` emptied (its `public` schema dropped and made again)."""
    if url is None or url.startswith("sqlite"):
        path = workdir / f"{name}.db"
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        return sqlite_url(path)
    engine = create_async_engine(normalise_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    return url


def backend_name(url: str) -> str:
    return "SQLite" if normalise_url(url).startswith("sqlite") else "PostgreSQL"


def herald_settings(database_url: str, sink: Sinks, extra: dict[str, Any] | None = None, **dispatch: Any) -> Settings:
    values: dict[str, Any] = {
        "database": {"url": database_url},
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
        # Herald wakes its own lanes when it plans work; polling is for work another process planned.
        "dispatch": {"poll_interval": 0.5, **dispatch},
        "directory": {"import_on_start": False},
        "ack": {"secret": "bench-acknowledgement-secret-0123456789"},
        # The bench broadcast is an emergency maintenance the operator sends by SMS too, now.
        "notice_channels": {"maintenance": {"any": ["sms", "email"]}},
        "quiet_hours": {"enabled": False},
    }
    for section, fields in (extra or {}).items():
        values[section] = {**values.get(section, {}), **fields} if isinstance(fields, dict) else fields
    return Settings.model_validate(values)


def cpu_seconds() -> float:
    """User + system CPU this process (and its threads) used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    stats_path: Path
    sampled_peak_rss: int = 0
    final_peak_rss: float = 0.0
    cpu_seconds: float = 0.0  # user + system CPU the process used, read as it is stopped
    stats: dict[str, int] = field(default_factory=dict)  # database round trips, read after it stopped

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def cpu_used(self) -> float:
        if not self.alive:
            return self.cpu_seconds
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def peak_rss_mb(self) -> float:
        """The kernel's high-water mark (VmHWM) where there is one, else the 100 ms samples' maximum."""
        if not self.alive:
            return self.final_peak_rss
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
    """`bench._herald_proc` on `settings` (listening on a free 127.0.0.1 port), stopped on exit."""
    async with herald_processes(settings, workdir, 1) as heralds:
        yield heralds[0]


@asynccontextmanager
async def herald_processes(settings: Settings, workdir: Path, count: int) -> AsyncIterator[list[HeraldProcess]]:
    """`count` Herald processes on one database, each on its own port; stopped on exit, after
    which each one's `stats` hold the database round trips it made."""
    heralds: list[HeraldProcess] = []
    try:
        for n in range(count):
            heralds.append(await _start_herald(settings, workdir, n))
        samplers = [asyncio.create_task(h.sample_rss()) for h in heralds]
        try:
            yield heralds
        finally:
            for sampler in samplers:
                sampler.cancel()
    finally:
        for herald in heralds:
            herald.final_peak_rss = herald.peak_rss_mb()
            herald.cpu_seconds = herald.cpu_used()
        await asyncio.gather(*(_stop(h.process) for h in heralds))
        for herald in heralds:
            if herald.stats_path.exists():
                herald.stats = json.loads(herald.stats_path.read_text())


async def _start_herald(settings: Settings, workdir: Path, n: int) -> HeraldProcess:
    server = settings.server.model_copy(update={"host": "127.0.0.1", "port": 0})
    config = workdir / f"herald-{n}.json"
    config.write_text(json.dumps(settings.model_copy(update={"server": server}).model_dump(), default=_reveal))
    log_path, stats_path = workdir / f"herald-{n}.log", workdir / f"herald-{n}.stats.json"
    stats_path.unlink(missing_ok=True)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._herald_proc",
            str(config),
            str(stats_path),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().split()
    except BaseException:
        await _stop(process)
        raise
    if not line or line[0] != "READY":
        await _stop(process)
        raise RuntimeError(f"Herald did not start; its log:\n{log_tail(log_path)}")
    return HeraldProcess(process, f"http://127.0.0.1:{line[1]}", log_path, stats_path)


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
    """Read-only look at Herald's delivery table from the driver, on either backend (on SQLite,
    WAL readers never block Herald's writer). `where` clauses take named `:parameters`."""

    def __init__(self, url: str) -> None:
        self.store = Store(url)

    async def close(self) -> None:
        await self.store.close()

    async def count(self, where: str = "1=1", **params: Any) -> int:
        async with self.store.read() as conn:
            result = await conn.execute(text(f"SELECT count(*) FROM deliveries WHERE {where}"), params)
            return int(result.scalar_one())

    async def unsettled(self) -> int:
        return await self.count("status IN ('pending', 'sending')")

    async def rows(self, where: str = "1=1", **params: Any) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            result = await conn.execute(text(f"SELECT * FROM deliveries WHERE {where}"), params)
            return [dict(r) for r in result.mappings()]

    async def send_seconds(self, delivery_id: int) -> float | None:
        """How long the delivery's last attempt spent in its channel's send (delivery_attempts)."""
        async with self.store.read() as conn:
            result = await conn.execute(
                text("SELECT send_seconds FROM delivery_attempts WHERE delivery_id = :id ORDER BY id DESC LIMIT 1"),
                {"id": delivery_id},
            )
            value = result.scalar()
            return None if value is None else float(value)

    async def wait_until_settled(self, timeout: float, heralds: Sequence[HeraldProcess] = ()) -> None:
        deadline = time.monotonic() + timeout
        while left := await self.unsettled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left} deliveries still unsettled after {timeout:.0f} s")
            for herald in heralds:
                if not herald.alive:
                    raise RuntimeError(f"Herald exited; its log:\n{log_tail(herald.log_path)}")
            await asyncio.sleep(0.2)


def settle_timeout(deliveries: int) -> float:
    """Generous but bounded: a minute, plus 10 ms a delivery (a floor of 100 deliveries/s)."""
    return 60 + deliveries / 100


async def broadcast_figures(log: DeliveryLog, posted_at: float) -> dict[str, Any]:
    """What the delivery log says of a settled broadcast: statuses and created→submitted latency.
    Rates come from the wire (`lane_figures`), not from here."""
    rows = await log.rows()
    latencies = [r["sent_at"] - r["created_at"] for r in rows if r["sent_at"] is not None]
    return {
        "deliveries": len(rows),
        "sent": sum(1 for r in rows if r["status"] == "sent"),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


def lane_figures(arrivals: dict[str, Any], expected: int, started: float) -> dict[str, Any]:
    """One lane's figures from what the far side received: every expected message once, and the
    rate from `started` to the last arrival."""
    seconds = arrivals["last"] - started if arrivals["received"] else float("nan")
    return {
        "expected": expected,
        "received": arrivals["received"],
        "missing": max(0, expected - arrivals["distinct"]),
        "duplicated": arrivals["duplicated"],
        "extra": max(0, arrivals["distinct"] - expected),
        "seconds": seconds,
        "rate": arrivals["distinct"] / seconds if seconds == seconds and seconds > 0 else float("nan"),
    }


def wire_problems(name: str, lane: dict[str, Any]) -> list[str]:
    """Why a lane's arrivals are not 'every expected message exactly once'."""
    return [f"{name}: {lane[key]} {key}" for key in ("missing", "duplicated", "extra") if lane[key]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
