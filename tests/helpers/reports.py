"""An incident with a story to report: three notice versions (one promise kept late), a refused
email, and some acknowledgements."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update

from service import appkeys
from service.notices import iso
from service.store.tables import notices, promises
from tests.fakes.smtp import SmtpSink
from tests.helpers import auth, wait_until
from tests.helpers.wired import all_final, post_sample, rows

SCRIPT = "<script>alert(1)</script>"


async def incident_with_three_versions(client: Any, smtp_sink: SmtpSink) -> int:
    """The sample incident, then two updates, all dispatched: v1 promised an update ten minutes
    before it went out (late), v2 promised one within the hour (kept by v3), v3's is still ahead.
    One partner's mail server refuses the first email it is offered."""
    now = time.time()
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", on="RCPT")
    incident_id = (await post_sample(client))["incident_id"]
    await promise_was_due_at(client, incident_id, now - 600)
    updates = [
        {"status": "identified", "next_update_at": iso(now + 3600),
         "notice": {"fields": {"current_status": {"ja": "原因を特定しました。", "en": "We found the cause."}}}},
        {"status": "recovering", "next_update_at": iso(now + 7200),
         "notice": {"fields": {"current_status": f"{SCRIPT} 復旧作業中 / recovering"},
                    "allow_language_fallback": True}},  # one string in both languages
    ]  # fmt: skip
    for body in updates:
        response = await client.post(f"/v1/incidents/{incident_id}/updates", json=body, headers=auth("operator"))
        assert response.status == 202, await response.text()
    await wait_until(lambda: all_final(client), timeout=60)
    return incident_id


async def promise_was_due_at(client: Any, incident_id: int, due_at: float) -> None:
    """Time passes: the first notice's promised update falls ten minutes behind (a past time is refused
    at the API, so the test moves the recorded promise instead of waiting)."""
    async with client.app[appkeys.STORE].begin() as conn:
        first = notices.c.incident_id == incident_id
        await conn.execute(update(notices).where(first, notices.c.version == 1).values(next_update_at=due_at))
        await conn.execute(update(promises).where(promises.c.incident_id == incident_id).values(due_at=due_at))


async def acknowledge_some(client: Any) -> list[dict[str, Any]]:
    """Tier-1 and tier-2 contacts press the button on their acknowledgement pages."""
    signer = client.app[appkeys.ACK_SIGNER]
    chosen = [d for d in await rows(client) if d["status"] == "sent" and d["tier"] in (1, 2)][:5]
    for delivery in chosen:
        response = await client.post(f"/ack/{signer.token_for(delivery['id'], delivery['created_at'])}")
        assert response.status == 200
    return chosen
