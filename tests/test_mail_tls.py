"""Mail to a real relay goes over TLS with a verified certificate and SMTP AUTH (aiosmtpd with a
self-signed CA made by trustme stands in for the relay)."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import dkim
import pytest
import trustme

from channels.base import OutboundMessage, TransientError
from channels.email import EmailChannel
from service.settings import SettingsError, load_settings
from tests.fakes.smtp import SmtpSink
from tests.helpers import ROOT

# aiosmtpd only counts STARTTLS as TLS and warns when AUTH is allowed on its implicit-TLS port.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

LOGIN = ("herald", "123456")  # a numeric-looking password, as it arrives from HERALD_SMTP__PASSWORD


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def relay(ca: trustme.CA, tls: Literal["starttls", "implicit"]) -> Iterator[SmtpSink]:
    with SmtpSink(tls=tls, ssl_context=server_context(ca), login=LOGIN) as sink:
        yield sink


@pytest.fixture
def starttls_relay(ca: trustme.CA) -> Iterator[SmtpSink]:
    yield from relay(ca, "starttls")


@pytest.fixture
def implicit_relay(ca: trustme.CA) -> Iterator[SmtpSink]:
    yield from relay(ca, "implicit")


def message(n: int = 1) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=n,
        message_id=f"<d{n}@herald.example.com>",
        to="yamada@partner.example.jp",
        subject="【障害】受注システム停止のお知らせ",
        text="受注システムが停止しています。\n",
    )


def channel(sink: SmtpSink, tls: Literal["none", "starttls", "implicit"], **options: object) -> EmailChannel:
    return EmailChannel(
        "127.0.0.1",
        sink.port,
        "Herald <herald@sample.example.com>",
        tls=tls,
        timeout=5.0,
        **options,  # type: ignore[arg-type]
    )


async def test_starttls_with_auth_delivers_over_an_encrypted_session(starttls_relay: SmtpSink, ca_file: str) -> None:
    email = channel(starttls_relay, "starttls", username=LOGIN[0], password=LOGIN[1], ca_file=ca_file)
    try:
        await email.send(message())
    finally:
        await email.close()
    [received] = await starttls_relay.wait_for(1)
    assert received.encrypted and received.login == "herald"
    assert received.message["Subject"] == "【障害】受注システム停止のお知らせ"


async def test_implicit_tls_with_auth_delivers(implicit_relay: SmtpSink, ca_file: str) -> None:
    email = channel(implicit_relay, "implicit", username=LOGIN[0], password=LOGIN[1], ca_file=ca_file, pool_size=1)
    try:
        await email.send(message())
        await email.send(message(2))  # the pooled TLS connection is reused
    finally:
        await email.close()
    received = await implicit_relay.wait_for(2)
    assert all(r.encrypted and r.login == "herald" for r in received)
    assert implicit_relay.connections == 1


async def test_an_unknown_certificate_is_refused_by_default(starttls_relay: SmtpSink) -> None:
    email = channel(starttls_relay, "starttls", username=LOGIN[0], password=LOGIN[1])  # system CAs only
    try:
        with pytest.raises(TransientError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await email.send(message())
    finally:
        await email.close()
    assert starttls_relay.messages == []


async def test_a_certificate_for_another_host_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.org").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SmtpSink(tls="implicit", ssl_context=context, login=LOGIN) as sink:
        email = channel(sink, "implicit", username=LOGIN[0], password=LOGIN[1], ca_file=str(ca_file))
        try:
            with pytest.raises(TransientError, match=r"match|mismatch"):
                await email.send(message())
        finally:
            await email.close()
        assert sink.messages == []


async def test_a_wrong_password_is_reported_and_retried(starttls_relay: SmtpSink, ca_file: str) -> None:
    email = channel(starttls_relay, "starttls", username=LOGIN[0], password="wrong", ca_file=ca_file)
    try:
        with pytest.raises(TransientError, match="authentication failed") as failure:
            await email.send(message())
    finally:
        await email.close()
    assert failure.value.code == "535"
    assert starttls_relay.messages == []


async def test_without_starttls_the_relay_refuses_to_take_mail(starttls_relay: SmtpSink) -> None:
    email = channel(starttls_relay, "none")
    try:
        with pytest.raises(TransientError):
            await email.send(message())
    finally:
        await email.close()
    assert starttls_relay.messages == []


def dkim_key() -> tuple[bytes, str]:
    """A private key in PEM and the TXT record that would publish its public half."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


async def test_dkim_signed_mail_verifies_against_the_published_key(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    pem, record = dkim_key()
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    settings = load_settings(
        ROOT / "config" / "herald.toml",
        environ={
            "HERALD_SMTP__HOST": "127.0.0.1",
            "HERALD_SMTP__PORT": str(smtp_sink.port),
            "HERALD_SMTP__TLS": "none",
            "HERALD_SMTP__DKIM_DOMAIN": "sample.example.com",
            "HERALD_SMTP__DKIM_SELECTOR": "herald2026",
            "HERALD_SMTP__DKIM_PRIVATE_KEY_FILE": str(key_file),
        },
    )
    email = EmailChannel.from_settings(settings.smtp)
    try:
        await email.send(message())
    finally:
        await email.close()
    [received] = await smtp_sink.wait_for(1)
    assert received.raw.startswith(b"DKIM-Signature: ")
    assert "d=sample.example.com" in received.message["DKIM-Signature"]

    def published(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"herald2026._domainkey.sample.example.com."
        return record.encode()

    assert dkim.verify(received.raw, dnsfunc=published)
    tampered = received.raw.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=published)


def test_dkim_needs_its_domain_selector_and_key_together() -> None:
    with pytest.raises(SettingsError, match="DKIM needs"):
        load_settings(ROOT / "config" / "herald.toml", environ={"HERALD_SMTP__DKIM_DOMAIN": "sample.example.com"})
