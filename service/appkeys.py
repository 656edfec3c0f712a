"""The typed keys under which the app keeps its parts (aiohttp's `web.AppKey`, checked by mypy)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from channels.base import Channel
    from service.acks import AckSigner
    from service.config_checks import ConfigWarning
    from service.dispatcher import Dispatcher
    from service.escalation import EscalationScheduler
    from service.ingest.lifecycle import DampingFlusher
    from service.ingest.writer import IngestWriter
    from service.metrics import Metrics
    from service.principals import Principal
    from service.promises import PromiseChecker
    from service.questions import QuestionReminders, ReplyTokens
    from service.scheduled import NoticeScheduler
    from service.settings import Settings
    from service.store import Store

AlternateAuth = Callable[[web.Request], Awaitable["Principal | None"]]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
CONFIG_WARNINGS: web.AppKey[list[ConfigWarning]] = web.AppKey("config_warnings")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
ACK_SIGNER: web.AppKey[AckSigner] = web.AppKey("ack_signer")
# Signs the partner-page links every notice carries (service/partner_page.py).
PAGE_SIGNER: web.AppKey[AckSigner] = web.AppKey("page_signer")
CHANNELS: web.AppKey[dict[str, Channel]] = web.AppKey("channels")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
DISPATCHER_WAKE: web.AppKey[Callable[[], None]] = web.AppKey("dispatcher_wake")
INGEST_WRITER: web.AppKey[IngestWriter] = web.AppKey("ingest_writer")
DAMPING_FLUSHER: web.AppKey[DampingFlusher] = web.AppKey("damping_flusher")
ESCALATION_SCHEDULER: web.AppKey[EscalationScheduler] = web.AppKey("escalation_scheduler")
PROMISE_CHECKER: web.AppKey[PromiseChecker] = web.AppKey("promise_checker")
REPLY_TOKENS: web.AppKey[ReplyTokens] = web.AppKey("reply_tokens")
QUESTION_REMINDERS: web.AppKey[QuestionReminders] = web.AppKey("question_reminders")
NOTICE_SCHEDULER: web.AppKey[NoticeScheduler] = web.AppKey("notice_scheduler")
# The OpenAPI document, built from the router on first request (service/api/docs.py).
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
# Per scope, a second way to authenticate (e.g. an HMAC-signed body for the ingest scope).
ALTERNATE_AUTH: web.AppKey[dict[str, AlternateAuth]] = web.AppKey("alternate_auth")
