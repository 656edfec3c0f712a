"""The PostgreSQL the tests may use, and a way to empty it.

Under pytest-xdist each worker gets a database of its own (`test` becomes `test_gw0`, `test_gw1`,
…), created on first use, so two workers never drop each other's schema mid-test.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.store import normalise_url


def _worker_dsn(dsn: str | None, worker: str | None) -> str | None:
    if not dsn or not worker:
        return dsn
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}_{worker}"))


BASE_POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES_DSN")
POSTGRES_DSN = _worker_dsn(BASE_POSTGRES_DSN, os.environ.get("PYTEST_XDIST_WORKER"))


def ensure_worker_database() -> None:
    """Create this worker's database if it is not there yet (a no-op outside xdist)."""
    if not POSTGRES_DSN or POSTGRES_DSN == BASE_POSTGRES_DSN:
        return
    assert BASE_POSTGRES_DSN
    name = urlsplit(POSTGRES_DSN).path.lstrip("/")

    async def create() -> None:
        engine = create_async_engine(normalise_url(BASE_POSTGRES_DSN), isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            found = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if not found:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await engine.dispose()

    asyncio.run(create())


async def fresh_postgres(dsn: str) -> str:
    """Drop and recreate the public schema: every test starts from an empty database."""
    engine = create_async_engine(normalise_url(dsn))
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return dsn
