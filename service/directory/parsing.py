"""The directory file read, two ways. The quick way (a file without errors, the usual case): libyaml
straight to values, a few hundred partners at a time, validated as they come, so a large file is
never held whole. The careful way (any error, or formatting the quick reader does not take): YAML
composed into PyYAML's node tree first, so every error names the file, the line, the column and
the field path (`partners[3].contacts[0].phone`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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
    PartnerSpec,
    duplicate_issues,
    issues,
)

# libyaml's parser where PyYAML was built with it (its marks carry lines and columns too).
_LibYamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PARTNERS_A_PART = 500


def load_directory(path: str | Path) -> tuple[Directory, list[DirectoryError]]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return Directory(), [DirectoryError(source, 0, 0, "", f"cannot read the file: {exc.strerror or exc}")]
    return parse_directory(text, source)


def parse_directory(text: str, source: str = "<string>") -> tuple[Directory, list[DirectoryError]]:
    """The directory in `text`, or every error in it located by line and column."""
    try:
        return Directory([p for part in quick_partners(text.splitlines(keepends=True)) for p in part]), []
    except NeedsACarefulLook:
        return _careful_parse(text, source)


class NeedsACarefulLook(Exception):
    """The quick reader met an error or something beyond it: the careful parse says what and where."""


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
# First characters of a plain scalar YAML 1.1 could read as something other than a string.
_MAYBE_NOT_TEXT = frozenset(key for key in yaml.SafeLoader.yaml_implicit_resolvers if key)


class _QuickLoader(_LibYamlLoader):  # type: ignore[valid-type, misc]
    """The safe loader with shortcuts for what a directory file is made of (mappings, lists,
    strings, small integers), and the exact safe loader for anything else."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0] and value and value[0] not in _MAYBE_NOT_TEXT:
            return _STR
        return super().resolve(kind, value, implicit)

    def construct_document(self, node: Node) -> Any:
        return self._value(node)

    def _value(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag == _STR:
                return node.value
            if node.tag == _INT and node.value.isdigit() and node.value[0] != "0":
                return int(node.value)
            return self.construct_object(node, deep=True)
        if isinstance(node, SequenceNode):
            return [self._value(item) for item in node.value]
        if not isinstance(node, MappingNode) or node.tag != "tag:yaml.org,2002:map":
            raise NeedsACarefulLook
        mapping = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                raise NeedsACarefulLook
            name = self._value(key)
            if name in mapping:
                raise NeedsACarefulLook  # a repeated key: the careful parse names it
            mapping[name] = self._value(value)
        return mapping


def quick_partners(lines: Iterable[str]) -> Iterator[list[PartnerSpec]]:
    """The validated partners of a directory file's lines, PARTNERS_A_PART at a time. Raises
    NeedsACarefulLook at anything short of a plain, valid `partners:` block list."""
    seen: set[str] = set()
    for block in _partner_blocks(lines):
        try:
            items = _BlockReader(block).read()
        except NeedsACarefulLook:  # beyond the plain reader: libyaml, still without positions
            try:
                items = yaml.load(block, Loader=_QuickLoader)  # noqa: S506 (a SafeLoader)
            except yaml.YAMLError:
                raise NeedsACarefulLook from None
        if not isinstance(items, list) or duplicate_issues({"partners": items}):
            raise NeedsACarefulLook
        part = []
        for item in items:
            try:
                partner = PartnerSpec.model_validate(item)
            except ValidationError:
                raise NeedsACarefulLook from None
            if partner.id in seen:
                raise NeedsACarefulLook
            seen.add(partner.id)
            part.append(partner)
        yield part


class _BlockReader:
    """Plain block YAML as directory files are written (`key: value` mappings, `- ` lists, one-line
    `[a, b]` and `{k: v}` collections, plain and simply quoted scalars), read line by line as the
    safe loader would read it. Anything else (anchors, block scalars, escapes, comments after a
    value, ...) raises NeedsACarefulLook, for libyaml or the careful parse."""

    def __init__(self, text: str) -> None:
        self.lines: list[tuple[int, str]] = []
        for line in text.split("\n"):
            content = line.lstrip(" ")
            if not content or content.startswith("#"):
                continue
            if "#" in content or "\t" in content or content.rstrip() != content:
                raise NeedsACarefulLook
            self.lines.append((len(line) - len(content), content))
        self.at = 0

    def read(self) -> Any:
        if not self.lines:
            raise NeedsACarefulLook
        value = self._node(self.lines[0][0])
        if self.at != len(self.lines):
            raise NeedsACarefulLook
        return value

    def _node(self, indent: int) -> Any:
        if self.lines[self.at][1].startswith("-"):
            return self._sequence(indent)
        return self._mapping(indent)

    def _sequence(self, indent: int) -> list[Any]:
        items = []
        while self.at < len(self.lines):
            lead, content = self.lines[self.at]
            if lead < indent or (lead == indent and not content.startswith("-")):
                break  # the list ends; what follows belongs to the enclosing block
            if lead > indent or not (content.startswith("- ") or content == "-"):
                raise NeedsACarefulLook
            rest = content[1:].lstrip(" ")
            if not rest:
                self.at += 1
                items.append(self._nested(indent))
                continue
            column = lead + len(content) - len(rest)
            if _is_entry(rest):  # a mapping starting on the item's line
                self.lines[self.at] = (column, rest)
                items.append(self._mapping(column))
            else:
                self.at += 1
                items.append(_scalar_or_flow(rest))
        return items

    def _mapping(self, indent: int) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        while self.at < len(self.lines):
            lead, content = self.lines[self.at]
            if lead < indent:
                break
            if lead > indent or not _is_entry(content):
                raise NeedsACarefulLook
            key_text, _, value_text = content.partition(":")
            key = _scalar(key_text)
            if key in mapping or isinstance(key, (list, dict)) or key is None:
                raise NeedsACarefulLook
            self.at += 1
            value_text = value_text.strip(" ")
            mapping[key] = _scalar_or_flow(value_text) if value_text else self._nested(indent, in_mapping=True)
        return mapping

    def _nested(self, indent: int, in_mapping: bool = False) -> Any:
        """The block under `key:` or `-`: deeper lines, or a `- ` list at a key's own indent."""
        if self.at < len(self.lines):
            lead, content = self.lines[self.at]
            if lead > indent or (in_mapping and lead == indent and content.startswith("- ")):
                return self._node(lead)
        return None


_ENTRY = re.compile(r"[^\s'\"\[\]{},&*!|>%@`?:-][^:]*:(?: |$)")


def _is_entry(content: str) -> bool:
    """`key: value` or `key:`, with no second `: ` except inside a one-line `{k: v}` mapping."""
    if not _ENTRY.match(content):
        return False
    value = content.partition(":")[2].strip(" ")
    return value.startswith("{") or (": " not in value and not value.endswith(":"))


def _scalar_or_flow(text: str) -> Any:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip(" ")
        return [_scalar(item.strip(" ")) for item in inner.split(",")] if inner else []
    if text.startswith("{") and text.endswith("}"):
        mapping: dict[Any, Any] = {}
        for pair in text[1:-1].split(","):
            key_text, colon, value_text = pair.strip(" ").partition(": ")
            key = _scalar(key_text)
            if not colon or key in mapping or key is None:
                raise NeedsACarefulLook
            mapping[key] = _scalar(value_text.strip(" "))
        return mapping
    return _scalar(text)


def _scalar(text: str) -> Any:
    if not text or text[0] in "[]{},&*!|>%@`?#" or text.startswith(("- ", "-\n")) or ": " in text:
        raise NeedsACarefulLook
    if text[0] == "'":
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != "'" or "'" in inner.replace("''", ""):
            raise NeedsACarefulLook
        return inner.replace("''", "'")
    if text[0] == '"':
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != '"' or '"' in inner or "\\" in inner:
            raise NeedsACarefulLook
        return inner
    if text.endswith(":"):
        raise NeedsACarefulLook
    if text[0] not in _MAYBE_NOT_TEXT:
        return text
    for tag, pattern in yaml.SafeLoader.yaml_implicit_resolvers.get(text[0], []):
        if pattern.match(text):
            if tag == _INT and text.isdigit() and (text == "0" or text[0] != "0"):
                return int(text)
            raise NeedsACarefulLook  # a bool, null, float, date...: the safe loader's own rules
    return text


def lines_of(path: str | Path) -> Iterator[str]:
    with Path(path).open(encoding="utf-8") as lines:
        yield from lines


_PARTNERS_KEY = re.compile(r"partners:[ \t]*(#.*)?\n?\Z")


def _partner_blocks(lines: Iterable[str]) -> Iterator[str]:
    """The `partners:` list's items, PARTNERS_A_PART at a time, as YAML block sequences.

    An item starts with `- ` at the list's indentation, and everything indented deeper belongs to
    it (YAML's own rule for block collections), so the list can be cut between items.
    """
    lines = iter(lines)
    for line in lines:
        if _PARTNERS_KEY.match(line):
            break
        if line.strip() and not line.lstrip().startswith("#"):
            raise NeedsACarefulLook  # something else before the list
    else:
        raise NeedsACarefulLook
    indent: int | None = None
    block: list[str] = []
    items = 0
    for line in lines:
        content = line.lstrip(" ")
        if not content.strip() or content.startswith("#"):
            block.append(line)
            continue
        lead = len(line) - len(content)
        starts_item = content.startswith("- ") or content.rstrip() == "-"
        if indent is None and starts_item:
            indent = lead
        if indent is None or lead < indent or content.startswith("\t") or (lead == indent and not starts_item):
            raise NeedsACarefulLook  # another key, a flow list, a tab: beyond the quick reader
        if lead == indent:
            items += 1
            if items > PARTNERS_A_PART:
                yield "".join(block)
                block, items = [], 1
        block.append(line)
    if indent is None:
        raise NeedsACarefulLook
    yield "".join(block)


def _careful_parse(text: str, source: str) -> tuple[Directory, list[DirectoryError]]:
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
    loader = _LibYamlLoader(text)
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
