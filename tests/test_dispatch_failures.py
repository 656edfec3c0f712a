"""When sending goes wrong in ways the channels did not foresee, the dispatcher still delays the
notice instead of dropping it, records why, and keeps every other delivery moving."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import ROOT, make_settings, wait_until
from tests.helpers.wired import all_final, post_sample, rows, start, wired_sections, wired_settings

# Renders for the start-up check (a tier-1 recipient) and fails only when it greets tier 3.
BREAKS_FOR_TIER_3 = "{% if recipient.tier == 3 %}{{ no_such_macro() }}{% endif %}\n"


def templates_broken_for_tier_3(root: Path) -> Path:
    for lang in ("ja", "en"):
        (root / lang).mkdir(parents=True)
        builtin = (ROOT / "templates" / lang / "initial.txt.j2").read_text(encoding="utf-8")
        (root / lang / "initial.txt.j2").write_text(BREAKS_FOR_TIER_3 + builtin, encoding="utf-8")
    return root


async def test_a_message_that_cannot_be_composed_is_retried_then_dead_and_the_rest_is_sent(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake, tmp_path: Path
) -> None:
    own = templates_broken_for_tier_3(tmp_path / "own")
    settings = make_settings(
        sqlite_url,
        **wired_sections(smtp_sink.port, twilio_fake),
        templates={"directory": str(own)},
        dispatch={"max_attempts": 2},
    )
    client = await start(aiohttp_client, settings)
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)

    final = await rows(client)
    tier3_email = [r for r in final if r["tier"] == 3 and r["channel"] == "email"]
    assert tier3_email and {r["status"] for r in tier3_email} == {"dead"}
    assert all(
        r["attempts"] == 2 and "gave up after 2 attempts: UndefinedError" in r["last_error"] for r in tier3_email
    )
    assert {r["status"] for r in final if r not in tier3_email} == {"sent"}
    tier3_addresses = {r["address"] for r in tier3_email}
    assert not [m for m in smtp_sink.messages if m.message["To"] in tier3_addresses]


async def test_a_twilio_reply_that_cannot_be_read_is_retried_and_the_text_goes_out_once(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    twilio_fake.garble_next(1)
    await post_sample(client)
    await wait_until(lambda: all_final(client), timeout=30)

    texts = await rows(client, deliveries.c.channel == "sms")
    assert {r["status"] for r in texts} == {"sent"}
    assert sum(r["attempts"] for r in texts) == len(texts) + 1
    assert len(twilio_fake.messages) == len(texts), "the garbled request created nothing; the retry did"


async def test_a_lane_that_cannot_reach_the_database_keeps_trying_and_sends_once_it_can(
    aiohttp_client: Any,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    twilio_fake: TwilioFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another process holds SQLite's write lock longer than the busy timeout: every claim fails
    (the lanes log it and poll again); once the lock is gone the notice goes out in full."""
    db_file = tmp_path / "herald.db"
    settings = make_settings(
        f"sqlite+aiosqlite:///{db_file}", **wired_sections(smtp_sink.port, twilio_fake), database={"busy_timeout": 0.2}
    )
    client = await start(aiohttp_client, settings)  # lanes running, nothing due yet
    other_process = sqlite3.connect(db_file, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    try:
        await wait_until(lambda: "dispatch lane email failed; retrying" in caplog.text, timeout=10)
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()

    plan = (await post_sample(client))["deliveries"]
    await wait_until(lambda: all_final(client), timeout=30)
    assert {r["status"] for r in await rows(client)} == {"sent"}
    assert len(smtp_sink.messages) == plan["by_channel"]["email"]
