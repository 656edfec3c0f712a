"""`Idempotency-Key`: a retried POST gets the first answer instead of doing the work twice."""

from __future__ import annotations

import functools
import hashlib
import json

from aiohttp import web

from service.api.auth import principal_of
from service.api.errors import ApiError, Handler, read_body
from service.store.records import find_idempotent, save_idempotent


def idempotent(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return await handler(request)
        if len(key) > 255:
            raise ApiError(400, "invalid_header", "Idempotency-Key is longer than 255 characters", "Idempotency-Key")
        store = request.app["store"]
        principal = principal_of(request).name
        body = await read_body(request)
        digest = hashlib.sha256(request.path.encode() + b"\0" + body).hexdigest()
        async with store.read() as conn:
            earlier = await find_idempotent(conn, principal, key)
        if earlier is not None:
            return _replay(earlier, digest)
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status >= 500:
            return response
        async with store.begin() as conn:
            stored = await save_idempotent(
                conn, principal, key, request.path, digest, response.status, response.text or ""
            )
            if not stored:
                earlier = await find_idempotent(conn, principal, key)
        if not stored and earlier is not None:
            return _replay(earlier, digest)
        return response

    return wrapper


def _replay(earlier: dict, digest: str) -> web.Response:
    if earlier["request_hash"] != digest:
        raise ApiError(
            422, "idempotency_key_reused", "this Idempotency-Key was used with a different request", "Idempotency-Key"
        )
    response = web.json_response(json.loads(earlier["response"]), status=earlier["status"])
    response.headers["Idempotent-Replayed"] = "true"
    return response
