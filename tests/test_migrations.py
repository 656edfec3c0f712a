"""An operator can roll the schema back: every migration's downgrade undoes its upgrade."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from service.store import Store
from service.store.engine import alembic_config, newest_migrations
from service.store.tables import metadata


async def migrate(store: Store, step: str, revision: str) -> None:
    def run(sync: Connection) -> None:
        getattr(command, step)(alembic_config(sync), revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(run)


async def table_names(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        names: list[str] = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


def revisions_newest_first() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in script.walk_revisions()]


async def test_the_schema_downgrades_one_migration_at_a_time_and_upgrades_again(db_url: str) -> None:
    store = Store(db_url)
    try:
        await store.upgrade()
        assert await table_names(store) == set(metadata.tables)
        for _ in revisions_newest_first():
            await migrate(store, "downgrade", "-1")
        assert await table_names(store) == set()

        await store.upgrade()
        assert await table_names(store) == set(metadata.tables)
    finally:
        await store.close()


def test_the_newest_migration_is_read_from_the_files_as_alembic_reads_it() -> None:
    assert newest_migrations() == frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def test_a_database_one_migration_behind_is_upgraded_and_one_at_the_newest_is_left_as_it_is(db_url: str) -> None:
    store = Store(db_url)
    try:
        await store.upgrade()
        await migrate(store, "downgrade", "-1")
        await store.upgrade()
        assert await applied_revisions(store) == newest_migrations()
        assert await table_names(store) == set(metadata.tables)

        await store.upgrade()
        assert await applied_revisions(store) == newest_migrations()
    finally:
        await store.close()


async def applied_revisions(store: Store) -> frozenset[str]:
    async with store.engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
        return frozenset(row[0] for row in rows)
