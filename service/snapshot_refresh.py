"""Keeps the directory snapshot that dry runs count from current, in the background.

A dry run finding the snapshot stale rebuilds it itself (service/store/directory_snapshot.py),
which at 10,000 partners costs it a few hundred milliseconds. So the process builds it at start and
rebuilds it soon after any change to the directory, whoever made it: the operator previewing after
an import does not wait for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service import appkeys
from service.periodic import Periodic
from service.settings import Settings
from service.store import directory_snapshot


async def refresh_once(app: web.Application) -> None:
    async with app[appkeys.STORE].read() as conn:
        await directory_snapshot.current(conn)


async def snapshot_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[appkeys.SETTINGS]
    interval = settings.directory.preview_refresh_seconds
    if not interval:
        yield
        return
    periodic = Periodic("directory-snapshot", lambda: refresh_once(app), interval)
    periodic.start()
    yield
    await periodic.stop()
