"""`Idempotency-Key`: a retried POST gets the first answer instead of doing the work twice.

Exactly once, also under concurrency and across processes: the first request claims the key by
inserting its row (the primary key lets one claimant win), runs, and stores its answer on the row.
Requests arriving with the same key meanwhile wait for that answer and replay it. A claimant that
fails without an answer (an error raised, a 5xx) frees the key so a retry can run. The same key
with a different body is a 422.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from typing import Any

from aiohttp import web

from service import appkeys
from service.api.auth import principal_of
from service.api.errors import ApiError, Handler, read_body
from service.api.params import dry_run_arg
from service.errors import Conflict, InvalidInput
from service.store import Store
from service.store.records import (
    claim_idempotency_key,
    complete_idempotency_key,
    find_idempotent,
    release_idempotency_key,
)

log = logging.getLogger("herald.api")
HEADER = "Idempotency-Key"
# For the contract: the request header an idempotent operation takes.
IDEMPOTENCY = {HEADER: "Retrying with the same key returns the first answer instead of doing the work twice"}
# How long a request waits for the first one with its key before answering 409 (retry later).
WAIT_SECONDS = 30.0
# A claim older than this never finished (its process died): whether it took effect is unknown.
ABANDONED_AFTER = 300.0


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all("!" <= c <= "~" for c in key):
        raise ApiError(400, "invalid_header", f"{HEADER} must be 1 to 255 visible ASCII characters", HEADER)
    return key


def idempotent(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        key = idempotency_key(request)
        if key is None or dry_run_arg(request):  # a dry run stores nothing, its key included
            return await handler(request)
        store: Store = request.app[appkeys.STORE]
        principal = principal_of(request).name
        body = await read_body(request)
        digest = hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()
        deadline = time.monotonic() + WAIT_SECONDS
        pause = 0.01
        while True:
            async with store.begin() as conn:
                claimed = await claim_idempotency_key(conn, principal, key, request.path, digest)
                earlier = None if claimed else await find_idempotent(conn, principal, key)
            if claimed:
                return await _run_once(request, handler, store, principal, key)
            if earlier is not None:
                if earlier["request_hash"] != digest:
                    raise InvalidInput(
                        f"this {HEADER} was used with a different request", HEADER, code="idempotency_key_reused"
                    )
                if earlier["completed_at"] is not None:
                    return _replay(earlier)
                _refuse_if_stuck(earlier, deadline)
            # The first request is still running (or has just freed the key): look again shortly.
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    return wrapper


async def _run_once(
    request: web.Request, handler: Handler, store: Store, principal: str, key: str
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except BaseException:
        try:
            await asyncio.shield(_release(store, principal, key))
        except Exception:
            log.exception("could not free %s after a failed request; it answers 409 until abandoned", HEADER)
        raise
    if not isinstance(response, web.Response) or response.status >= 500:
        await _release(store, principal, key)
        return response
    async with store.begin() as conn:
        await complete_idempotency_key(conn, principal, key, response.status, response.text or "")
    return response


async def _release(store: Store, principal: str, key: str) -> None:
    async with store.begin() as conn:
        await release_idempotency_key(conn, principal, key)


def _refuse_if_stuck(earlier: dict[str, Any], deadline: float) -> None:
    if time.time() - earlier["created_at"] > ABANDONED_AFTER:
        raise Conflict(
            f"the first request with this {HEADER} never finished, so whether it took effect is unknown; "
            "check, then send the request with a new key",
            HEADER,
            code="idempotency_key_abandoned",
        )
    if time.monotonic() > deadline:
        raise Conflict(
            f"the first request with this {HEADER} is still running; retry shortly",
            HEADER,
            code="idempotency_key_in_progress",
        )


def _replay(earlier: dict[str, Any]) -> web.Response:
    response = web.json_response(json.loads(earlier["response"]), status=earlier["status"])
    response.headers["Idempotent-Replayed"] = "true"
    return response
