"""The evidence report's timeline, as a browser shows and prints it (headless Chromium).

With HERALD_DOCS_SCREENSHOTS=1 the test also refreshes docs/timeline.png, the picture the docs show.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import update

from service import appkeys
from service.store.tables import acknowledgements, deliveries, incidents, notices
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import ROOT, TOKENS
from tests.helpers.reports import acknowledge_some, incident_with_three_versions
from tests.helpers.wired import start, wired_settings


async def test_the_timeline_shows_in_a_browser_and_in_print_without_script(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake, browser_page: Any, tmp_path: Any
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = await incident_with_three_versions(client, smtp_sink)
    await spread_over_two_and_a_half_hours(client, incident_id, await acknowledge_some(client))
    page = browser_page
    await page.set_extra_http_headers({"Authorization": f"Bearer {TOKENS['operator']}"})
    await page.route("**/*", lambda route: route.continue_())  # every request stays on this host

    response = await page.goto(str(client.make_url(f"/v1/incidents/{incident_id}/report?format=html")))
    assert response.status == 200
    svg = page.locator("figure.timeline svg")
    await svg.wait_for(state="visible")
    box = await svg.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200
    assert await svg.locator("g.notice").count() == 3
    assert await svg.locator("g.promise").count() == 3
    assert await page.locator("script").count() == 0

    await page.emulate_media(media="print")
    assert await svg.is_visible()
    pdf = await page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")

    await page.emulate_media(media="screen")
    shot = tmp_path / "timeline.png"
    await page.locator("figure.timeline").screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000
    if os.environ.get("HERALD_DOCS_SCREENSHOTS") == "1":
        (ROOT / "docs" / "timeline.png").write_bytes(shot.read_bytes())


async def spread_over_two_and_a_half_hours(client: Any, incident_id: int, acknowledged: list[dict[str, Any]]) -> None:
    """Move the recorded times apart as a real incident would have them: v1 eight minutes after the
    incident opened, v2 six minutes later than v1 promised, v3 on time, its own promise still ahead,
    acknowledgements trickling in."""
    opened = time.time() - 150 * 60
    minutes = 60.0
    versions = {1: (8, 60), 2: (66, 120), 3: (115, 180)}  # published, next update promised (minutes)
    async with client.app[appkeys.STORE].begin() as conn:
        await conn.execute(update(incidents).where(incidents.c.id == incident_id).values(created_at=opened))
        for version, (published, promised) in versions.items():
            await conn.execute(
                update(notices)
                .where(notices.c.incident_id == incident_id, notices.c.version == version)
                .values(published_at=opened + published * minutes, next_update_at=opened + promised * minutes)
            )
        for index, delivery in enumerate(acknowledged):
            at = opened + (12 + 9 * index) * minutes
            await conn.execute(update(deliveries).where(deliveries.c.id == delivery["id"]).values(acknowledged_at=at))
            await conn.execute(
                update(acknowledgements).where(acknowledgements.c.delivery_id == delivery["id"]).values(at=at)
            )
