"""The app factory: settings in, a whole Herald out (API, store, channels, dispatcher)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from channels.base import Channel, OutboundMessage
from channels.sandbox import SandboxChannel
from service import appkeys, compose, directory
from service.acks import AckSigner, ack_link
from service.api import (
    acks,
    contact_requests,
    deliveries,
    docs,
    drills,
    health,
    incidents,
    observe,
    partners,
    questions,
    receipts,
    reports,
    schedule,
    suppressions,
    webhooks,
)
from service.api.auth import TOKENS, TokenTable, auth_middleware
from service.api.errors import error_middleware
from service.config_checks import configuration_warnings, log_warnings
from service.dispatcher import Dispatcher
from service.escalation import escalation_ctx
from service.ingest.lifecycle import ingest_ctx
from service.metrics import Metrics
from service.partner_page import page_link, page_signer
from service.promises import promise_ctx
from service.questions import ReplyTokens, questions_ctx
from service.scheduled import scheduler_ctx
from service.settings import Settings, SettingsError
from service.snapshot_refresh import snapshot_ctx
from service.store import Store
from service.store import sandbox as sandbox_store
from service.template_check import check_templates
from service.web import partner as partner_web
from service.web.console import add_console

log = logging.getLogger("herald.app")

ROUTE_MODULES = [
    health,
    observe,
    incidents,
    schedule,
    drills,
    partners,
    deliveries,
    reports,
    webhooks,
    receipts,
    acks,
    questions,
    docs,
    suppressions,
    contact_requests,
    partner_web,
]


def create_app(settings: Settings) -> web.Application:
    _check_own_templates(settings)
    app = web.Application(
        middlewares=[observe.request_context, error_middleware, auth_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.CONFIG_WARNINGS] = configuration_warnings(settings)
    app[TOKENS] = TokenTable(settings)
    app[appkeys.METRICS] = Metrics()
    app[appkeys.DISPATCHER_WAKE] = lambda: None
    app[appkeys.OPENAPI] = {}  # the contract, built from the router on first request (service/api/docs.py)
    app[appkeys.ACK_SIGNER] = AckSigner.from_settings(settings)
    app[appkeys.PAGE_SIGNER] = page_signer(settings)
    app[appkeys.REPLY_TOKENS] = ReplyTokens.from_settings(settings)
    for module in ROUTE_MODULES:
        app.router.add_routes(module.routes)
    add_console(app, settings)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_dispatcher_ctx)
    app.cleanup_ctx.append(ingest_ctx)
    app.cleanup_ctx.append(escalation_ctx)
    app.cleanup_ctx.append(promise_ctx)
    app.cleanup_ctx.append(questions_ctx)
    app.cleanup_ctx.append(scheduler_ctx)
    app.cleanup_ctx.append(snapshot_ctx)
    return app


def _check_own_templates(settings: Settings) -> None:
    """Own templates are rendered in every kind and language before Herald accepts anything."""
    if not settings.templates.directory:
        return
    problems = check_templates(settings, Path(settings.templates.directory))
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise SettingsError(f"templates.directory {settings.templates.directory}:\n{listed}")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[appkeys.SETTINGS]
    log_warnings(app[appkeys.CONFIG_WARNINGS])
    store = Store(settings.database.url, settings.database.pool_size, settings.database.busy_timeout)
    if settings.database.auto_migrate:
        await store.upgrade()
    if settings.directory.import_on_start:
        await directory.import_if_empty(store, settings.directory.path)
    app[appkeys.STORE] = store
    compose.renderer(settings)  # compile every template now, not during the first incident
    yield
    await store.close()


def sandbox_channels(store: Store) -> dict[str, Channel]:
    """Channels that only record each message in the database (`sandbox_messages`)."""

    async def record(channel: str, message: OutboundMessage) -> None:
        async with store.begin() as conn:
            await sandbox_store.record_message(
                conn,
                channel,
                message.delivery_id,
                message.to,
                message.subject,
                message.text,
                message.html,
                message.message_id,
            )

    return {name: SandboxChannel(name, record) for name in ("email", "sms", "webhook")}


def build_channels(settings: Settings, store: Store) -> dict[str, Channel]:
    """Real channels where configured; otherwise the sandbox, so a fresh machine can run drills."""
    channels = sandbox_channels(store)
    if settings.email_configured:
        from channels.email import EmailChannel

        channels["email"] = EmailChannel.from_settings(settings.smtp)
    if settings.sms_configured:
        from channels.sms import SmsChannel

        callback = settings.server.public_base_url.rstrip("/") + "/v1/receipts/twilio"
        channels["sms"] = SmsChannel.from_settings(settings.twilio, status_callback=callback)
    if settings.webhook.secret is not None:
        from channels.webhook import WebhookChannel

        channels["webhook"] = WebhookChannel(
            settings.webhook.secret.get_secret_value(), settings.webhook.timeout, settings.webhook.allow_http
        )
    return channels


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[appkeys.SETTINGS]
    channels = build_channels(settings, app[appkeys.STORE])
    app[appkeys.CHANNELS] = channels
    dispatcher = Dispatcher(
        app[appkeys.STORE],
        settings,
        channels,
        ack_link=ack_link(settings, app[appkeys.ACK_SIGNER]),
        page_link=page_link(settings, app[appkeys.PAGE_SIGNER]),
        observer=app[appkeys.METRICS].observe_attempt,
        reply_address=app[appkeys.REPLY_TOKENS].address_for,
        drill_sandbox=sandbox_channels(app[appkeys.STORE]),  # where a sandbox drill's messages go
    )
    app[appkeys.DISPATCHER] = dispatcher
    if settings.dispatch.enabled:
        await dispatcher.start()
        app[appkeys.DISPATCHER_WAKE] = dispatcher.wake
    yield
    await dispatcher.stop()
    for channel in channels.values():
        await channel.close()
