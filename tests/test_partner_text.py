"""What partners read about monitoring alerts: the services affected in their language, never the
alert's hosts, ports, instances or names. Real SMTP server, real twilio client."""

from __future__ import annotations

import copy
import json
from typing import Any

from sqlalchemy import select

from service import appkeys
from service.settings import DEFAULT_CONFIG, load_settings
from service.store.tables import notices
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import ROOT, auth, wait_until
from tests.helpers.wired import all_settled, post_sample, start, wired_settings

GROUP = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing_internal_three_alerts.json").read_text())
INTERNAL = ("Conf", "order-api-0", "order-api-1", "8080", "pay-db", "5432", "internal", "instance", "probe_success")


async def herald(aiohttp_client: Any, sqlite_url: str, smtp: SmtpSink, twilio: TwilioFake) -> Any:
    services = load_settings(DEFAULT_CONFIG, environ={}).services  # the example configuration's names
    return await start(
        aiohttp_client, wired_settings(sqlite_url, smtp, twilio).model_copy(update={"services": services})
    )


async def post_group(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/webhooks/alertmanager", json=body, headers=auth("ingest"))
    assert response.status == 202, await response.text()
    return await response.json()


def read_by(smtp: SmtpSink) -> dict[str, list[tuple[str, str]]]:
    """(subject, plain text) of every mail, by the language it is written in."""
    found: dict[str, list[tuple[str, str]]] = {"ja": [], "en": []}
    for received in smtp.messages:
        subject = str(received.message["Subject"])
        found["ja" if "【" in subject else "en"].append((subject, received.message.get_body(("plain",)).get_content()))
    return found


async def test_a_group_of_three_alerts_with_internal_hostnames_reaches_partners_without_them(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await herald(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    await post_group(client, GROUP)  # no partner text: neutral wording, and a critical group goes at once
    await wait_until(lambda: all_settled(client), timeout=30)

    mails = read_by(smtp_sink)
    assert mails["ja"] and mails["en"]
    for subject, text in mails["ja"] + mails["en"]:
        assert not [word for word in INTERNAL if word in subject or word in text], subject
    assert {s for s, _ in mails["ja"]} == {"【障害発生のお知らせ】受発注API・決済サービスの障害（第1報）"}
    assert {s for s, _ in mails["en"]} == {"[Incident] Disruption to Ordering API and Payments (update #1)"}
    assert "受発注API・決済サービスで障害が発生しています（重大度：重大）" in mails["ja"][0][1]
    assert "■ 対象サービス：受発注API、決済サービス" in mails["ja"][0][1]
    assert "critical disruption affecting Ordering API and Payments" in mails["en"][0][1]
    assert twilio_fake.requests
    assert not [r["Body"] for r in twilio_fake.requests if any(word in r["Body"] for word in INTERNAL)]


async def test_partner_annotations_speak_for_the_whole_group_in_each_language(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    body = copy.deepcopy(GROUP)
    body["groupKey"] += "-annotated"
    body["alerts"][0]["annotations"].update(
        partner_summary_ja="受発注APIで発注登録ができない状態です。", partner_summary_en="Orders cannot be placed."
    )
    body["alerts"][2]["annotations"].update(
        partner_summary_ja="決済の確定に時間がかかっています。", partner_summary_en="Payments are slow to confirm."
    )
    client = await herald(aiohttp_client, sqlite_url, smtp_sink, twilio_fake)
    await post_group(client, body)
    await wait_until(lambda: all_settled(client), timeout=30)

    mails = read_by(smtp_sink)
    assert "受発注APIで発注登録ができない状態です。決済の確定に時間がかかっています。" in mails["ja"][0][1]
    assert "Orders cannot be placed. Payments are slow to confirm." in mails["en"][0][1]
    assert not [s for s, _ in mails["ja"] + mails["en"] if any(word in s for word in INTERNAL)]


async def test_a_notice_missing_text_in_a_language_its_recipients_read_is_refused_naming_the_fields(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False))
    body = {
        "kind": "custom",
        "fields": {
            "subject": {"ja": "年末年始の営業について"},
            "body": "年末年始は12月29日までの営業となります。",
            "responsible": {"name": {"ja": "運用センター", "en": "Operations Center"}},
        },
        "audience": {"partners": ["tokai-logistics", "pacific-freight"]},  # Japanese and English readers
    }
    refused = await client.post("/v1/broadcasts", json=body, headers=auth("operator"))
    assert refused.status == 422
    error = await refused.json()
    assert error["error"] == "missing_language" and error["field"] == "fields.subject.en"
    assert "fields.subject.en, fields.body.en" in error["detail"] and "English" in error["detail"]
    async with client.app[appkeys.STORE].read() as conn:
        assert not (await conn.execute(select(notices.c.id))).first()  # nothing of it was kept

    japanese_only = {**body, "audience": {"partners": ["tokai-logistics"]}}
    assert (await client.post("/v1/broadcasts", json=japanese_only, headers=auth("operator"))).status == 202
    allowed = {**body, "allow_language_fallback": True}
    assert (await client.post("/v1/broadcasts", json=allowed, headers=auth("operator"))).status == 202


async def test_a_draft_missing_english_is_published_only_when_the_operator_allows_the_fallback(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake, enabled=False))
    opened = await post_sample(client)
    draft = {"status": "identified", "notice": {"fields": {"current_status": "原因を特定しました。"}, "publish": False}}
    response = await client.post(f"/v1/incidents/{opened['incident_id']}/updates", json=draft, headers=auth("operator"))
    notice_id = (await response.json())["notice_id"]

    refused = await client.post(f"/v1/notices/{notice_id}/publish", headers=auth("operator"))
    assert refused.status == 422
    assert (await refused.json())["field"] == "notice.fields.current_status.en"
    published = await client.post(
        f"/v1/notices/{notice_id}/publish?allow_language_fallback=true", headers=auth("operator")
    )
    assert published.status == 202, await published.text()
