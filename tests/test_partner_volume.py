"""What a partner contact receives about one incident: not too many SMS, no SMS for a root cause,
bursts of updates merged, non-urgent notices held for the night. Real SMTP server, real twilio client."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update

from service import appkeys
from service.settings import Settings
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.wired import all_settled, post_sample, rows, start, wired_settings

SATO = {"email": "hanako.sato@tokai-logistics.example.jp", "phone": "+819012345678"}
SUZUKI = {"email": "ichiro.suzuki@minato-shoji.example.jp", "phone": "+819023451111"}
TIER1_AUDIENCE = {"partners": ["tokai-logistics", "minato-shoji"], "tiers": [1]}

# Seven updates after the initial notice: state changes and progress within one state.
UPDATES: list[dict[str, Any]] = [
    {"status": "identified"},
    {"status": "recovering"},
    {"notice": {"fields": {"progress_percent": 50}}},
    {"status": "monitoring"},
    {"status": "recovering"},
    {"notice": {"fields": {"progress_percent": 80}}},
    {"status": "monitoring"},
]


def tuned(settings: Settings, **volume: Any) -> Settings:
    return settings.model_copy(update={"volume": settings.volume.model_copy(update=volume)})


async def open_incident(client: Any, severity: str = "critical") -> dict[str, Any]:
    notice = {**SAMPLE["notice"], "audience": TIER1_AUDIENCE}
    return await post_sample(client, severity=severity, notice=notice)


async def post_update(client: Any, incident_id: int, body: dict[str, Any]) -> dict[str, Any]:
    notice = body.get("notice", {})
    fields = {"current_status": {"ja": "対応中です。", "en": "We are on it."}, **notice.get("fields", {})}
    payload = {**body, "notice": {**notice, "fields": fields, "audience": TIER1_AUDIENCE}}
    response = await client.post(f"/v1/incidents/{incident_id}/updates", json=payload, headers=auth("operator"))
    assert response.status == 202, await response.text()
    return await response.json()


def sms_to(twilio: TwilioFake, phone: str) -> list[str]:
    return [r["Body"] for r in twilio.requests if r["To"] == phone]


def mail_to(smtp: SmtpSink, address: str) -> list[Any]:
    return [m.message for m in smtp.messages if address in m.rcpt_tos]


async def test_a_critical_incident_with_eight_notices_sends_tier1_at_most_three_sms_and_every_notice_by_email(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    # Merging off: each of the eight notices is its own message, so each must arrive by email.
    client = await start(
        aiohttp_client, tuned(wired_settings(sqlite_url, smtp_sink, twilio_fake), merge_window_seconds=0)
    )
    incident_id = (await open_incident(client))["incident_id"]
    for body in UPDATES:
        await post_update(client, incident_id, body)
    await wait_until(lambda: all_settled(client), timeout=30)

    for contact in (SATO, SUZUKI):
        assert len(sms_to(twilio_fake, contact["phone"])) == 3
        subjects = [str(m["Subject"]) for m in mail_to(smtp_sink, contact["email"])]
        assert len(subjects) == 8
        assert {f"第{v}報" for v in range(1, 9)} == {s[s.rindex("第") : s.rindex("報") + 1] for s in subjects}
    capped = await rows(client, deliveries.c.reason == "capped")
    assert {(r["address"], r["status"]) for r in capped} == {(SATO["phone"], "skipped"), (SUZUKI["phone"], "skipped")}
    assert len(capped) == 2 * 5

    # An hour later the cap has room again; the next SMS names the updates that went by email only.
    async with client.app[appkeys.STORE].begin() as conn:
        await conn.execute(update(deliveries).values(created_at=deliveries.c.created_at - 3601))
    await post_update(client, incident_id, {"status": "resolved", "notice": {"fields": {"summary": "復旧しました。"}}})
    await wait_until(lambda: len(sms_to(twilio_fake, SATO["phone"])) == 4, timeout=30)
    assert "第4・5・6・7・8報はメールのみでお送りしました" in sms_to(twilio_fake, SATO["phone"])[-1]

    report = await (await client.get(f"/v1/incidents/{incident_id}/report", headers=auth("operator"))).json()
    reasons = [r["reason_text"] for n in report["notices"] for p in n["partners"] for r in p["recipients"]]
    assert any(text and "reached the cap of 3" in text for text in reasons)


async def test_a_root_cause_notice_sends_no_sms_by_default(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    incident_id = (await open_incident(client))["incident_id"]
    await wait_until(lambda: all_settled(client), timeout=30)
    texted_before = len(twilio_fake.requests)

    cause = {"ja": "設定誤りによる接続枯渇", "en": "Connection exhaustion after a configuration error"}
    fix = {"ja": "設定の二重確認を導入します。", "en": "Configuration changes are now reviewed twice."}
    reply = await post_update(
        client, incident_id, {"notice": {"kind": "root_cause", "fields": {"cause": cause, "countermeasures": fix}}}
    )
    assert reply["deliveries"]["by_channel"] == {"email": 2}
    await wait_until(lambda: all_settled(client), timeout=30)
    assert len(twilio_fake.requests) == texted_before
    root_cause_mail = [m for m in mail_to(smtp_sink, SATO["email"]) if "原因" in str(m["Subject"])]
    assert len(root_cause_mail) == 1


async def test_a_burst_of_updates_reaches_a_contact_as_one_message_saying_what_changed(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = tuned(wired_settings(sqlite_url, smtp_sink, twilio_fake), merge_window_seconds=2.0)
    client = await start(aiohttp_client, settings)
    incident_id = (await open_incident(client, severity="major"))["incident_id"]
    await post_update(client, incident_id, {"status": "identified"})
    await post_update(
        client, incident_id, {"notice": {"fields": {"current_status": {"ja": "切り分け中です。", "en": "Isolating."}}}}
    )
    await post_update(client, incident_id, {"status": "recovering"})
    await wait_until(lambda: all_settled(client), timeout=30)

    held_then_merged = await rows(client, deliveries.c.address == SATO["email"])
    assert [r["status"] for r in held_then_merged] == ["sent", "merged", "merged", "sent"]
    assert held_then_merged[-1]["detail"]["merged_versions"] == [2, 3]
    mails = mail_to(smtp_sink, SATO["email"])
    assert len(mails) == 2
    merged = mails[-1].get_body(("plain",)).get_content()
    assert "未送信だった第2・3報の内容をまとめた最新の状況です" in merged
    assert "状況（原因特定済み→復旧作業中）" in merged and "現在の状況" in merged


async def test_state_changes_of_a_critical_incident_go_at_once_and_carry_a_held_update(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False)
    client = await start(aiohttp_client, tuned(settings, merge_window_seconds=600))
    incident_id = (await open_incident(client))["incident_id"]
    await post_update(client, incident_id, {"status": "identified"})  # a state change: at once
    await post_update(client, incident_id, {"notice": {"fields": {"progress_percent": 30}}})  # same state: held
    held = await rows(client, deliveries.c.address == SATO["email"])
    assert [r["reason"] for r in held] == [None, None, "held"]
    assert held[-1]["next_attempt_at"] > time.time() + 500
    await post_update(client, incident_id, {"status": "recovering"})  # a state change takes the held update along

    mine = await rows(client, deliveries.c.address == SATO["email"])
    assert [r["status"] for r in mine] == ["pending", "pending", "merged", "pending"]
    assert mine[-1]["reason"] == "merged" and mine[-1]["next_attempt_at"] <= time.time()
    assert mine[-1]["detail"]["merged_versions"] == [3]


async def test_a_root_cause_planned_in_the_partners_night_waits_for_its_morning(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    night = {
        "enabled": True,
        "start": (tokyo - timedelta(hours=1)).strftime("%H:%M"),
        "end": (tokyo + timedelta(hours=1)).strftime("%H:%M"),
    }
    settings = wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False)
    client = await start(
        aiohttp_client, settings.model_copy(update={"quiet_hours": settings.quiet_hours.model_copy(update=night)})
    )
    opened = await post_sample(client)  # the whole audience of the sample incident
    initial = await rows(client, deliveries.c.notice_id == opened["notice_id"])
    assert all(r["reason"] is None for r in initial)  # an incident's first notice is never held

    cause = {"ja": "設定誤り", "en": "A configuration error"}
    reply = await update_all(client, opened["incident_id"], cause)
    planned = await rows(client, deliveries.c.notice_id == reply["notice_id"])
    by_partner = {r["partner_id"]: r for r in planned}
    morning = datetime.fromisoformat(f"{tokyo.date()}T{night['end']}").replace(tzinfo=ZoneInfo("Asia/Tokyo"))
    tokai = by_partner["tokai-logistics"]
    assert tokai["reason"] == "held" and tokai["detail"]["hold"] == "quiet_hours"
    assert tokai["next_attempt_at"] in (morning.timestamp(), (morning + timedelta(days=1)).timestamp())
    assert by_partner["pacific-freight"]["reason"] is None  # Los Angeles is not in its night


async def update_all(client: Any, incident_id: int, cause: dict[str, str]) -> dict[str, Any]:
    body = {"notice": {"kind": "root_cause", "fields": {"cause": cause, "countermeasures": cause}}}
    response = await client.post(f"/v1/incidents/{incident_id}/updates", json=body, headers=auth("operator"))
    assert response.status == 202, await response.text()
    return await response.json()
