"""A newcomer's first minutes: `herald serve` on defaults, clear configuration errors, the demo."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.cli import main
from service.settings import SettingsError, load_settings
from tests.helpers import ROOT, wait_until

LISTENING = re.compile(r"Running on http://[^:/]+:(\d+)")


async def bound_port(process: asyncio.subprocess.Process) -> int:
    """The port `herald serve` bound for port 0, from the line aiohttp prints once it listens."""
    assert process.stdout is not None
    while True:
        line = (await process.stdout.readline()).decode()
        assert line, "herald serve exited before it listened"
        if found := LISTENING.search(line):
            return int(found.group(1))


async def test_herald_serve_starts_on_sqlite_with_no_other_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["HERALD_SERVER__PORT"] = "0"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        port = await asyncio.wait_for(bound_port(process), timeout=30)
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200 and (await response.json())["status"] == "ok"
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "herald serve exited"
                    return False

            await wait_until(healthy, timeout=30, interval=0.1)
            async with session.get(f"http://127.0.0.1:{port}/v1/partners") as response:
                assert response.status == 401
    finally:
        process.terminate()
        await process.wait()
    assert (tmp_path / "herald.db").exists(), "the default database is a SQLite file in the working directory"


def test_a_bad_setting_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text('[dispatch]\nmax_attempts = "many"\n[smtp]\nprot = 25\n', encoding="utf-8")
    with pytest.raises(SettingsError) as error:
        load_settings(config, environ={})
    message = str(error.value)
    assert "dispatch.max_attempts" in message and "smtp.prot" in message


def test_environment_overrides_the_file_and_secrets_come_only_from_it(tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///a.db"\n[[auth.tokens]]\nname = "ops"\nscopes = ["operator"]\n', encoding="utf-8"
    )
    settings = load_settings(
        config,
        environ={
            "HERALD_DATABASE__URL": "postgresql://db/herald",
            "HERALD_TOKEN_OPS": "s3cret",
            "HERALD_DISPATCH__MAX_ATTEMPTS": "3",
        },
    )
    assert settings.database.url == "postgresql://db/herald"
    assert settings.dispatch.max_attempts == 3
    assert settings.auth.tokens[0].secret is not None and settings.auth.tokens[0].secret.get_secret_value() == "s3cret"
    assert load_settings(config, environ={}).auth.tokens[0].secret is None


def test_the_shipped_configuration_loads(tmp_path: Path) -> None:
    settings = load_settings(ROOT / "config" / "herald.toml", environ={})
    assert Path(settings.directory.path) == ROOT / "config" / "partners.example.yaml"
    assert settings.policy["critical"]["1"] == ["sms", "email", "webhook"]


def test_cli_reports_a_bad_config_file_with_exit_2(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 99999\n", encoding="utf-8")
    assert main(["--config", str(bad), "db", "upgrade"]) == 2
    assert "server.port" in capsys.readouterr().err


def test_the_demo_posts_the_sample_incident_and_shows_its_deliveries(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_SERVER__PORT", "0")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert main(["demo", "--once"]) == 0
    finally:
        root.handlers[:], root.level = saved
    out = capsys.readouterr().out
    assert "Posted the sample critical incident #1" in out
    assert "sent" in out and "【障害発生のお知らせ】" in out
    first_row = next(line for line in out.splitlines() if line.strip().startswith("0 "))
    assert first_row.split()[1:3] == ["1", "sms"], "critical tier-1 SMS has the first priority"
