"""SQLite through aiosqlite at one thread hop a statement.

aiosqlite runs each call on the connection's own thread; SQLAlchemy's adapter makes three or four
such calls a statement (open a cursor, execute, fetch the rows, close the cursor), and each is a
round trip between the event loop and that thread: a queue put, a wake-up, the GIL changing hands,
a callback through the loop's self-pipe. Under load the hand-offs cost more than SQLite itself
(opening an incident: 13 statements, 45 hops), and every hop of a transaction waits for a turn of a
busy event loop while the transaction holds SQLite's single writer. This cursor does the whole
statement in one call on that thread and keeps the rows, description and counts it brought back.

Everything else (transactions, pragmas, the pool, errors, server-side cursors) is SQLAlchemy's own
aiosqlite dialect, which `dbapi()` is handed to as its DB-API module (`create_async_engine(module=…)`).
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, int, int | None, list[Any]]


def _statement(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """Run on the connection's thread: the statement, its rows and what the cursor tells of it."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement runs in a single call on aiosqlite's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # Opening a cursor costs no hop: the statement opens its own on the thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        pass  # nothing is open on the thread between statements

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._call(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._call(operation, seq_of_parameters, many=True)

    def _call(self, operation: Any, parameters: Any, many: bool) -> None:
        try:
            await_(self._run(operation, parameters, many))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run(self, operation: Any, parameters: Any, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await connection._execute(_statement, connection._conn, operation, parameters, many)  # type: ignore[no-untyped-call]
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor  # type: ignore[assignment]


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


def dbapi() -> OneHopDBAPI:
    """The DB-API module to give SQLAlchemy's aiosqlite dialect (`create_async_engine(module=…)`)."""
    return OneHopDBAPI(aiosqlite, sqlite3)
