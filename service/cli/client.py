"""The operator verbs' HTTP client: Herald's public API, nothing else (never the database).

Synchronous urllib on purpose: one request at a time from a terminal needs no event loop, and the
CLI then works anywhere Python does, against a local or a remote Herald.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from service.cli import exits

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiFailure(Exception):
    """A request that did not succeed, worded for the operator, with the exit code it means."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"Herald's base URL (default: HERALD_URL or {DEFAULT_URL})")
    parser.add_argument("--token", help="bearer token (default: HERALD_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print Herald's JSON answer instead of a table")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")


class HeraldApi:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> HeraldApi:
        url = args.url or os.environ.get("HERALD_URL") or DEFAULT_URL
        token = args.token or os.environ.get("HERALD_TOKEN")
        return cls(url, token, args.timeout)

    def get(self, path: str, **query: Any) -> Any:
        return json.loads(self._call("GET", path, query=query))

    def get_text(self, path: str, **query: Any) -> str:
        return self._call("GET", path, query=query).decode("utf-8")

    def post(self, path: str, body: Any, **query: Any) -> Any:
        return json.loads(self._call("POST", path, body=body, query=query))

    def _call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> bytes:
        pairs = [(key, item) for key, value in (query or {}).items() if value is not None for item in _listed(value)]
        url = self.url + path + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")
        if not url.startswith(("http://", "https://")):
            raise ApiFailure(exits.USAGE, f"--url must start with http:// or https:// (got {self.url!r})")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if method == "POST":
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            # A script that retries the same command after a timeout could double-post; the key
            # at least makes Herald answer a retried request once.
            headers.update({"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())})
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - http(s) checked
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise _failure(exc.code, exc.read()) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ApiFailure(exits.UNREACHABLE, f"cannot reach Herald at {self.url}: {reason}") from None


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _failure(status: int, body: bytes) -> ApiFailure:
    try:
        error = json.loads(body)
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    words = error.get("detail") or error.get("error") or body.decode("utf-8", "replace")[:200] or "no detail"
    field = f" (field {error['field']})" if error.get("field") else ""
    message = f"Herald answered {status} {error.get('error', '')}: {words}{field}".replace("  ", " ")
    if status in (401, 403):
        return ApiFailure(exits.REFUSED, message + " — check --token / HERALD_TOKEN and its scope")
    if status >= 500:
        return ApiFailure(exits.UNREACHABLE, message)
    return ApiFailure(exits.REJECTED, message)


RemoteVerb = Callable[[argparse.Namespace, HeraldApi], int]


def remote(run: RemoteVerb) -> Callable[[argparse.Namespace], int]:
    """The verb with a client for --url/--token; a failed request exits with its code and reason."""

    def verb(args: argparse.Namespace) -> int:
        try:
            return run(args, HeraldApi.from_args(args))
        except ApiFailure as failure:
            print(f"herald: {failure}", file=sys.stderr)
            return failure.exit_code

    return verb
