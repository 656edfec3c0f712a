"""Ingest's part of the app lifecycle: HMAC source auth, the batching writer, the damping flusher."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from service import appkeys
from service.ingest.correlate import flush_due
from service.ingest.signatures import signature_hook
from service.ingest.writer import IngestWriter
from service.periodic import Periodic
from service.settings import Settings
from service.store import Store

log = logging.getLogger("herald.ingest")


class DampingFlusher:
    """Applies held resolves when due — and, after a restart, the overdue ones (they are stored)."""

    def __init__(self, store: Store, settings: Settings, wake: Callable[[], None]) -> None:
        self._store = store
        self._settings = settings
        self._wake = wake
        self._periodic = Periodic("herald-damping-flusher", self.flush_once, settings.ingest.flush_interval)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def flush_once(self) -> None:
        try:
            results = await flush_due(self._store, self._settings)
        except Exception:
            log.exception("applying held resolves failed; will retry")
            return
        if any(result.deliveries for result in results):
            self._wake()


async def ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[appkeys.SETTINGS]
    app.setdefault(appkeys.ALTERNATE_AUTH, {})["ingest"] = signature_hook(settings.auth.hmac_sources)
    writer = IngestWriter(app[appkeys.STORE], settings)
    flusher = DampingFlusher(app[appkeys.STORE], settings, wake=lambda: app[appkeys.DISPATCHER_WAKE]())
    app[appkeys.INGEST_WRITER] = writer
    app[appkeys.DAMPING_FLUSHER] = flusher
    writer.start()
    flusher.start()
    yield
    await writer.stop()
    await flusher.stop()
