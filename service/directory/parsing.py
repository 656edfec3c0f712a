"""The directory file read with positions: YAML is composed into PyYAML's node tree first, so every
error names the file, the line, the column and the field path (`partners[3].contacts[0].phone`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from service.directory.validation import (
    Directory,
    DirectoryError,
    DirectoryFile,
    Loc,
    duplicate_issues,
    issues,
)


def load_directory(path: str | Path) -> tuple[Directory, list[DirectoryError]]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return Directory(), [DirectoryError(source, 0, 0, "", f"cannot read the file: {exc.strerror or exc}")]
    return parse_directory(text, source)


def parse_directory(text: str, source: str = "<string>") -> tuple[Directory, list[DirectoryError]]:
    try:
        root, data = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return Directory(), [DirectoryError(source, line, column, "", f"not valid YAML: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return Directory(), [DirectoryError(source, 0, 0, "", f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return Directory(), [DirectoryError(source, 1, 1, "", "expected a mapping with a `partners:` list")]
    found = list(_repeated_yaml_keys(root, ()))
    spec = None
    try:
        spec = DirectoryFile.model_validate(data)
    except ValidationError as exc:
        found += issues(exc)
    found += duplicate_issues(data)
    errors = sorted((_located(source, root, loc, message) for loc, message in found), key=_position)
    if errors or spec is None:
        return Directory(), errors
    return Directory(spec.partners), []


def _position(error: DirectoryError) -> tuple[int, int, str]:
    return error.line, error.column, error.field


def _compose(text: str) -> tuple[Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def _repeated_yaml_keys(node: Node | None, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """PyYAML keeps the last of two equal keys without a word; a directory file should not."""
    if isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _repeated_yaml_keys(item, (*loc, index))
    if not isinstance(node, MappingNode):
        return
    seen: set[str] = set()
    for key, value in node.value:
        name = key.value if isinstance(key, ScalarNode) else "?"
        if name in seen:
            yield (*loc, name), "this key appears twice in the same mapping"
        seen.add(name)
        yield from _repeated_yaml_keys(value, (*loc, name))


def _located(source: str, root: Node | None, loc: Loc, message: str) -> DirectoryError:
    node, mark, path = root, (root.start_mark if root is not None else None), ""
    for part in loc:
        in_sequence = isinstance(node, SequenceNode) or (node is None and isinstance(part, int))
        path += f"[{part}]" if in_sequence else ("." if path else "") + str(part)
        node, found_mark = _child(node, part)
        mark = found_mark or mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return DirectoryError(source, line, column, path, message)


def _child(node: Node | None, part: str | int) -> tuple[Node | None, Any]:
    """The child node at `part` and the mark an error about it should point at."""
    if isinstance(node, SequenceNode):
        index = int(part) if str(part).isdigit() else -1
        if 0 <= index < len(node.value):
            return node.value[index], node.value[index].start_mark
        return None, None
    if isinstance(node, MappingNode):
        for key, value in reversed(node.value):
            if isinstance(key, ScalarNode) and key.value == str(part):
                # A scalar on the key's line: point at the value; a nested block: at the key.
                same_line = value.start_mark.line == key.start_mark.line
                return value, (value.start_mark if same_line else key.start_mark)
    return None, None
