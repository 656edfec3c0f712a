"""The PostgreSQL the tests may use, and a way to empty it."""

from __future__ import annotations

import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.store import normalise_url

POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES_DSN")


async def fresh_postgres(dsn: str) -> str:
    """Drop and recreate the public schema: every test starts from an empty database."""
    engine = create_async_engine(normalise_url(dsn))
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return dsn
