"""The sample incident from config/ and opening it (or a variation of it) over the API."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from typing import Any

from tests.helpers import ROOT, auth

SAMPLE: dict[str, Any] = json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8"))


def in_an_hour() -> str:
    return datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()


def incident(**changes: Any) -> dict[str, Any]:
    """The sample incident, promising its next update an hour from now (a past time is refused)."""
    body = copy.deepcopy(SAMPLE)
    body["next_update_at"] = in_an_hour()
    body.update(changes)
    return body


async def open_incident(client: Any, **changes: Any) -> dict[str, Any]:
    response = await client.post("/v1/incidents", json=incident(**changes), headers=auth("operator"))
    assert response.status == 202, await response.text()
    return await response.json()
