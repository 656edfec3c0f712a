"""The evidence report draws the incident's timeline itself: one mark per notice and per promise,
status periods, and acknowledgements over time by tier, as plain SVG with no script."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from service import appkeys
from service.report import build_report
from service.timeline import acknowledgements_by_tier, draw_timeline
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth
from tests.helpers.reports import acknowledge_some, incident_with_three_versions
from tests.helpers.wired import rows, start, wired_settings

SVG = "{http://www.w3.org/2000/svg}"


def svg_of(page: str) -> ET.Element:
    found = re.search(r"<svg .*?</svg>", page, re.DOTALL)
    assert found, "the report has no inline SVG"
    return ET.fromstring(found.group(0))  # noqa: S314 - Herald's own output


def marks(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == kind]


async def report_page(client: Any, incident_id: int) -> str:
    response = await client.get(f"/v1/incidents/{incident_id}/report?format=html", headers=auth("operator"))
    assert response.status == 200
    return await response.text()


async def test_the_report_draws_one_mark_per_notice_and_per_promise_and_acks_by_tier(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = await incident_with_three_versions(client, smtp_sink)
    acknowledged = await acknowledge_some(client)
    page = await report_page(client, incident_id)
    svg = svg_of(page)

    notices = marks(svg, "notice")
    assert [g.get("data-version") for g in notices] == ["1", "2", "3"]
    promises = marks(svg, "promise")
    assert [(g.get("data-version"), g.get("data-state")) for g in promises] == [
        ("1", "late"),
        ("2", "on_time"),
        ("3", "open"),
    ]
    # A late promise is marked with a cross where the next notice went out, a kept one with a dot.
    late, kept, open_ = promises
    assert late.find(f"{SVG}path[@class='kept-late']") is not None
    assert kept.find(f"{SVG}circle[@class='kept']") is not None
    assert open_.find(f"{SVG}circle[@class='kept']") is None and open_.find(f"{SVG}path") is None
    assert all(g.find(f"{SVG}polygon[@class='promised']") is not None for g in promises)

    assert [g.get("data-status") for g in marks(svg, "status")] == ["investigating", "identified", "recovering"]
    expected_tiers: dict[str, int] = {}
    for tier, _, _ in {(d["tier"], d["notice_id"], d["contact_id"]) for d in acknowledged}:
        expected_tiers[str(tier)] = expected_tiers.get(str(tier), 0) + 1
    assert {g.get("data-tier"): int(g.get("data-count") or 0) for g in marks(svg, "acks")} == expected_tiers

    assert "<script" not in page.lower()
    assert "http://" not in re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", svg_text(page))


def svg_text(page: str) -> str:
    found = re.search(r"<svg .*?</svg>", page, re.DOTALL)
    return found.group(0) if found else ""


async def test_an_acknowledgement_counts_once_per_contact_and_notice(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = await incident_with_three_versions(client, smtp_sink)
    first_notice = min(d["notice_id"] for d in await rows(client))
    contact_rows = [d for d in await rows(client) if d["notice_id"] == first_notice and d["tier"] == 1]
    by_contact: dict[int, list[dict[str, Any]]] = {}
    for delivery in contact_rows:
        by_contact.setdefault(delivery["contact_id"], []).append(delivery)
    both = next(ds for ds in by_contact.values() if len(ds) >= 2)  # SMS and email to one contact
    signer = client.app[appkeys.ACK_SIGNER]
    for delivery in both:
        assert (await client.post(f"/ack/{signer.token_for(delivery['id'], delivery['created_at'])}")).status == 200

    async with client.app[appkeys.STORE].read() as conn:
        report = await build_report(conn, incident_id)
    assert report is not None
    assert {tier: len(times) for tier, times in acknowledgements_by_tier(report["notices"]).items()} == {1: 1}
    svg = ET.fromstring(str(draw_timeline(report, "Asia/Tokyo")))  # noqa: S314
    assert [g.get("data-count") for g in marks(svg, "acks")] == ["1"]
