"""`herald`: serve, demo, db upgrade, directory validate/import."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Sequence

from aiohttp import web

from service import directory
from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings, SettingsError, Token, load_settings
from service.store import Store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herald", description="Tell partners, promptly and provably.")
    parser.add_argument("--config", help="TOML configuration file (default: config/herald.toml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service and the dispatcher")
    demo = commands.add_parser("demo", help="serve on embedded defaults and post a sample critical incident")
    demo.add_argument("--once", action="store_true", help="exit after the sample incident is delivered")
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations up to the newest")
    dir_parser = commands.add_parser("directory", help="the partner directory (YAML)")
    dir_commands = dir_parser.add_subparsers(dest="directory_command", required=True)
    for name, text in (("validate", "check a directory file"), ("import", "replace the directory from a file")):
        sub = dir_commands.add_parser(name, help=text)
        sub.add_argument("file")
    dir_commands.add_parser("coverage", help="partners with no reachable tier-1 contact")
    args = parser.parse_args(argv)

    if args.command == "directory" and args.directory_command == "validate":
        return directory.cli_validate(args.file)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    if args.command == "serve":
        web.run_app(create_app(settings), host=settings.server.host, port=settings.server.port)
        return 0
    if args.command == "demo":
        from service.demo import run_demo

        return asyncio.run(run_demo(_with_demo_token(settings), once=args.once))
    if args.command == "db":
        return asyncio.run(_upgrade(settings))
    if args.directory_command == "import":
        return asyncio.run(directory.cli_import(settings, args.file))
    return asyncio.run(directory.cli_coverage(settings))


async def _upgrade(settings: Settings) -> int:
    store = Store(settings.database.url)
    try:
        await store.upgrade()
    finally:
        await store.close()
    print(f"herald: schema is up to date ({store.engine.url.render_as_string(hide_password=True)})")
    return 0


def _with_demo_token(settings: Settings) -> Settings:
    """The demo mints a one-off admin token for itself: no secret is ever kept in the repo."""
    token = Token(name="demo", scopes=["admin"], secret=secrets.token_urlsafe(24))  # type: ignore[arg-type]
    return settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"tokens": [*settings.auth.tokens, token]})}
    )


if __name__ == "__main__":
    sys.exit(main())
