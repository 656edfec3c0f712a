"""The layout keeps its promises: SQL lives in service/store/, and the core has no import cycles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import ROOT

# Outside the store, code may hold a connection (for typing) and catch the database's errors.
ALLOWED_SQLALCHEMY = ("sqlalchemy.ext.asyncio", "sqlalchemy.exc")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "channels").rglob("*.py")]):
        relative = path.relative_to(ROOT).with_suffix("")
        name = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        yield name, path


def imported(path: Path) -> set[str]:
    """Modules a file imports when it runs (not those imported only for the type checker)."""
    tree = ast.parse(path.read_text("utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import module` imports the module; `from module import name`, the module.
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if (ROOT / full.replace(".", "/")).with_suffix(".py").exists() else node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_sql_is_written_outside_the_store() -> None:
    offenders = {
        name: sorted(
            n for n in imported(path) if n.split(".")[0] == "sqlalchemy" and not n.startswith(ALLOWED_SQLALCHEMY)
        )
        for name, path in modules()
        if not name.startswith("service.store")
    }
    assert {name: found for name, found in offenders.items() if found} == {}, "write the query in service/store/"


def test_the_service_modules_import_no_cycle() -> None:
    known = dict(modules())
    graph = {name: {n for n in imported(path) if n in known and n != name} for name, path in known.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = {name: cycle for name in graph if (cycle := cycle_from(name))}
    assert cycles == {}, "break the cycle (a shared module, or a narrower import)"


def test_tests_share_helpers_not_each_other() -> None:
    """Helpers live in tests/helpers/ (or conftest fixtures); a test module imports no other test
    module, no conftest and nothing from bench/."""
    offenders = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        reached = sorted(
            n for n in imported(path) if n.startswith(("tests.test_", "tests.browser.test_", "tests.conftest", "bench"))
        )
        if reached:
            offenders[path.relative_to(ROOT).as_posix()] = reached
    assert offenders == {}, "move what they share into tests/helpers/"
