"""Inbound mail: a partner's reply to a notice, as the mail server pipes it in (raw RFC 5322).

The stdlib parser decodes headers (RFC 2047) and bodies in any declared charset, ISO-2022-JP
included. What Herald keeps as the question is the reply without the notice it quotes: mail
clients put the quote below an attribution line ("On … wrote:", "2026年11月30日(月) 10:00 … :"),
a separator ("-----Original Message-----", "-----元のメッセージ-----"), an Outlook header block
("From:/差出人:" then "Sent:/送信日時:"), or lines starting with ">".
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]")

_ATTRIBUTION = re.compile(
    r"""^\s*(
        on\s.*wrote:\s*$                                   # On Mon, 30 Nov 2026, X <x@y> wrote:
      | .*\d{4}[/年-]\s*\d{1,2}[/月-]\s*\d{1,2}.*[<@].*[:：]\s*$  # 2026年11月30日(月) 10:00 Herald <…>:
      | .*(のメッセージ|さんは書きました|wrote)\s*[:：]\s*$
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(original message|forwarded message|元のメッセージ|転送されたメッセージ|転送メッセージ)",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*(from|差出人|送信者)\s*[:：]", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(r"^\s*(sent|date|送信日時|日時)\s*[:：]", re.IGNORECASE)
_SIGNATURE = "-- "
_TAGS = re.compile(r"<[^>]+>")
_BLOCKQUOTE = re.compile(r"<blockquote.*?</blockquote>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(br|/p|/div)\s*/?>", re.IGNORECASE)


class NotAMail(ValueError):
    """The body is not an RFC 5322 message (no From header, no text)."""


@dataclass(frozen=True)
class InboundMail:
    message_id: str | None
    sender: str | None  # the From address, lower-cased
    subject: str
    recipients: tuple[str, ...]  # every address the mail was for, lower-cased
    references: tuple[str, ...]  # Message-IDs it replies to: In-Reply-To first, then References
    text: str  # the reply without the quoted notice
    language: str  # "ja" when the reply is written in Japanese, else "en"


def parse_mail(raw: bytes) -> InboundMail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage):  # always true with policy.default; narrows the type
        raise NotAMail("not an RFC 5322 message")
    senders = [address for _, address in getaddresses([str(message.get("From", ""))]) if "@" in address]
    if not senders:
        raise NotAMail("the mail has no From address")
    text = strip_quoted(body_text(message))
    recipients = getaddresses([str(value) for name in RECIPIENT_HEADERS for value in message.get_all(name, [])])
    references = MESSAGE_ID.findall(f"{message.get('In-Reply-To', '')} {message.get('References', '')}")
    return InboundMail(
        message_id=str(message["Message-ID"]).strip() if message["Message-ID"] else None,
        sender=senders[0].lower(),
        subject=str(message.get("Subject", "")).strip(),
        recipients=tuple(dict.fromkeys(address.lower() for _, address in recipients if "@" in address)),
        references=tuple(dict.fromkeys(references)),
        text=text,
        language="ja" if JAPANESE.search(text) else "en",
    )


def body_text(message: EmailMessage) -> str:
    """The plain-text body, or the HTML body as text (its quoted blockquotes dropped)."""
    part = message.get_body(preferencelist=("plain", "html"))
    if not isinstance(part, EmailMessage):
        return ""
    content = part.get_content()
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        content = _BLOCKQUOTE.sub("", content)
        content = html.unescape(_TAGS.sub("", _BREAKS.sub("\n", content)))
    return content.replace("\r\n", "\n")


def strip_quoted(text: str) -> str:
    """The part of a reply its author wrote: everything above the quote of the message replied to,
    without inline quoted lines and the signature."""
    lines = text.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line == _SIGNATURE or _SEPARATOR.match(line) or _ATTRIBUTION.match(line):
            break
        if line.lstrip().lower().startswith("on ") and _ATTRIBUTION.match(f"{line} {following}"):
            break  # an attribution wrapped over two lines
        if _OUTLOOK_FROM.match(line) and _OUTLOOK_SENT.match(following):
            break
        if line.lstrip().startswith((">", "＞")):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip()
