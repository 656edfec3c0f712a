"""When the database cannot serve, every endpoint says so honestly: 503 with Retry-After, not 500."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.helpers import ROOT, auth, make_settings, wait_until
from tests.helpers.databases import POSTGRES_DSN, fresh_postgres
from tests.helpers.incidents import in_an_hour

# The sample incident, promising its next update an hour from now (a promise must lie ahead).
SAMPLE = {**json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8")), "next_update_at": in_an_hour()}
OPERATOR = auth("operator")


class TcpRelay:
    """A loopback relay in front of PostgreSQL that can go away (refusing connections) and come back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and cut every open connection: the next connect is refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.update({client_writer, server_writer})
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


def through(relay: TcpRelay, dsn: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{relay.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def sqlite_locked_by_another_process(path: str) -> AsyncIterator[None]:
    """Another program holds SQLite's write lock (what `sqlite3 herald.db` with an open write does).

    It is taken from a thread: Herald's own event loop keeps running meanwhile, so a transaction
    Herald has in flight (its dispatcher sending the incident just opened) finishes and lets go.
    """
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def every_kind_of_write(incident_id: int) -> list[tuple[str, str, dict[str, str], Any]]:
    broadcast = {
        "kind": "custom",
        "fields": {"subject": "件名 / Subject", "body": "本文 / Body", "responsible": {"name": "On call"}},
    }
    return [
        ("POST", "/v1/incidents", OPERATOR, copy.deepcopy(SAMPLE)),
        ("POST", f"/v1/incidents/{incident_id}/updates", OPERATOR, {"status": "identified", "notice": None}),
        ("POST", "/v1/broadcasts", OPERATOR, broadcast),
        ("POST", "/v1/partners", auth("admin"), {"id": "minato", "name": "みなと商事", "language": "ja"}),
    ]


async def open_incident(client: Any) -> int:
    opened = await client.post("/v1/incidents", json=copy.deepcopy(SAMPLE), headers=OPERATOR)
    assert opened.status == 202, await opened.text()
    return int((await opened.json())["incident_id"])


async def assert_unavailable(response: Any) -> None:
    body = await response.json()
    assert response.status == 503, body
    assert body["error"] == "unavailable" and body["detail"]
    assert int(response.headers["Retry-After"]) > 0


async def test_sqlite_locked_past_its_busy_timeout_is_503_and_readyz_says_so(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Any
) -> None:
    from service.app import create_app

    client = await aiohttp_client(create_app(make_settings(sqlite_url, database={"busy_timeout": 0.3})))
    assert (await client.get("/readyz")).status == 200
    incident_id = await open_incident(client)
    async with sqlite_locked_by_another_process(str(tmp_path / "herald.db")):
        await assert_unavailable(await client.get("/readyz"))
        for method, path, headers, body in every_kind_of_write(incident_id):
            await assert_unavailable(await client.request(method, path, json=body, headers=headers))
    assert (await client.get("/readyz")).status == 200
    await open_incident(client)


@pytest.fixture
async def relay() -> AsyncIterator[TcpRelay]:
    if not POSTGRES_DSN:
        pytest.skip("PostgreSQL tests need HERALD_TEST_POSTGRES_DSN (set by .ci/run)")
    await fresh_postgres(POSTGRES_DSN)
    target = urlsplit(POSTGRES_DSN)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 5432))
    await relay.start()
    yield relay
    await relay.stop()


async def test_postgresql_refusing_connections_is_503_on_every_endpoint_and_recovers(
    aiohttp_client: Any, relay: TcpRelay
) -> None:
    from service.app import create_app

    assert POSTGRES_DSN
    client = await aiohttp_client(create_app(make_settings(through(relay, POSTGRES_DSN))))
    assert (await client.get("/readyz")).status == 200
    incident_id = await open_incident(client)
    await relay.stop()
    await assert_unavailable(await client.get("/readyz"))
    for method, path, headers, body in every_kind_of_write(incident_id):
        await assert_unavailable(await client.request(method, path, json=body, headers=headers))
    reads = [f"/v1/incidents/{incident_id}", f"/v1/incidents/{incident_id}/report", "/v1/deliveries", "/v1/partners"]
    for path in reads:
        await assert_unavailable(await client.get(path, headers=auth("admin")))

    await relay.start()

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(ready, timeout=10)
    await open_incident(client)
