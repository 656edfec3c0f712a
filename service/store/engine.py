"""The Store: one async engine over SQLite (default, WAL) or PostgreSQL, and its migrations."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.errors import Unavailable
from service.store import sqlite_driver

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_IMMEDIATE = "herald_sqlite_immediate"
# SQLite's words for "another writer holds the file" and "the file cannot be reached".
_SQLITE_UNAVAILABLE = ("database is locked", "database is busy", "unable to open database", "disk i/o error")
# PostgreSQL SQLSTATE classes that mean "not now": 08 connection, 53 resources, 57P0x shutdown,
# 40001/40P01 serialisation failure and deadlock (the transaction is safe to retry).
_POSTGRES_UNAVAILABLE = ("08", "53", "57P", "40001", "40P01")


def unavailable_cause(exc: BaseException) -> str | None:
    """Why this exception means the database cannot serve us right now, or None if it is a bug."""
    if isinstance(exc, sa_exc.TimeoutError):
        return "no database connection became free in time"
    if isinstance(exc, (OSError, asyncio.TimeoutError)):
        return f"the database is unreachable ({type(exc).__name__})"
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    if exc.connection_invalidated:
        return "the database connection was lost"
    original = exc.orig
    message = str(original).lower()
    if isinstance(original, sqlite3.OperationalError) or "sqlite" in type(original).__module__:
        if any(word in message for word in _SQLITE_UNAVAILABLE):
            return f"the SQLite database is unavailable ({message})"
        return None
    sqlstate = str(getattr(original, "sqlstate", None) or getattr(original, "pgcode", None) or "")
    if sqlstate.startswith(_POSTGRES_UNAVAILABLE):
        return f"the database cannot serve requests now (SQLSTATE {sqlstate})"
    if isinstance(exc, (sa_exc.InterfaceError, sa_exc.OperationalError)) and not sqlstate:
        return f"the database connection failed ({type(original).__name__})"
    return None


_rehearsing: ContextVar[bool] = ContextVar("herald_rehearsing", default=False)


def rehearsing() -> bool:
    """True inside `Store.rehearse()`: whatever is written now is rolled back."""
    return _rehearsing.get()


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT of one row generated."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the INSERT reported no primary key")
    return int(key[0])


class WriteTurns:
    """One writer at a time, foreground writers first, each kind in arrival order."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {False: deque(), True: deque()}

    @asynccontextmanager
    async def turn(self, background: bool) -> AsyncIterator[None]:
        await self._acquire(background)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, background: bool) -> None:
        if not self._held and not any(self._waiting.values()):
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[background].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # our turn came as we were cancelled: pass it on
            elif turn in self._waiting[background]:
                self._waiting[background].remove(turn)
            raise

    def _release(self) -> None:
        for background in (False, True):
            queue = self._waiting[background]
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # the writer's turn passes on; _held stays True
                    return
        self._held = False


class ForegroundWork:
    """The foreground write transactions in flight (requests someone waits on, critical work being
    sent), so that background work (a broadcast's claims and sends) can step aside while any is
    open (see Dispatcher._step_aside). Stepping aside is bounded: a stretch of foreground work
    that does not end (a storm of requests) holds background work back for `within` seconds, then
    lets it run beside."""

    def __init__(self) -> None:
        self._open = 0
        self._busy_since = 0.0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @property
    def busy(self) -> bool:
        return self._open > 0

    @contextmanager
    def held(self) -> Iterator[None]:
        if not self._open:
            self._busy_since = time.monotonic()
            self._quiet.clear()
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            if not self._open:
                self._quiet.set()

    async def quiet(self, within: float) -> None:
        """Return once no foreground transaction is open, or once the current stretch of
        foreground work has lasted `within` seconds."""
        if not self._open:
            return
        left = self._busy_since + within - time.monotonic()
        if left > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), left)


