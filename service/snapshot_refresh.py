"""Keeps the directory snapshot that dry runs count from current, in the background.

A dry run finding the snapshot stale rebuilds it itself (service/store/directory_snapshot.py),
which at 10,000 partners costs it about a hundred milliseconds. So once the first dry run built it,
the process rebuilds it soon after any change to the directory, whoever made it: the operator
previewing after an import does not wait for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service import appkeys
from service.periodic import Periodic
from service.settings import Settings
from service.store import directory_snapshot


async def refresh_once(app: web.Application) -> None:
    """Rebuild the snapshot if one was built and the directory changed since. A process nobody
    previews on (a dispatcher-only worker, say) never builds one: at 100,000 partners it would
    cost it memory for nothing."""
    store = app[appkeys.STORE]
    if directory_snapshot.kept_version(store.engine.sync_engine) is None:
        return
    async with store.read() as conn:
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
