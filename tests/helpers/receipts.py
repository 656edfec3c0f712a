"""Bounces as a mail server sends them: real-looking DSNs from tests/fixtures/dsn, posted to Herald."""

from __future__ import annotations

from typing import Any

from tests.helpers import ROOT, auth

DSN = ROOT / "tests" / "fixtures" / "dsn"


def dsn(name: str, **replace: str) -> bytes:
    raw = (DSN / name).read_bytes()
    for old, new in replace.items():
        assert old.encode() in raw, f"{name} does not contain {old}"
        raw = raw.replace(old.encode(), new.encode())
    return raw


async def bounce(client: Any, raw: bytes, content_type: str = "message/rfc822", scope: str = "ingest") -> Any:
    return await client.post("/v1/receipts/bounce", data=raw, headers={**auth(scope), "Content-Type": content_type})
