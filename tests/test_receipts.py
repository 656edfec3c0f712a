"""Receipts: Twilio status callbacks signed like Twilio signs them, and bounces from real-looking DSNs."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from service import appkeys
from service.logs import EMAIL, PHONE
from service.store import receipts as receipt_store
from service.store.tables import deliveries, receipts
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import API_VERSION, TwilioFake
from tests.helpers import wait_until
from tests.helpers.incidents import SAMPLE
from tests.helpers.receipts import bounce, dsn
from tests.helpers.wired import post_sample, rows, start, wired_settings

PUBLIC_CALLBACK_URL = "https://herald.example.com/v1/receipts/twilio"


async def publish_to(client: Any, partner: str, tiers: list[int] | None = None) -> None:
    notice = {**SAMPLE["notice"], "audience": {"partners": [partner], "tiers": tiers or [1]}}
    await post_sample(client, notice=notice)


async def sent(client: Any, channel: str) -> list[dict[str, Any]]:
    """Wait until every delivery on `channel` left, and return them."""

    async def settled() -> list[dict[str, Any]] | None:
        found = await rows(client, deliveries.c.channel == channel)
        return found if found and all(r["provider_id"] for r in found) else None

    return await wait_until(settled, timeout=30)


async def delivery(client: Any, delivery_id: int) -> dict[str, Any]:
    [row] = await rows(client, deliveries.c.id == delivery_id)
    return row


async def receipts_of(client: Any, delivery_id: int) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        query = select(receipts).where(receipts.c.delivery_id == delivery_id).order_by(receipts.c.id)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


def callback_params(sms: dict[str, Any], status: str, error_code: int | None = None) -> dict[str, str]:
    params = {
        "AccountSid": "AC" + "0123456789abcdef" * 2,
        "MessageSid": sms["provider_id"],
        "SmsSid": sms["provider_id"],
        "MessageStatus": status,
        "SmsStatus": status,
        "To": sms["address"],
        "From": "+15005550006",
        "ApiVersion": API_VERSION,
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


async def twilio_reports(
    client: Any,
    twilio: TwilioFake,
    params: dict[str, str],
    signed_url: str = PUBLIC_CALLBACK_URL,
    token: str | None = None,
) -> Any:
    """POST a status callback signed the way Twilio signs it: over the public URL it called."""
    signature = RequestValidator(token or twilio.auth_token).compute_signature(signed_url, params)
    return await client.post("/v1/receipts/twilio", data=params, headers={"X-Twilio-Signature": signature})


@pytest.fixture
async def texted(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> tuple[Any, dict[str, Any]]:
    """The app after one critical notice reached a tier-1 contact by SMS."""
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await publish_to(client, "tokai-logistics")
    [sms] = await sent(client, "sms")
    return client, sms


async def test_a_signed_delivered_callback_marks_the_sms_delivered(texted, twilio_fake) -> None:
    client, sms = texted
    response = await twilio_reports(client, twilio_fake, callback_params(sms, "delivered"))

    assert response.status == 200, await response.text()
    row = await delivery(client, sms["id"])
    assert row["status"] == "delivered" and row["provider_status"] == "delivered"
    assert row["delivered_at"] is not None
    [receipt] = await receipts_of(client, sms["id"])
    assert (receipt["source"], receipt["status"]) == ("twilio", "delivered")
    assert sms["address"] not in str(receipt["detail"])


async def test_callbacks_arriving_out_of_order_never_move_a_delivery_back(texted, twilio_fake) -> None:
    client, sms = texted
    for status in ("sent", "delivered", "sending", "queued", "sent"):
        assert (await twilio_reports(client, twilio_fake, callback_params(sms, status))).status == 200

    row = await delivery(client, sms["id"])
    assert row["status"] == "delivered" and row["provider_status"] == "delivered"
    recorded = [(r["status"], r["detail"]["applied"]) for r in await receipts_of(client, sms["id"])]
    assert recorded == [("sent", True), ("delivered", True), ("sending", False), ("queued", False)]


async def test_a_repeated_callback_changes_nothing(texted, twilio_fake) -> None:
    client, sms = texted
    first = await twilio_reports(client, twilio_fake, callback_params(sms, "delivered"))
    delivered_at = (await delivery(client, sms["id"]))["delivered_at"]
    again = await twilio_reports(client, twilio_fake, callback_params(sms, "delivered"))

    assert (await first.json())["applied"] is True
    assert again.status == 200 and (await again.json())["duplicate"] is True
    assert (await delivery(client, sms["id"]))["delivered_at"] == delivered_at
    assert len(await receipts_of(client, sms["id"])) == 1


@pytest.mark.parametrize(
    ("status", "code", "meaning"),
    [("undelivered", 30003, "Unreachable destination handset"), ("failed", 30007, "filtered by the carrier")],
)
async def test_a_failed_sms_keeps_twilios_error_code_and_its_meaning(
    texted, twilio_fake, status, code, meaning
) -> None:
    client, sms = texted
    await twilio_reports(client, twilio_fake, callback_params(sms, "sent"))
    response = await twilio_reports(client, twilio_fake, callback_params(sms, status, code))

    assert response.status == 200
    row = await delivery(client, sms["id"])
    assert row["status"] == status and row["error_code"] == str(code)
    assert meaning in row["last_error"] and str(code) in row["last_error"]
    assert row["delivered_at"] is None and row["failed_at"] is not None


async def test_forged_unsigned_or_wrongly_addressed_callbacks_are_refused(texted, twilio_fake) -> None:
    client, sms = texted
    params = callback_params(sms, "delivered")
    internal_url = str(client.make_url("/v1/receipts/twilio"))

    unsigned = await client.post("/v1/receipts/twilio", data=params)
    forged = await twilio_reports(client, twilio_fake, params, token="not-the-auth-token")
    signed_for_internal_url = await twilio_reports(client, twilio_fake, params, signed_url=internal_url)
    signature = RequestValidator(twilio_fake.auth_token).compute_signature(PUBLIC_CALLBACK_URL, params)
    tampered = await client.post(
        "/v1/receipts/twilio", data={**params, "MessageStatus": "failed"}, headers={"X-Twilio-Signature": signature}
    )

    assert [r.status for r in (unsigned, forged, signed_for_internal_url, tampered)] == [403, 403, 403, 403]
    row = await delivery(client, sms["id"])
    assert row["status"] == "sent" and not await receipts_of(client, sms["id"])


async def test_a_callback_signed_with_a_query_string_is_checked_with_it(texted, twilio_fake) -> None:
    client, sms = texted
    params = callback_params(sms, "delivered")
    signature = RequestValidator(twilio_fake.auth_token).compute_signature(PUBLIC_CALLBACK_URL + "?attempt=2", params)

    headers = {"X-Twilio-Signature": signature}
    response = await client.post("/v1/receipts/twilio?attempt=2", data=params, headers=headers)
    moved = await client.post("/v1/receipts/twilio?attempt=3", data=params, headers=headers)

    assert (response.status, moved.status) == (200, 403)


async def test_a_report_for_a_message_not_yet_known_is_kept_and_logged_without_the_phone_number(
    texted, twilio_fake, caplog
) -> None:
    client, sms = texted
    params = {**callback_params(sms, "delivered"), "MessageSid": "SM" + "f" * 32, "SmsSid": "SM" + "f" * 32}

    with caplog.at_level(logging.INFO, logger="herald"):
        response = await twilio_reports(client, twilio_fake, params)

    assert response.status == 202
    assert "SM" + "f" * 32 in caplog.text
    herald_lines = [r.getMessage() for r in caplog.records if r.name.startswith("herald")]
    assert herald_lines and not any(PHONE.search(line) or EMAIL.search(line) for line in herald_lines)
    assert sms["address"] not in caplog.text
    async with client.app[appkeys.STORE].read() as conn:
        kept = (await conn.execute(select(receipts).where(receipts.c.provider_id == "SM" + "f" * 32))).mappings().all()
    assert [(r["delivery_id"], r["status"]) for r in kept] == [(None, "delivered")]


async def test_a_report_that_arrives_before_the_sid_is_stored_is_applied_when_it_is(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    """Twilio may call the StatusCallback before our `create` call has returned with the SID."""
    client = await start(aiohttp_client, wired_settings(db_url, smtp_sink, twilio_fake))
    early: list[int] = []

    async def report_first(created: dict[str, Any]) -> None:
        params = callback_params({"provider_id": created["sid"], "address": created["to"]}, "delivered")
        early.append((await twilio_reports(client, twilio_fake, params)).status)

    twilio_fake.before_reply = report_first
    await publish_to(client, "tokai-logistics")

    async def delivered() -> list[dict[str, Any]] | None:
        found = await rows(client, deliveries.c.channel == "sms")
        return found if found and all(r["status"] == "delivered" for r in found) else None

    [sms] = await wait_until(delivered, timeout=30)
    assert early == [202]
    assert sms["provider_status"] == "delivered" and sms["delivered_at"] is not None
    assert [(r["source"], r["status"]) for r in await receipts_of(client, sms["id"])] == [("twilio", "delivered")]


async def test_an_acknowledged_delivery_stays_acknowledged_after_a_late_callback(texted, twilio_fake) -> None:
    client, sms = texted
    token = client.app[appkeys.ACK_SIGNER].token_for(sms["id"], sms["created_at"])
    assert (await client.post(f"/ack/{token}")).status == 200

    await twilio_reports(client, twilio_fake, callback_params(sms, "undelivered", 30003))

    row = await delivery(client, sms["id"])
    assert row["status"] == "acknowledged" and row["provider_status"] == "undelivered"


# --- bounces ----------------------------------------------------------------------------------------


@pytest.fixture
async def mailed(aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake) -> Any:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await publish_to(client, "tokai-logistics")
    return client


async def test_a_postfix_dsn_bounces_the_delivery_it_names_by_message_id(mailed) -> None:
    [email] = await sent(mailed, "email")
    assert email["provider_id"].startswith("250")
    raw = dsn("postfix-5.1.1-user-unknown.eml", **{"<herald.n1.c1.email.0@herald.example.com>": email["message_id"]})

    response = await bounce(mailed, raw)

    assert response.status == 200, await response.text()
    assert (await response.json())["bounce_status"] == "5.1.1"
    row = await delivery(mailed, email["id"])
    assert row["status"] == "bounced" and row["error_code"] == "5.1.1"
    assert "User unknown" in row["last_error"]
    [receipt] = await receipts_of(mailed, email["id"])
    assert (receipt["source"], receipt["status"], receipt["error_code"]) == ("bounce", "bounced", "5.1.1")
    others = await rows(mailed, deliveries.c.id != email["id"])
    assert others and all(r["status"] != "bounced" for r in others)


async def test_the_same_bounce_twice_is_recorded_once(mailed) -> None:
    [email] = await sent(mailed, "email")
    raw = dsn("postfix-5.1.1-user-unknown.eml", **{"<herald.n1.c1.email.0@herald.example.com>": email["message_id"]})

    first, again = await bounce(mailed, raw), await bounce(mailed, raw, content_type="text/plain")

    assert (first.status, again.status) == (200, 200)
    assert (await again.json())["duplicate"] is True
    assert len(await receipts_of(mailed, email["id"])) == 1


async def test_a_delayed_dsn_is_recorded_and_the_delivery_left_as_it_is(mailed) -> None:
    [email] = await sent(mailed, "email")
    raw = dsn("exim-4.4.1-delayed.eml", **{"<herald.n1.c5.email.0@herald.example.com>": email["message_id"]})

    response = await bounce(mailed, raw, content_type="text/plain")

    assert response.status == 200
    assert (await response.json())["permanent"] is False
    row = await delivery(mailed, email["id"])
    assert row["status"] == "sent" and row["error_code"] is None
    [receipt] = await receipts_of(mailed, email["id"])
    assert (receipt["status"], receipt["error_code"]) == ("delayed", "4.4.1")


async def test_a_verp_return_path_finds_the_delivery_without_the_original_headers(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, wired_settings(sqlite_url, smtp_sink, twilio_fake))
    await publish_to(client, "pacific-freight")
    [email] = await sent(client, "email")
    raw = dsn("verp-5.2.2-mailbox-full.eml", **{"bounces+d1@": f"bounces+d{email['id']}@"})

    response = await bounce(client, raw)

    assert response.status == 200, await response.text()
    row = await delivery(client, email["id"])
    assert row["status"] == "bounced" and row["error_code"] == "5.2.2"
    assert "Mailbox full" in row["last_error"]


async def test_bounce_reports_need_an_ingest_token_and_a_dsn_of_ours(mailed) -> None:
    [email] = await sent(mailed, "email")
    fixture_id = "<herald.n1.c1.email.0@herald.example.com>"
    ours = dsn("postfix-5.1.1-user-unknown.eml", **{fixture_id: email["message_id"]})
    not_ours = dsn("postfix-5.1.1-user-unknown.eml", **{fixture_id: "<x@elsewhere.example>"})

    anonymous = await mailed.post("/v1/receipts/bounce", data=ours, headers={"Content-Type": "message/rfc822"})
    operator = await bounce(mailed, ours, scope="operator")
    as_json = await bounce(mailed, ours, content_type="application/json")
    plain_mail = await bounce(mailed, b"From: a\r\nSubject: hello\r\n\r\njust a message\r\n")
    unknown = await bounce(mailed, not_ours)

    statuses = [anonymous.status, operator.status, as_json.status, plain_mail.status, unknown.status]
    assert statuses == [401, 403, 415, 422, 404]
    assert (await delivery(mailed, email["id"]))["status"] == "sent"
    admin = await bounce(mailed, ours, scope="admin")
    assert admin.status == 200


async def test_a_kept_report_whose_message_never_appears_is_forgotten_after_two_days(texted) -> None:
    client, _ = texted
    now = time.time()
    async with client.app[appkeys.STORE].begin() as conn:
        await receipt_store.keep_early_report(conn, "SM-never", "twilio", "delivered", None, now - 3 * 86400)
        await receipt_store.keep_early_report(conn, "SM-recent", "twilio", "sent", None, now - 3600)
        await receipt_store.keep_early_report(conn, "SM-new", "twilio", "queued", None, now)
    async with client.app[appkeys.STORE].read() as conn:
        kept = (await conn.execute(select(receipts.c.provider_id).where(receipts.c.delivery_id.is_(None)))).scalars()
        assert sorted(kept) == ["SM-new", "SM-recent"]
