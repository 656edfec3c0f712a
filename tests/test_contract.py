"""The published contract is complete, browsable, and what Herald actually does.

The fuzz test starts the whole Herald on a real port (SQLite, then PostgreSQL), loads
/openapi.json with schemathesis, and sends every operation requests generated from the
document, with a valid token for the operation's scope. Any 5xx, any status the document does
not list, and any answer that does not match its documented schema fails the test.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from service.api.contract import documented_routes, operation_of
from service.app import create_app
from service.settings import Settings
from tests.helpers import ROOT, TOKENS, make_settings
from tests.helpers.databases import POSTGRES_DSN, fresh_postgres
from tests.helpers.incidents import in_an_hour

# The sample incident, promising its next update an hour from now (a promise must lie ahead).
SAMPLE = {**json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8")), "next_update_at": in_an_hour()}
# At least this many generated requests per database, spread over every operation.
MIN_REQUESTS = 1000
# Besides, requests the document does not allow, per operation: they must never be a 5xx.
NEGATIVE_PER_OPERATION = 8
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_every_route_is_in_the_contract(settings: Settings) -> None:
    app = create_app(settings)
    missing = sorted(
        f"{method} {path}" for method, path, handler in documented_routes(app) if not operation_of(handler)
    )
    assert missing == [], "declare these with @operation (see CONTRIBUTING.md, 'How an endpoint joins the contract')"


async def test_the_document_lists_every_route_with_its_scope(client: Any) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    served = {(method.lower(), path) for method, path, _ in documented_routes(client.app)}
    listed = {(method, path) for path, methods in document["paths"].items() for method in methods}
    assert listed == served
    create = document["paths"]["/v1/incidents"]["post"]
    assert create["x-herald-scope"] == "operator" and create["security"] == [{"bearer": []}]
    assert create["requestBody"]["content"]["application/json"]["example"]["severity"] == "critical"
    assert {"401", "403", "422", "503"} <= set(create["responses"])
    assert document["paths"]["/healthz"]["get"]["security"] == []


async def test_the_docs_page_is_served_by_herald_and_loads_nothing_from_elsewhere(client: Any) -> None:
    response = await client.get("/docs")
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "POST /v1/incidents" in page and "IncidentCreate" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not load from another host"


# --- fuzzing ---------------------------------------------------------------------------------------


class ServedHerald:
    """The whole Herald on a real port, on its own event loop in a thread (schemathesis is blocking)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="herald-under-fuzz", daemon=True)

    def __enter__(self) -> ServedHerald:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=60)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self.settings), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def fuzz_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'herald.db'}"
        return
    if not POSTGRES_DSN:
        pytest.skip("PostgreSQL tests need HERALD_TEST_POSTGRES_DSN (set by .ci/run)")
    yield asyncio.run(fresh_postgres(POSTGRES_DSN))


def fuzz_settings(db_url: str) -> Settings:
    """The example directory (20 partners) so plans and lookups find something; sandbox channels."""
    return make_settings(db_url, directory={"import_on_start": True}, dispatch={"enabled": False})


def token_for(operation: Any) -> dict[str, str]:
    scope = operation.definition.raw.get("x-herald-scope", "admin")
    return {} if scope == "open" else {"Authorization": f"Bearer {TOKENS.get(scope, TOKENS['admin'])}"}


def seed(herald: ServedHerald) -> None:
    """One incident with its notice and deliveries, so small ids name something."""
    response = requests.post(f"{herald.url}/v1/incidents", json=SAMPLE, headers=token_for_scope("operator"), timeout=30)
    assert response.status_code == 202, response.text


def token_for_scope(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


def fuzz(herald: ServedHerald, per_operation: int, mode: GenerationMode) -> tuple[Counter[str], list[str]]:
    schema = schemathesis.openapi.from_dict(requests.get(f"{herald.url}/openapi.json", timeout=30).json())
    sent: Counter[str] = Counter()
    failures: list[str] = []
    session = requests.Session()
    for result in schema.get_all_operations():
        exercise(herald, session, result.ok(), mode, per_operation, sent, failures)
    return sent, failures


def exercise(
    herald: ServedHerald,
    session: requests.Session,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    sent: Counter[str],
    failures: list[str],
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    headers = token_for(operation)
    # Requests the document allows must get a documented answer of the documented shape; requests it
    # does not allow (wrong types, missing fields, out-of-range values) must still never be a 5xx.
    wanted = CHECKS if mode is GenerationMode.POSITIVE else [checks.not_a_server_error]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one_case(case: Any) -> None:
        response = case.call(base_url=herald.url, session=session, headers=headers, timeout=30)
        sent[label] += 1
        try:
            case.validate_response(response, checks=wanted)
        except (Exception, BaseExceptionGroup) as exc:  # collected: the test fails on any of them
            failures.append(f"{label} ({mode.value}): {type(exc).__name__}: {exc}\n  {case.as_curl_command()}")

    try:
        one_case()
    except Unsatisfiable:  # nothing about this operation can be invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, label


def test_fuzzing_every_operation_from_the_contract_finds_no_server_error_and_no_mismatch(
    fuzz_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ServedHerald(fuzz_settings(fuzz_database)) as herald:
        seed(herald)
        document = requests.get(f"{herald.url}/openapi.json", timeout=30).json()
        operations = sum(len(methods) for methods in document["paths"].values())
        sent, failures = fuzz(herald, math.ceil(MIN_REQUESTS * 1.4 / operations), GenerationMode.POSITIVE)
        invalid, invalid_failures = fuzz(herald, NEGATIVE_PER_OPERATION, GenerationMode.NEGATIVE)
    failures += invalid_failures
    backend = fuzz_database.split(":", 1)[0].split("+", 1)[0]
    server_errors = sum("Server error" in f for f in failures)
    with capsys.disabled():
        print(
            f"\ncontract fuzz ({backend}): {sum(sent.values())} generated requests over {len(sent)} operations "
            f"and {sum(invalid.values())} requests the document does not allow; "
            f"{server_errors} server errors, {len(failures)} failures"
        )
    assert not failures, "\n".join(failures[:20])
    assert len(sent) == operations, f"operations never exercised: {operations - len(sent)}"
    assert sum(sent.values()) >= MIN_REQUESTS