class Store:
    def __init__(self, url: str, pool_size: int = 5, busy_timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.busy_timeout = busy_timeout
        self.engine: AsyncEngine = _create_engine(self.url, pool_size, busy_timeout)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer: serialising our own writers avoids busy-wait storms.
        self._write_lock = WriteTurns() if self.is_sqlite else None
        self.foreground = ForegroundWork()

    @asynccontextmanager
    async def begin(self, background: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on exit. Raises Unavailable when the database cannot serve.

        `background` work (a broadcast's batches) waits for SQLite's writer behind every
        foreground writer (a request someone waits on, critical work), so an incident posted
        during a broadcast queues behind at most the one batch being written. A foreground
        transaction is counted in `foreground` while open, on either backend.
        """
        try:
            with nullcontext() if background else self.foreground.held():
                if self._write_lock is None:
                    async with self.engine.begin() as conn:
                        yield conn
                    return
                async with self._write_lock.turn(background), self.engine.connect() as conn:
                    await conn.execution_options(**{_IMMEDIATE: True})
                    async with conn.begin():
                        yield conn
        except Exception as exc:
            _raise_unavailable(exc)
            raise

    @asynccontextmanager
    async def rehearse(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction that is always rolled back: a dry run goes through the real code
        (the same checks, the same plan) and leaves nothing behind. While it is open `rehearsing()`
        is true, so bulk writes that only matter once committed (a plan's delivery rows) may be
        counted instead of written."""
        token = _rehearsing.set(True)
        lock: AbstractAsyncContextManager[object] = self._write_lock.turn(False) if self._write_lock else nullcontext()
        try:
            async with lock, self.engine.connect() as conn:
                await conn.begin()
                try:
                    yield conn
                finally:
                    await conn.rollback()
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        finally:
            _rehearsing.reset(token)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (on SQLite it does not take the write lock)."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except Exception as exc:
            _raise_unavailable(exc)
            raise

    async def check_ready(self, within: float = 2.0) -> None:
        """Raise Unavailable unless a write could start now.

        On SQLite a plain read succeeds while another process holds the write lock, so readiness
        takes the write lock itself (BEGIN IMMEDIATE, then ROLLBACK) on its own short-lived connection.
        """
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                try:
                    await asyncio.to_thread(_sqlite_can_write, path, within)
                except sqlite3.Error as exc:
                    raise Unavailable(f"the SQLite database is unavailable ({exc})", retry_after=2) from exc
                return
        try:
            async with asyncio.timeout(within), self.read() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise Unavailable("the database did not answer in time", retry_after=2) from exc

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (what `herald db upgrade` runs). A database
        already there is told by its alembic_version row, without loading alembic (a tenth of a
        second of every `herald` command that opens the database)."""
        async with self.engine.begin() as conn:
            if await conn.run_sync(_at_newest_migrations):
                return
            await conn.run_sync(_run_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _raise_unavailable(exc: Exception) -> None:
    cause = unavailable_cause(exc)
    if cause is not None:
        raise Unavailable(cause) from exc


def _sqlite_can_write(path: str, timeout: float) -> None:
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def _create_engine(url: str, pool_size: int, busy_timeout: float) -> AsyncEngine:
    if not url.startswith("sqlite"):
        # No liveness ping on each checkout: it is a round trip per transaction, as many as the
        # dispatcher's batches make themselves. A connection lost meanwhile (a PostgreSQL restart)
        # fails the one transaction using it, as Unavailable (a 503, or a batch the dispatcher
        # retries after its lease), and SQLAlchemy then renews every pooled connection.
        return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
    engine = create_async_engine(url, module=sqlite_driver.dbapi(), connect_args={"timeout": busy_timeout})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event own transactions (see _sqlite_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # A write transaction is IMMEDIATE: it takes the write lock up front, waiting up to the busy
        # timeout for another process's writer. A deferred one that reads, then writes after another
        # process committed, fails at once with "database is locked" (SQLite cannot wait there).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")

    return engine


def alembic_config(connection=None) -> Config:  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run_upgrade(sync_connection) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    command.upgrade(alembic_config(sync_connection), "head")


def _at_newest_migrations(sync_connection) -> bool:  # type: ignore[no-untyped-def]
    newest = newest_migrations()
    if newest is None or not inspect(sync_connection).has_table("alembic_version"):
        return False
    applied = {row[0] for row in sync_connection.exec_driver_sql("SELECT version_num FROM alembic_version")}
    return applied == newest


_REVISION = re.compile(r'^revision = "([^"]+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision = (?:None|"([^"]+)")$', re.MULTILINE)


@cache
def newest_migrations() -> frozenset[str] | None:
    """The revisions no migration follows (alembic's heads), read from each migration file's
    plain `revision = "..."` and `down_revision = "..."` lines; None where a file says them
    otherwise, and then alembic itself decides."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down_revision = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down_revision) != 1:
            return None
        revisions.add(revision[0])
        if down_revision[0]:
            followed.add(down_revision[0])
    newest = revisions - followed
    return frozenset(newest) if newest and followed <= revisions else None
