"""`herald templates check DIR`: the company's own notice templates, checked before use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli import exits
from service.cli.local import configured

if TYPE_CHECKING:
    from service.settings import Settings


def register(commands: Any) -> None:
    group = commands.add_parser("templates", help="the company's own notice templates")
    verbs = group.add_subparsers(dest="templates_command", required=True)
    check = verbs.add_parser(
        "check", help="render every kind in every language with DIR's templates over the built-in ones"
    )
    check.add_argument("dir", help="a directory of <lang>/<kind>.<part>.j2 files")
    check.set_defaults(run=configured(_check))


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from service.notices import KINDS, LANGUAGES
    from service.template_check import check_templates

    own = Path(args.dir)
    problems = check_templates(settings, own)
    for problem in problems:
        print(f"{own}/{problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s); Herald would refuse to start with these templates", file=sys.stderr)
        return exits.PROBLEMS
    overrides = sorted(str(path.relative_to(own)) for path in own.rglob("*.j2"))
    print(
        f"OK: {len(KINDS)} kinds × {len(LANGUAGES)} languages render; "
        f"{len(overrides)} file(s) override the built-in templates: {', '.join(overrides) or 'none'}"
    )
    return exits.OK
