"""Account owners (our own staff) get a copy of every notice their partner gets, at the same moment,
with the partner's delivery and acknowledgement status; their copies are never a partner figure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from service import appkeys
from service.directory import parse_directory
from service.store.models import Delivery
from service.store.tables import deliveries
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import auth, wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.mail import mail_to
from tests.helpers.wired import all_final, post_sample, rows, start, wired_settings

OWNER: dict[str, Any] = {
    "key": "tanaka",
    "name": "田中 誠",
    "email": "makoto.tanaka@sample-corp.example.com",
    "phone": "+81 90-5555-0101",
    "channels": ["email", "sms"],
    "language": "ja",
}


async def with_owner(client: Any, partner: str = "tokai-logistics") -> None:
    response = await client.put(
        f"/v1/partners/{partner}/account-owners", json={"items": [OWNER]}, headers=auth("admin")
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["account_owners"][0]["key"] == "tanaka"


async def test_an_account_owner_gets_each_notice_at_the_same_moment_with_the_partners_status(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await with_owner(client)
    notice = {**SAMPLE["notice"], "audience": {"partners": ["tokai-logistics"]}}
    plan = await post_sample(client, notice=notice)
    assert plan["deliveries"]["internal_copies"] == 2
    await wait_until(lambda: all_final(client), timeout=30)

    logged = await rows(client)
    copies = [d for d in logged if d["purpose"] == "internal"]
    partner_rows = [d for d in logged if d["purpose"] == "partner"]
    assert sorted(d["channel"] for d in copies) == ["email", "sms"]
    assert {d["created_at"] for d in copies} == {partner_rows[0]["created_at"]}  # planned in the same instant
    tier1_priority = {d["channel"]: d["priority"] for d in partner_rows if d["tier"] == 1}
    assert all(d["priority"] == tier1_priority[d["channel"]] for d in copies)

    mail = await mail_to(smtp_sink, OWNER["email"])
    assert str(mail["Subject"]).startswith("[社内控え・東海ロジスティクス株式会社]")
    text = mail.get_body(("plain",)).get_content()
    header, _, copy = text.partition("━━━━━━━━━━━━━━━━━━━━")
    assert "社内控え（取引先には送信されません）" in header
    for name, phone in (("佐藤 花子", "+819012345678"), ("伊藤 健", "+818023456789")):
        assert name in header and phone in header
    assert "受領確認：未" in header
    assert "受発注APIの応答遅延" in copy and "/ack/" not in text  # the notice itself, without a link
    html = mail.get_body(("html",)).get_content()
    assert 'class="internal-header"' in html
    sms = await twilio_fake.wait_for(sum(1 for d in logged if d["channel"] == "sms"))
    assert any(m["to"] == "+819055550101" and m["body"].startswith("[社内控え") for m in sms)


async def test_internal_copies_never_count_as_partner_deliveries(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await with_owner(client)
    notice = {**SAMPLE["notice"], "audience": {"partners": ["tokai-logistics"]}}
    plan = await post_sample(client, notice=notice)
    await wait_until(lambda: all_final(client), timeout=30)
    incident_id = plan["incident_id"]
    partner_rows = [d for d in await rows(client) if d["purpose"] == "partner"]
    assert plan["deliveries"]["total"] == len(partner_rows)
    assert sum(plan["deliveries"]["by_channel"].values()) == len(partner_rows)

    summary = await (await client.get(f"/v1/incidents/{incident_id}/summary", headers=auth("admin"))).json()
    assert summary["total"] == len(partner_rows)
    incident = await (await client.get(f"/v1/incidents/{incident_id}", headers=auth("operator"))).json()
    assert sum(incident["timeline"][0]["deliveries"].values()) == len(partner_rows)
    report = await (await client.get(f"/v1/incidents/{incident_id}/report", headers=auth("operator"))).json()
    assert report["totals"]["deliveries"] == len(partner_rows)
    recipients = [r for n in report["notices"] for p in n["partners"] for r in p["recipients"]]
    assert OWNER["email"] not in {r["address"] for r in recipients}
    log = await (await client.get("/v1/deliveries", headers=auth("admin"))).json()
    assert len(log["items"]) == len(partner_rows)
    internal = await (await client.get("/v1/deliveries?purpose=internal", headers=auth("admin"))).json()
    assert {item["address"] for item in internal["items"]} == {OWNER["email"], "+819055550101"}
    metrics = await (await client.get("/metrics")).text()
    sent = sum(
        float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith("herald_delivery_outcomes_total{") and 'status="sent"' in line
    )
    assert sent == len(partner_rows)


async def test_escalation_and_acknowledgements_ignore_internal_copies(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await with_owner(client)
    await post_sample(client, notice={**SAMPLE["notice"], "audience": {"partners": ["tokai-logistics"]}})
    async with client.app[appkeys.STORE].read() as conn:
        copies = [
            dict(r)
            for r in (await conn.execute(select(deliveries).where(deliveries.c.purpose == "internal"))).mappings()
        ]
    assert all(d["tier"] == 0 and d["contact_id"] == 0 and d["owner_id"] for d in copies)
    assert client.app[appkeys.DISPATCHER].ack_link(Delivery.from_row(copies[0])) is None


def test_the_directory_file_names_account_owners_and_checks_their_channels() -> None:
    text = """
partners:
  - id: acme
    name: Acme
    language: en
    contacts:
      - {key: a, name: A, tier: 1, email: a@acme.example}
    account_owners:
      - {key: owner, name: Our Owner, email: owner@sample-corp.example.com, channels: [email, sms]}
"""
    _, errors = parse_directory(text, "partners.yaml")
    assert [(e.field, "phone" in e.message) for e in errors] == [("partners[0].account_owners[0].channels", True)]
    fixed, errors = parse_directory(text.replace("channels: [email, sms]", "channels: [email]"), "partners.yaml")
    assert not errors
    assert fixed.rows()[0]["account_owners"][0]["email"] == "owner@sample-corp.example.com"
