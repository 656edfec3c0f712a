"""`make demo` (herald demo) prints the console's address and a token that signs in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import free_port
from tests.helpers import ROOT


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float = 60.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"the demo never printed {pattern!r}; it printed:\n{''.join(seen)}")


def test_the_demo_prints_the_console_and_a_token_that_signs_in(tmp_path: Path, new_page: Any) -> None:
    port = free_port()
    env = {**os.environ, "HERALD_SERVER__PORT": str(port), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        console = read_until(process, r"Console: (http://\S+/console/)").group(1)
        token = read_until(process, r"admin token .*: (\S+)$").group(1)
        page = new_page()
        page.goto(console)
        page.fill("#token", token)
        page.click("form[action='/console/sign-in'] button[type=submit]")
        page.wait_for_url(console)
        assert page.locator("table.board tbody tr").count() == 1, "the sample incident is on the board"
    finally:
        process.terminate()
        process.wait(10)
