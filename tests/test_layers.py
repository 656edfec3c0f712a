"""The core raises domain errors and never reaches into the HTTP layer (service/api)."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

# The HTTP edge and the programs that wire it up may import service.api; nothing else may.
EDGE = ("service/api/", "service/web/", "service/app.py", "service/demo.py", "service/cli")


def imports_of(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_core_never_imports_the_http_layer() -> None:
    offenders = {}
    for path in sorted((ROOT / "service").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(EDGE):
            continue
        reached = sorted(n for n in imports_of(path.read_text("utf-8")) if n.split(".")[:2] == ["service", "api"])
        if reached:
            offenders[relative] = reached
    assert offenders == {}, "raise from service/errors.py instead; the middleware maps it to HTTP"
