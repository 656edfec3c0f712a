"""The SMS channel: the real twilio client talking to a local Twilio-compatible server."""

from __future__ import annotations

import logging

import pytest

from channels.base import OutboundMessage, PermanentError, TransientError
from channels.sms import SmsChannel, rewrite_twilio_url
from tests.fakes.twilio import TwilioFake

FROM = "+15005550006"
CALLBACK = "https://herald.example.com/receipts/twilio"
TEXT = "【障害】受注システム停止中。詳細: https://status.example.com/i/42"


def sms(to: str = "+819012345678", delivery_id: int = 1) -> OutboundMessage:
    return OutboundMessage(delivery_id, f"<d{delivery_id}.n2@herald.example.com>", to, TEXT)


def channel_for(fake: TwilioFake, **overrides: object) -> SmsChannel:
    options: dict[str, object] = {
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "from_number": FROM,
        "api_base_url": fake.base_url,
        "status_callback": CALLBACK,
        "timeout": 5.0,
    }
    options.update(overrides)
    return SmsChannel(**options)  # type: ignore[arg-type]


@pytest.fixture
async def channel(twilio_fake: TwilioFake):
    sms_channel = channel_for(twilio_fake)
    yield sms_channel
    await sms_channel.close()


async def test_partner_gets_an_sms_from_our_number_with_a_status_callback(channel, twilio_fake):
    result = await channel.send(sms())

    [request] = twilio_fake.requests
    assert request == {
        "To": "+819012345678",
        "From": FROM,
        "Body": TEXT,
        "StatusCallback": CALLBACK,
    }
    [created] = await twilio_fake.wait_for(1)
    assert result.provider_id == created["sid"]
    assert result.provider_id.startswith("SM") and len(result.provider_id) == 34
    assert result.provider_status == "queued"


async def test_messaging_service_is_used_instead_of_a_from_number(twilio_fake):
    channel = channel_for(twilio_fake, from_number=None, messaging_service_sid="MG" + "a" * 32)
    try:
        await channel.send(sms())
    finally:
        await channel.close()

    [request] = twilio_fake.requests
    assert request["MessagingServiceSid"] == "MG" + "a" * 32
    assert "From" not in request


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_twilio_overload_or_outage_is_transient(channel, twilio_fake, status):
    twilio_fake.fail_next(1, status=status)

    with pytest.raises(TransientError):
        await channel.send(sms())

    await channel.send(sms(delivery_id=2))
    assert len(await twilio_fake.wait_for(1)) == 1


async def test_invalid_number_is_permanent_with_twilio_code_21211(channel, twilio_fake):
    with pytest.raises(PermanentError) as failure:
        await channel.send(sms(to="090-1234-5678"))

    assert failure.value.code == "21211"
    assert twilio_fake.messages == []


async def test_unsubscribed_recipient_is_permanent_with_code_21610(channel, twilio_fake):
    twilio_fake.reject_numbers({"+819011112222"}, code=21610)

    with pytest.raises(PermanentError) as failure:
        await channel.send(sms(to="+819011112222"))

    assert failure.value.code == "21610"


async def test_twilio_unreachable_is_transient(twilio_fake):
    await twilio_fake.stop()
    channel = channel_for(twilio_fake)
    try:
        with pytest.raises(TransientError):
            await channel.send(sms())
    finally:
        await channel.close()


async def test_wrong_auth_token_is_reported_with_twilio_code(twilio_fake):
    channel = channel_for(twilio_fake, auth_token="stale-token")
    try:
        with pytest.raises(TransientError) as failure:
            await channel.send(sms())
    finally:
        await channel.close()

    assert failure.value.code == "20003"
    assert twilio_fake.requests == []


async def test_twilio_request_logs_do_not_reach_the_log_at_info(channel, twilio_fake, caplog):
    with caplog.at_level(logging.INFO):
        await channel.send(sms())

    assert "+819012345678" not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("twilio")]


def test_only_twilio_hosts_are_redirected_to_the_configured_base_url():
    base = "http://127.0.0.1:8999"

    assert (
        rewrite_twilio_url("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json", base)
        == "http://127.0.0.1:8999/2010-04-01/Accounts/AC1/Messages.json"
    )
    assert rewrite_twilio_url("https://example.com/x", base) == "https://example.com/x"
