"""Browser tests: Debian's Chromium driven by Playwright, against a whole Herald on a real port.

Shared by every page test (console, partner pages). Herald runs in a thread of its own with its
own event loop, so tests use Playwright's plain (sync) API and still reach Herald's store through
`herald.run(coroutine)`. Each test gets a fresh SQLite file with the example directory imported,
the sandbox channels and a fast dispatcher.

    def test_something(herald, page):
        sign_in(page, herald, "operator")
        page.goto(herald.url + "/console/")
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from service import appkeys
from service.app import create_app
from service.settings import Settings
from tests.helpers import TOKENS, make_settings

T = TypeVar("T")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("HERALD_TEST_SCREENSHOTS") or tempfile.gettempdir()) / "herald-screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class HeraldServer:
    """create_app(settings) served on 127.0.0.1 from a background thread."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="herald-under-test", daemon=True)
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> HeraldServer:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def run(self, work: Awaitable[T] | Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run a coroutine on Herald's loop (e.g. a query through `herald.store`) and return its result."""
        coroutine = work() if callable(work) else work
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    @property
    def store(self) -> Any:
        assert self.app is not None
        return self.app[appkeys.STORE]

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def herald_factory(tmp_path: Path) -> Iterator[Callable[..., HeraldServer]]:
    """Start a Herald with extra settings sections: `herald_factory(escalation={...})`."""
    started: list[HeraldServer] = []

    def start(**sections: Any) -> HeraldServer:
        port = free_port()
        settings = make_settings(
            f"sqlite+aiosqlite:///{tmp_path / f'herald-{len(started)}.db'}",
            server={"host": "127.0.0.1", "port": port, "public_base_url": f"http://127.0.0.1:{port}"},
            directory={"import_on_start": True},
            **sections,
        )
        server = HeraldServer(settings, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def herald(herald_factory: Callable[..., HeraldServer]) -> HeraldServer:
    return herald_factory()


@pytest.fixture
def playwright() -> Iterator[Any]:
    """Playwright's sync driver for one test. Stopped after each test: while it runs, the thread
    counts as inside an event loop, which async tests (pytest-asyncio) cannot share."""
    if CHROMIUM is None:
        if os.environ.get("HERALD_TEST_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("browser tests need Debian's chromium (apt-get install chromium fonts-ipafont)")
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture
def browser(playwright: Any) -> Iterator[Any]:
    """A Chromium per test: when it exits it closes every connection it held, so no socket of a
    finished test keeps a port that a later test's servers may be given."""
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield chromium
    chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Pages in fresh browser contexts (separate cookies): `new_page(locale="ja-JP", viewport=PHONE)`."""
    contexts: list[Any] = []

    def make(locale: str = "en-US", viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(locale=locale, viewport=viewport or DESKTOP)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


def sign_in(page: Any, herald: HeraldServer, scope: str = "operator") -> None:
    """Sign in to the console through its form with one of the test tokens."""
    page.goto(herald.url + "/console/sign-in")
    page.fill("#token", TOKENS[scope])
    page.click("form[action='/console/sign-in'] button[type=submit]")
    page.wait_for_url(herald.url + "/console/")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    """One page of Playwright's async API, for tests that drive an in-loop `aiohttp_client` app."""
    if CHROMIUM is None:
        if os.environ.get("HERALD_TEST_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield await chromium.new_page(viewport={"width": 1200, "height": 900})
        finally:
            await chromium.close()
