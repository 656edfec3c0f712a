"""The evidence report proves who was told what, when, and whether each promised update came on time."""

from __future__ import annotations

import time
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy import insert, select

from service import appkeys
from service.notices import iso
from service.report import build_report, promise
from service.store.tables import acknowledgements, notices
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth
from tests.helpers.reports import SCRIPT, incident_with_three_versions
from tests.helpers.wired import rows, start, wired_settings


async def report_of(client: Any, incident_id: int, scope: str = "operator") -> dict[str, Any]:
    response = await client.get(f"/v1/incidents/{incident_id}/report", headers=auth(scope))
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def stored_notices(client: Any, incident_id: int) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        query = select(notices).where(notices.c.incident_id == incident_id).order_by(notices.c.version)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_the_report_lists_every_notice_version_and_every_recipient(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = await incident_with_three_versions(client, smtp_sink)
    logged = await rows(client)
    acknowledged = next(d for d in logged if d["status"] == "sent" and d["tier"] == 1)
    async with client.app[appkeys.STORE].begin() as conn:
        await conn.execute(insert(acknowledgements).values(
            notice_id=acknowledged["notice_id"], delivery_id=acknowledged["id"], partner_id=acknowledged["partner_id"],
            contact_id=acknowledged["contact_id"], at=time.time(),
        ))  # fmt: skip

    report = await report_of(client, incident_id)

    assert report["incident"]["title"]["en"] == "Order API slow responses and errors"
    assert [(n["version"], n["kind"]) for n in report["notices"]] == [(1, "initial"), (2, "progress"), (3, "progress")]
    assert [(s["status"], s["notice_version"]) for s in report["incident"]["status_history"]] == [
        ("investigating", 1),
        ("identified", 2),
        ("recovering", 3),
    ]
    for entry, stored in zip(report["notices"], await stored_notices(client, incident_id), strict=True):
        assert entry["published_at"] == iso(stored["published_at"]) and entry["created_by"] == "operator"
        for lang in ("ja", "en"):
            assert entry["rendered"][lang]["subject"] == stored["rendered"][lang]["subject"]
            assert entry["rendered"][lang]["txt"] == stored["rendered"][lang]["txt"]

    recipients = [
        (n["id"], p["partner_id"], r) for n in report["notices"] for p in n["partners"] for r in p["recipients"]
    ]
    reported = [
        (nid, pid, r["delivery_id"], r["contact_id"], r["channel"], r["address"], r["status"])
        for nid, pid, r in recipients
    ]
    assert sorted(reported) == sorted(
        (d["notice_id"], d["partner_id"], d["id"], d["contact_id"], d["channel"], d["address"], d["status"])
        for d in logged
    )  # fmt: skip
    assert report["totals"]["deliveries"] == len(logged)
    assert all(r["contact_name"] and r["sent_at"] for _, _, r in recipients if r["status"] == "sent")
    partner_names = {p["partner_name"] for n in report["notices"] for p in n["partners"]}
    assert "東海ロジスティクス株式会社" in partner_names

    [failed] = [r for _, _, r in recipients if r["status"] == "failed"]
    assert failed["channel"] == "email" and "no such user" in failed["last_error"] and failed["failed_at"]
    assert sum(n["failures"] for n in report["notices"]) == 1
    [acked] = [r for _, _, r in recipients if r["acknowledged_at"]]
    assert acked["delivery_id"] == acknowledged["id"]

    late, kept, ahead = (n["promise"] for n in report["notices"])
    assert late["state"] == "late" and late["minutes_late"] >= 10 and late["next_version"] == 2
    assert kept["state"] == "on_time" and kept["minutes_late"] is None and kept["next_version"] == 3
    assert ahead["state"] == "open" and ahead["next_version"] is None

    async with client.app[appkeys.STORE].read() as conn:
        tomorrow = await build_report(conn, incident_id, now=time.time() + 86_400)
    assert tomorrow is not None
    overdue = tomorrow["notices"][-1]["promise"]
    assert overdue["state"] == "overdue" and 22 * 60 <= overdue["minutes_late"] <= 23 * 60


async def test_the_printable_report_shows_subjects_partners_recipients_and_failures(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = await incident_with_three_versions(client, smtp_sink)

    response = await client.get(f"/v1/incidents/{incident_id}/report?format=html", headers=auth("operator"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()

    for stored in await stored_notices(client, incident_id):
        for lang in ("ja", "en"):
            assert str(escape(stored["rendered"][lang]["subject"])) in page
    for delivery in await rows(client):
        assert str(escape(delivery["address"])) in page
    assert "東海ロジスティクス株式会社" in page and "株式会社みなと商事" in page
    assert "no such user" in page
    assert "Late by" in page and "On time" in page and "Still open" in page
    assert str(escape(SCRIPT)) in page and SCRIPT not in page

    by_accept = await client.get(
        f"/v1/incidents/{incident_id}/report", headers={**auth("admin"), "Accept": "text/html"}
    )
    assert by_accept.content_type == "text/html"


async def test_the_report_needs_an_operator_and_an_existing_incident(client: Any) -> None:
    assert (await client.get("/v1/incidents/1/report", headers=auth("ingest"))).status == 403
    missing = await client.get("/v1/incidents/999/report", headers=auth("admin"))
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"
    bad = await client.get("/v1/incidents/1/report?format=pdf", headers=auth("operator"))
    assert bad.status == 400 and (await bad.json())["field"] == "format"


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    "promised, next_at, now, state, minutes",
    [
        (NOW, NOW - 60, NOW, "on_time", None),
        (NOW, NOW, NOW, "on_time", None),
        (NOW, NOW + 1, NOW, "late", 1),
        (NOW, NOW + 61, NOW, "late", 2),
        (NOW, None, NOW - 1, "open", None),
        (NOW, None, NOW + 45 * 60, "overdue", 45),
        (None, NOW, NOW, "none", None),
        (None, None, NOW, "none", None),
    ],
)  # fmt: skip
def test_a_promise_is_kept_late_open_or_overdue(
    promised: float | None, next_at: float | None, now: float, state: str, minutes: int | None
) -> None:
    following = {"version": 2, "published_at": next_at} if next_at is not None else None
    result = promise(promised, following, now)
    assert (result["state"], result["minutes_late"]) == (state, minutes)
    assert result["promised_at"] == iso(promised) and result["next_published_at"] == iso(next_at)
