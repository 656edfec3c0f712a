"""`herald directory validate|import|coverage`: the partner directory file and database."""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from service.cli.local import configured

if TYPE_CHECKING:
    from service.settings import Settings


def register(commands: Any) -> None:
    group = commands.add_parser("directory", help="the partner directory (YAML)")
    verbs = group.add_subparsers(dest="directory_command", required=True)
    validate = verbs.add_parser("validate", help="check a directory file (no configuration needed)")
    validate.add_argument("file")
    validate.set_defaults(run=_validate)
    load = verbs.add_parser("import", help="replace the directory from a file")
    load.add_argument("file")
    load.set_defaults(run=configured(_import))
    coverage = verbs.add_parser("coverage", help="partners with no reachable tier-1 contact")
    coverage.set_defaults(run=configured(_coverage))


def _validate(args: argparse.Namespace) -> int:
    from service.cli.directory_files import validate_file

    return validate_file(args.file)


def _import(args: argparse.Namespace, settings: Settings) -> int:
    with _cycle_collector_paused():
        from service.cli.directory_files import import_file

        return asyncio.run(import_file(settings, args.file))


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Python's cycle collector walks every live object again and again as the modules load and a
    large file's objects come and go: a fifth of loading the modules and most of an import's time
    once they are loaded. Neither holds garbage cycles to speak of (reference counting frees each
    part of the file once written), so the collector rests meanwhile."""
    was_enabled = gc.isenabled()
    gc.freeze()  # what is loaded by now stays to the end anyway
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.unfreeze()


def _coverage(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.directory_files import show_coverage

    return asyncio.run(show_coverage(settings))
