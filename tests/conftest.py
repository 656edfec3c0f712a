from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.settings import Settings
from tests.helpers import make_settings
from tests.helpers.databases import POSTGRES_DSN, ensure_worker_database, fresh_postgres

pytest_plugins = ["tests.fakes.smtp", "tests.fakes.twilio"]


def pytest_configure(config: pytest.Config) -> None:
    ensure_worker_database()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """Each backend in turn: a fresh SQLite file, or an emptied PostgreSQL `test` database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"
        return
    if not POSTGRES_DSN:
        pytest.skip("PostgreSQL tests need HERALD_TEST_POSTGRES_DSN (set by .ci/run)")
    yield await fresh_postgres(POSTGRES_DSN)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(sqlite_url)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> Any:
    """The whole service (API, store, dispatcher on sandbox channels) on a fresh SQLite file."""
    from service.app import create_app

    return await aiohttp_client(create_app(settings))
