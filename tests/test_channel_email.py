"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from channels.base import OutboundMessage, PermanentError, TransientError
from channels.email import EmailChannel, classify_smtp_error
from tests.fakes.smtp import SmtpSink

SUBJECT = "【障害】受注システム停止のお知らせ（第1報）"
TEXT = "取引先各位\n\n受注システムが停止しています。復旧見込みは 15:00 です。\n"
HTML = "<p>取引先各位</p><p>受注システムが停止しています。復旧見込みは <b>15:00</b> です。</p>"


def notice(delivery_id: int = 1, **overrides: object) -> OutboundMessage:
    fields: dict[str, object] = {
        "delivery_id": delivery_id,
        "message_id": f"<d{delivery_id}.n45@herald.example.com>",
        "to": "yamada@partner.example.jp",
        "text": TEXT,
        "subject": SUBJECT,
        "html": HTML,
        "reply_to": "oncall@sample.example.com",
        "headers": {"List-Unsubscribe": "<https://herald.example.com/unsubscribe/abc>"},
    }
    fields.update(overrides)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def channel(smtp_sink: SmtpSink):
    email = EmailChannel(
        "127.0.0.1",
        smtp_sink.port,
        "株式会社サンプル 障害窓口 <herald@sample.example.com>",
        pool_size=2,
        timeout=5.0,
    )
    yield email
    await email.close()


async def test_partner_receives_japanese_notice_with_our_headers(channel, smtp_sink):
    await channel.send(notice())

    [(mail_from, rcpt_tos, received)] = await smtp_sink.wait_for(1)
    assert mail_from == "herald@sample.example.com"
    assert rcpt_tos == ["yamada@partner.example.jp"]
    assert received["From"].addresses[0].display_name == "株式会社サンプル 障害窓口"
    assert received["To"] == "yamada@partner.example.jp"
    assert received["Subject"] == SUBJECT
    assert received["Message-ID"] == "<d1.n45@herald.example.com>"
    assert received["Reply-To"] == "oncall@sample.example.com"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["List-Unsubscribe"] == "<https://herald.example.com/unsubscribe/abc>"
    assert received["Date"] is not None
    assert received.get_content_type() == "multipart/alternative"
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT
    assert "復旧見込みは <b>15:00</b> です。" in received.get_body(("html",)).get_content()


async def test_headers_go_out_7bit_so_any_relay_accepts_them(channel, smtp_sink):
    await channel.send(notice())

    [received] = await smtp_sink.wait_for(1)
    assert received.raw.isascii()
    assert b"=?utf-8?" in received.raw


async def test_send_returns_the_servers_reply_to_data(channel, smtp_sink):
    result = await channel.send(notice())

    await smtp_sink.wait_for(1)
    assert result.provider_id == smtp_sink.replies[0]
    assert result.provider_id.startswith("250 2.0.0 Ok: queued as ")


async def test_a_burst_of_notices_reuses_the_pooled_connections(channel, smtp_sink):
    await asyncio.gather(*(channel.send(notice(i)) for i in range(1, 11)))

    await smtp_sink.wait_for(10)
    assert smtp_sink.connections <= channel.pool_size
    assert {m.message["Message-ID"] for m in smtp_sink.messages} == {
        f"<d{i}.n45@herald.example.com>" for i in range(1, 11)
    }


async def test_a_critical_notice_takes_the_next_free_connection_ahead_of_queued_bulk(smtp_sink):
    """A broadcast keeps more messages waiting than there are connections; a critical one goes
    out on the next connection that frees, not after them."""
    channel = EmailChannel("127.0.0.1", smtp_sink.port, "herald@sample.example.com", pool_size=1)
    released = smtp_sink.hold()
    first = asyncio.create_task(channel.send(notice(1)))
    await smtp_sink.wait_for(1)  # the only connection is busy with it
    queued = [asyncio.create_task(channel.send(notice(i))) for i in range(2, 6)]
    critical = asyncio.create_task(channel.send(notice(99, urgent=True)))
    await asyncio.sleep(0)  # one turn: each send composes its message and queues for the connection
    released.set()

    await asyncio.gather(first, critical, *queued)
    arrived = [m.message["Message-ID"] for m in smtp_sink.messages]
    assert arrived[:2] == ["<d1.n45@herald.example.com>", "<d99.n45@herald.example.com>"]
    assert arrived[2:] == [f"<d{i}.n45@herald.example.com>" for i in range(2, 6)]
    await channel.close()


async def test_a_send_cancelled_while_queued_gives_up_its_turn_not_the_connection(smtp_sink):
    channel = EmailChannel("127.0.0.1", smtp_sink.port, "herald@sample.example.com", pool_size=1)
    released = smtp_sink.hold()
    first = asyncio.create_task(channel.send(notice(1)))
    await smtp_sink.wait_for(1)
    abandoned = asyncio.create_task(channel.send(notice(2)))
    await asyncio.sleep(0)  # queued for the connection
    abandoned.cancel()
    released.set()

    await first
    await channel.send(notice(3))
    assert abandoned.cancelled()
    assert [m.message["Message-ID"] for m in smtp_sink.messages] == [
        "<d1.n45@herald.example.com>",
        "<d3.n45@herald.example.com>",
    ]
    assert smtp_sink.connections == 1
    await channel.close()


