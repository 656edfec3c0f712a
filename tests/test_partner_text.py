"""What partners read about monitoring alerts: the services affected in their language, never the
alert's hosts, ports, instances or names. Real SMTP server, real twilio client."""

from __future__ import annotations

import copy
import json
from typing import Any

from service.settings import DEFAULT_CONFIG, load_settings
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import ROOT, auth, wait_until
from tests.test_dispatch import start, wired_settings
from tests.test_partner_volume import all_final

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
    await wait_until(lambda: all_final(client), timeout=30)

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
    await wait_until(lambda: all_final(client), timeout=30)

    mails = read_by(smtp_sink)
    assert "受発注APIで発注登録ができない状態です。決済の確定に時間がかかっています。" in mails["ja"][0][1]
    assert "Orders cannot be placed. Payments are slow to confirm." in mails["en"][0][1]
    assert not [s for s, _ in mails["ja"] + mails["en"] if any(word in s for word in INTERNAL)]
