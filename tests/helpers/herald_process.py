"""`herald serve` as a real child process, for the tests a crash or a second Herald needs.

The child gets a TOML file written to a temp directory (no secret in it) and its secrets in the
environment, exactly as an operator would run it, on port 0: the port it bound is read back from its log,
then readiness is `/readyz`; `kill()` is SIGKILL,
so nothing in Herald gets a chance to tidy up. Its log (JSON lines) goes to a file whose tail is
quoted when the child fails to come up. Below the process: what the far side received and what
the delivery log says, the two things every such test compares.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from service.store import Store
from service.store.tables import deliveries
from tests.fakes.smtp import ReceivedMessage, SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import ROOT, TOKENS

OPERATOR = {"Authorization": f"Bearer {TOKENS['operator']}"}
FINAL = ("sent", "delivered", "failed", "dead", "undelivered", "bounced", "acknowledged")
LISTENING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")
MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)


def wired_config(db_url: str, smtp: SmtpSink, twilio: TwilioFake, **dispatch: Any) -> dict[str, Any]:
    """A Herald that sends to the test's SMTP sink and Twilio-compatible server, imports no
    directory (the test seeds one) and never escalates (no extra deliveries mid-test)."""
    return {
        "database": {"url": db_url},
        "auth": {"tokens": [{"name": "operator", "scopes": ["operator"]}]},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "none",
            "from_address": "Herald <incident@herald.example.com>",
        },
        "twilio": {"account_sid": twilio.account_sid, "from_number": "+15005550006", "api_base_url": twilio.base_url},
        "dispatch": {
            "poll_interval": 0.05,
            "backoff_initial": 0.1,
            "backoff_max": 0.5,
            "backoff_jitter": 0.05,
            **dispatch,
        },
        "directory": {"import_on_start": False},
        "escalation": {"steps": {}},
        # The bench broadcast is an emergency maintenance the operator sends by SMS too, now.
        "notice_channels": {"maintenance": {"any": ["sms", "email"]}},
        "quiet_hours": {"enabled": False},
    }


def wired_secrets(twilio: TwilioFake) -> dict[str, str]:
    return {"HERALD_TOKEN_OPERATOR": TOKENS["operator"], "HERALD_TWILIO__AUTH_TOKEN": twilio.auth_token}


class HeraldProcess:
    """One Herald: `start()` (again after `kill()` to restart on the same database)."""

    def __init__(
        self, workdir: Path, config: Mapping[str, Any], secrets: Mapping[str, str], name: str = "herald"
    ) -> None:
        self.workdir = workdir
        self.config = {section: dict(values) for section, values in config.items()}
        self.secrets = dict(secrets)
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.log_path = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    async def start(self, timeout: float = 30.0) -> HeraldProcess:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is already running"
        self.port = 0
        self.starts += 1
        # Port 0: the child binds a free port itself and prints it (aiohttp's "Running on ..." line).
        self.config["server"] = {**self.config.get("server", {}), "host": "127.0.0.1", "port": 0}
        config_path = self.workdir / f"{self.name}.toml"
        config_path.write_text(to_toml(self.config), encoding="utf-8")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        environ.update(self.secrets, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            since = log.tell()
            # Popen returns once the child exists; a plain handle lets teardown kill it without a loop.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "service.cli", "--config", str(config_path), "serve"],
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await self.wait_ready(since, timeout)
        return self

    async def wait_ready(self, since: int, timeout: float) -> None:
        """Read the port the child bound from its log (after byte `since`), then wait for /readyz."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                if not self.port:
                    self.port = self._bound_port(since)
                if self.port and await self._ready(session):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def _bound_port(self, since: int) -> int:
        with self.log_path.open("rb") as log:
            log.seek(since)
            found = LISTENING.search(log.read())
        return int(found.group(1)) if found else 0

    async def _ready(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def freeze(self) -> None:
        """SIGSTOP: the process holds still (its committed rows can be read) until `thaw()` or `kill()`."""
        self.process_running().send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process_running().send_signal(signal.SIGCONT)

    def process_running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        return self.process

    def kill(self) -> None:
        """SIGKILL, then reap: a crash, not a shutdown."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=OPERATOR) as session,
            session.post(f"{self.url}{path}", json=body) as response,
        ):
            return response.status, await response.json()

    async def broadcast(self, body: Any) -> dict[str, Any]:
        """POST /v1/broadcasts; returns the plan summary (`total`, `by_channel`, ...)."""
        status, reply = await self.post("/v1/broadcasts", body)
        assert status == 202, reply
        return reply["deliveries"]

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text("utf-8", errors="replace").splitlines()[-lines:])


def to_toml(config: Mapping[str, Mapping[str, Any]]) -> str:
    """Sections of scalars, lists and inline tables: all Herald's configuration needs."""
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


# --- what the far side received --------------------------------------------------------------


def message_ids(received: list[ReceivedMessage]) -> Counter[str]:
    """Message-ID of every message the SMTP sink accepted, read from the raw bytes it got."""
    found: Counter[str] = Counter()
    for message in list(received):
        match = MESSAGE_ID.search(message.raw)
        assert match, f"a message without Message-ID reached the sink: {message.raw[:200]!r}"
        found[match.group(1).decode()] += 1
    return found


def texted(twilio: TwilioFake) -> Counter[str]:
    """SMS the Twilio-compatible server accepted (201), by `To`."""
    return Counter(m["to"] for m in list(twilio.messages))


def duplicates(counts: Counter[str]) -> Counter[str]:
    return Counter({key: n - 1 for key, n in counts.items() if n > 1})


# --- the delivery log -------------------------------------------------------------------------


async def outbox(store: Store) -> list[dict[str, Any]]:
    async with store.read() as conn:
        query = select(
            deliveries.c.id,
            deliveries.c.channel,
            deliveries.c.address,
            deliveries.c.message_id,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.error_code,
            deliveries.c.worker,
            deliveries.c.lease_until,
        ).order_by(deliveries.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def settled(store: Store) -> bool:
    """Every delivery planned has reached a final state (a count: this is polled)."""
    async with store.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(deliveries))
        unsettled = await conn.scalar(select(func.count()).where(deliveries.c.status.not_in(FINAL)))
    return bool(total) and not unsettled
