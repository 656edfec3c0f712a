"""Headless Chromium (the distribution's `chromium`, driven by Playwright) for pages people read."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            yield page
        finally:
            await browser.close()
