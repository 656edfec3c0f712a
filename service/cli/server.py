"""`herald serve`, `herald demo`, `herald db upgrade`: Herald itself."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli import exits
from service.cli.local import configured

if TYPE_CHECKING:  # the operator verbs share this parser and should start fast: Herald loads on use
    from service.settings import Settings


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the HTTP service and the dispatcher")
    serve.set_defaults(run=configured(_serve))
    demo = commands.add_parser("demo", help="serve on embedded defaults and post a sample critical incident")
    demo.add_argument("--once", action="store_true", help="exit after the sample incident is delivered")
    demo.add_argument("--drill", metavar="FILE", help="then run this drill scenario in the sandbox and show its report")
    demo.set_defaults(run=configured(_demo))
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations up to the newest (a one-shot job before `serve`)")
    upgrade.set_defaults(run=configured(_upgrade))


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from service.app import create_app
    from service.logs import configure_logging

    configure_logging()
    app = create_app(settings)  # own templates are checked here: a bad one stops start-up (exit 2)
    web.run_app(app, host=settings.server.host, port=settings.server.port)
    return exits.OK


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from service.demo import run_demo
    from service.logs import configure_logging

    configure_logging()
    drill = (args.drill, Path(args.drill).read_text(encoding="utf-8")) if args.drill else None
    return asyncio.run(run_demo(_with_demo_token(settings), once=args.once, drill=drill))


def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from service.logs import configure_logging

    configure_logging()
    return asyncio.run(_apply_migrations(settings))


async def _apply_migrations(settings: Settings) -> int:
    from service.store import Store

    store = Store(settings.database.url)
    try:
        await store.upgrade()
    finally:
        await store.close()
    print(f"herald: schema is up to date ({store.engine.url.render_as_string(hide_password=True)})")
    return exits.OK


def _with_demo_token(settings: Settings) -> Settings:
    """The demo mints a one-off admin token for itself: no secret is ever kept in the repo."""
    from service.settings import Token

    token = Token(name="demo", scopes=["admin"], secret=secrets.token_urlsafe(24))  # type: ignore[arg-type]
    return settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"tokens": [*settings.auth.tokens, token]})}
    )
