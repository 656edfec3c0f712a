"""Drill runs: one row per run of a scenario, found again by id or by scenario key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.store.engine import inserted_id
from service.store.tables import drills


async def insert_drill(conn: AsyncConnection, values: dict[str, Any]) -> int:
    return inserted_id(await conn.execute(insert(drills).values(**values)))


async def get_drill(conn: AsyncConnection, drill_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(drills).where(drills.c.id == drill_id))).mappings().first()
    return dict(row) if row else None


async def list_drills(conn: AsyncConnection, limit: int = 100) -> list[dict[str, Any]]:
    query = select(drills).order_by(drills.c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def previous_run(conn: AsyncConnection, drill: dict[str, Any]) -> dict[str, Any] | None:
    """The run of the same scenario just before this one."""
    query = (
        select(drills)
        .where(drills.c.scenario_key == drill["scenario_key"], drills.c.id < drill["id"])
        .order_by(drills.c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None