async def test_greylisting_451_is_transient_and_the_connection_is_kept(smtp_sink):
    channel = EmailChannel("127.0.0.1", smtp_sink.port, "herald@sample.example.com", pool_size=1)
    await channel.send(notice(1))
    smtp_sink.fail_next(1, code=451, text="4.7.1 greylisted, try again")

    with pytest.raises(TransientError) as failure:
        await channel.send(notice(2))
    await channel.send(notice(3))

    assert failure.value.code == "451"
    assert "greylisted" in failure.value.reason
    assert smtp_sink.connections == 1
    assert [m.message["Message-ID"] for m in smtp_sink.messages] == [
        "<d1.n45@herald.example.com>",
        "<d3.n45@herald.example.com>",
    ]
    await channel.close()


async def test_unknown_mailbox_550_at_rcpt_is_permanent_with_the_code(channel, smtp_sink):
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", on="RCPT")

    with pytest.raises(PermanentError) as failure:
        await channel.send(notice())

    assert failure.value.code == "550"
    assert smtp_sink.messages == []


async def test_later_messages_on_a_kept_connection_carry_their_own_envelope_and_refusals(smtp_sink):
    """A connection kept for later messages: each names its own sender and recipient, a refused
    recipient is refused for good and the connection carries the next message."""
    channel = EmailChannel("127.0.0.1", smtp_sink.port, "障害窓口 <herald+ops@sample.example.com>", pool_size=1)
    await channel.send(notice(1))
    await channel.send(notice(2, to="o'brien+jp@partner.example.jp"))
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", on="RCPT")
    with pytest.raises(PermanentError) as refused:
        await channel.send(notice(3, to="gone@partner.example.jp"))
    await channel.send(notice(4, to="Yamada Taro <yamada@partner.example.jp>"))
    await channel.close()

    assert refused.value.code == "550"
    assert [(m.mail_from, m.rcpt_tos) for m in smtp_sink.messages] == [
        ("herald+ops@sample.example.com", ["yamada@partner.example.jp"]),
        ("herald+ops@sample.example.com", ["o'brien+jp@partner.example.jp"]),
        ("herald+ops@sample.example.com", ["yamada@partner.example.jp"]),
    ]
    assert smtp_sink.connections == 1


async def test_rejected_content_554_at_data_is_permanent(channel, smtp_sink):
    smtp_sink.fail_next(1, code=554, text="5.7.1 rejected")

    with pytest.raises(PermanentError) as failure:
        await channel.send(notice())

    assert failure.value.code == "554"


async def test_mail_server_outage_is_transient_and_sending_resumes_after(channel, smtp_sink):
    await channel.send(notice(1))
    smtp_sink.down()

    with pytest.raises(TransientError):
        await channel.send(notice(2))

    smtp_sink.up()
    await channel.send(notice(3))
    assert len(await smtp_sink.wait_for(2)) == 2


async def test_server_answering_421_is_transient(channel, smtp_sink):
    smtp_sink.down(refuse=False)

    with pytest.raises(TransientError) as failure:
        await channel.send(notice())

    assert failure.value.code == "421"
    assert smtp_sink.connections == 1


async def test_subject_with_line_break_cannot_inject_a_bcc(channel, smtp_sink):
    await channel.send(notice(subject="障害のお知らせ\r\nBcc: x@evil.example"))

    [(_, rcpt_tos, received)] = await smtp_sink.wait_for(1)
    assert received["Bcc"] is None
    assert rcpt_tos == ["yamada@partner.example.jp"]
    assert received["Subject"] == "障害のお知らせ Bcc: x@evil.example"


@pytest.mark.parametrize(
    "overrides",
    [
        {"to": "yamada@partner.example.jp\r\nBcc: x@evil.example"},
        {"to": "yamada@partner.example.jp, x@evil.example"},
        {"to": "not an address"},
        {"reply_to": "oncall@sample.example.com\nBcc: x@evil.example"},
        {"headers": {"List-Unsubscribe": "<https://x>\r\nBcc: x@evil.example"}},
        {"headers": {"Bcc": "x@evil.example"}},
    ],
)
async def test_addresses_and_headers_with_injection_are_refused_for_good(channel, smtp_sink, overrides):
    with pytest.raises(PermanentError):
        await channel.send(notice(**overrides))

    assert smtp_sink.messages == []
    assert smtp_sink.connections == 0


async def test_text_only_notice_is_a_single_utf8_part(channel, smtp_sink):
    await channel.send(notice(html=None))

    [received] = await smtp_sink.wait_for(1)
    assert received.message.get_content_type() == "text/plain"
    assert received.message.get_content().replace("\r\n", "\n") == TEXT


def test_connection_level_failures_are_transient():
    import aiosmtplib

    for exc in (
        aiosmtplib.SMTPServerDisconnected("gone"),
        aiosmtplib.SMTPConnectError("refused"),
        aiosmtplib.SMTPTimeoutError("slow"),
        ConnectionResetError(),
        TimeoutError(),
    ):
        assert isinstance(classify_smtp_error(exc), TransientError), exc
