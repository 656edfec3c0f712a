"""What the verbs that run Herald itself share: reading the configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.cli import exits

if TYPE_CHECKING:
    from service.settings import Settings

LocalVerb = Callable[[argparse.Namespace, "Settings"], int]


def configured(run: LocalVerb) -> Callable[[argparse.Namespace], int]:
    """The verb with the settings it needs; a bad configuration exits 2 naming the key."""

    def verb(args: argparse.Namespace) -> int:
        from service.settings import SettingsError, load_settings

        try:
            return run(args, load_settings(args.config))
        except SettingsError as exc:
            print(f"herald: {exc}", file=sys.stderr)
            return exits.USAGE

    return verb
