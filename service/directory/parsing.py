"""The directory file read a part at a time (PARTNERS_A_PART partners), so a large file is never
held whole, in two ways. The quick way, for a part without errors (the usual case): a plain reader
of the block YAML directory files are written in (libyaml for an item beyond it), straight to
values, validated as they come. The careful way, for a part the quick way refuses: the part's YAML
composed into PyYAML's node tree first, so every error names the file, the line, the column and
the field path (`partners[3].contacts[0].phone`). What a part cannot say alone (a YAML syntax
error, anything but one `partners:` list) the careful parse of the whole file says."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
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
        return _parse(lines_of(path), source, whole=lambda: Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        return Directory(), [DirectoryError(source, 0, 0, "", f"cannot read the file: {exc.strerror or exc}")]


def parse_directory(text: str, source: str = "<string>") -> tuple[Directory, list[DirectoryError]]:
    """The directory in `text`, or every error in it located by line and column."""
    return _parse(text.splitlines(keepends=True), source, whole=lambda: text)


def _parse(lines: Iterable[str], source: str, whole: Callable[[], str]) -> tuple[Directory, list[DirectoryError]]:
    partners: list[PartnerSpec] = []
    errors: list[DirectoryError] = []
    try:
        for part, part_errors in read_parts(lines, source):
            partners += part
            errors += part_errors
    except NeedsACarefulLook:
        return _careful_parse(whole(), source)
    return (Directory(), errors) if errors else (Directory(partners), [])


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


def read_parts(lines: Iterable[str], source: str) -> Iterator[tuple[list[PartnerSpec], list[DirectoryError]]]:
    """A directory file's partners, PARTNERS_A_PART at a time, each part with its errors (then no
    partners). Raises NeedsACarefulLook where only the whole file's careful parse can tell."""
    ids: set[str] = set()  # the partner ids of the parts before
    part: list[list[str]] = []
    first_line = start = 0
    for line, item_lines in _partner_item_lines(lines):
        if not part:
            first_line = line
        part.append(item_lines)
        if len(part) == PARTNERS_A_PART:
            yield _read_part(part, _Where(source, first_line, start), ids)
            start += len(part)
            part = []
    if part:
        yield _read_part(part, _Where(source, first_line, start), ids)


@dataclass(frozen=True)
class _Where:
    """Where a part sits in its file: the file, the line it starts on, its first partner's index."""

    source: str
    first_line: int
    start: int

    def in_file(self, error: DirectoryError) -> DirectoryError:
        """An error located in the part's own text, located in the file."""
        index, _, rest = error.field.removeprefix("partners[").partition("]")
        return replace(error, line=error.line + self.first_line - 1, field=f"partners[{int(index) + self.start}]{rest}")


def _read_part(part: list[list[str]], where: _Where, ids: set[str]) -> tuple[list[PartnerSpec], list[DirectoryError]]:
    try:
        partners = _quick_part(part, ids)
    except NeedsACarefulLook:
        return _careful_part("".join(line for item in part for line in item), where, ids)
    ids.update(p.id for p in partners)
    return partners, []


def _quick_part(part: list[list[str]], ids: set[str]) -> list[PartnerSpec]:
    items = [_partner_item(item_lines) for item_lines in part]
    if duplicate_issues({"partners": items}):
        raise NeedsACarefulLook
    partners = []
    for item in items:
        try:
            partner = PartnerSpec.model_validate(item)
        except ValidationError:
            raise NeedsACarefulLook from None
        if partner.id in ids:
            raise NeedsACarefulLook
        partners.append(partner)
    return partners


def _careful_part(text: str, where: _Where, ids: set[str]) -> tuple[list[PartnerSpec], list[DirectoryError]]:
    """The part composed with positions: its partners, or its errors located in the file."""
    try:
        root, data = _compose(text)
    except yaml.YAMLError:
        raise NeedsACarefulLook from None
    if not isinstance(root, SequenceNode) or not isinstance(data, list):
        raise NeedsACarefulLook
    file = {"partners": data}
    found = list(_repeated_yaml_keys(root, ("partners",)))
    spec = None
    try:
        spec = DirectoryFile.model_validate(file)
    except ValidationError as exc:
        found += issues(exc)
    found += duplicate_issues(file, ids)
    ids.update(item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str))
    # The part as the file's `partners:` list, so errors are located as in the whole file.
    top = MappingNode("tag:yaml.org,2002:map", [(ScalarNode(_STR, "partners", root.start_mark), root)])
    errors = sorted((where.in_file(_located(where.source, top, loc, message)) for loc, message in found), key=_position)
    if errors or spec is None:
        return [], errors
    return spec.partners, []


def _partner_item(lines: list[str]) -> Any:
    """One item of the `partners:` list: the plain reader's value, else libyaml's (without positions)."""
    try:
        items = read_plain(lines)
    except NeedsACarefulLook:
        try:
            items = yaml.load("".join(lines), Loader=_QuickLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError:
            raise NeedsACarefulLook from None
    if not isinstance(items, list) or len(items) != 1:
        raise NeedsACarefulLook
    return items[0]


def read_plain(lines: Iterable[str]) -> Any:
    """Plain block YAML as directory files are written, read as the safe loader reads it, or
    NeedsACarefulLook. See _PlainReader for what it takes."""
    reader = _PlainReader()
    for line in lines:
        reader.feed(line)
    return reader.value()


# Characters a plain line may hold: not those YAML refuses or reads as a line break (or a BOM),
# not `#` (a comment after a value, for libyaml to tell).
_BEYOND_ASCII = "\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff"
_PLAIN = "\x20-\x22\x24-\x7e" + _BEYOND_ASCII
_NOT_PLAIN = re.compile("[^" + _PLAIN + r"]| \Z")  # or trailing space
_NOT_YAML = re.compile("[^\t\x20-\x7e" + _BEYOND_ASCII + "]")  # in a comment
# `key: value` or `key:` after the indentation: a plain key, without a colon in it or a space at
# its end, and the value without trailing space.
_ENTRY = re.compile(
    r"( *)((?=[" + _PLAIN + r"])[^\s'\"\[\]{},&*!|>%@`?:-]"
    "[\x20-\x22\x24-\x39\x3b-\x7e" + _BEYOND_ASCII + "]*(?<! ))"
    ":(?: +([" + _PLAIN + "]*[\x21\x22\x24-\x7e" + _BEYOND_ASCII + r"]))?\n?\Z"
)
_MAX_KEY = 1000  # YAML's simple keys are shorter than 1024 characters


class _PlainReader:
    """Block YAML a line at a time: `key: value` mappings, `- ` lists (also at their key's
    indentation), one-line `[a, b]` and `{k: v}` collections of plain or quoted scalars, plain
    scalars, 'single' and "double" quoted scalars without escapes, whole-line comments. Anything
    else (anchors, tags, block scalars, multi-line scalars, comments after a value, tabs, ...)
    raises NeedsACarefulLook: the plain reader never guesses."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, Any]] = []  # (indentation, the open mapping or list)
        # A `key:` or `-` whose value is on the next lines: (its indentation, its container, key or index).
        self.pending: tuple[int, Any, Any] | None = None

    def value(self) -> Any:
        if not self.stack:
            raise NeedsACarefulLook
        return self.stack[0][1]

    def feed(self, line: str) -> None:
        entry = _ENTRY.match(line)  # most lines: `key: value`, checked and cut by one match
        if entry is not None:
            lead, content, is_item = entry.end(1), "", False
        else:
            text = line.rstrip("\n")
            content = text.lstrip(" ")
            if not content or content[0] == "#":
                if _NOT_YAML.search(content):
                    raise NeedsACarefulLook
                return
            is_item = content[0] == "-" and (len(content) == 1 or content[1] == " ")
            if not is_item or _NOT_PLAIN.search(content):
                raise NeedsACarefulLook
            lead = len(text) - len(content)
        node = self._node_at(lead, is_item)
        if is_item:
            self._item(node, lead, content)
        elif entry is not None and type(node) is dict:
            self._entry(node, lead, entry)
        else:
            raise NeedsACarefulLook

    def _node_at(self, lead: int, is_item: bool) -> Any:
        """The open mapping (or, for `- `, list) a line at `lead` belongs to."""
        stack = self.stack
        if not stack:
            stack.append((lead, [] if is_item else {}))
        elif self.pending is not None:
            self._open(self.pending, lead, is_item)
            self.pending = None
        if lead < stack[0][0]:
            raise NeedsACarefulLook
        while stack[-1][0] > lead:
            stack.pop()
        indent, node = stack[-1]
        if not is_item and indent == lead and type(node) is list and len(stack) > 1:
            stack.pop()  # a list at its key's indentation ends; the key's mapping goes on
            indent, node = stack[-1]
        if indent != lead or (is_item and type(node) is not list):
            raise NeedsACarefulLook
        return node

    def _open(self, pending: tuple[int, Any, Any], lead: int, is_item: bool) -> None:
        """The first line after `key:` or `-`: deeper, it starts the value; otherwise the value is null."""
        indent, container, key = pending
        if lead > indent or (lead == indent and is_item and type(container) is dict):
            node: Any = [] if is_item else {}
            container[key] = node
            self.stack.append((lead, node))

    def _item(self, items: list[Any], lead: int, content: str) -> None:
        rest = content[1:].lstrip(" ")
        if not rest:
            items.append(None)
            self.pending = (lead, items, len(items) - 1)
            return
        entry = _ENTRY.match(rest)
        if entry is None:
            items.append(_value(rest))
            return
        mapping: dict[Any, Any] = {}  # a mapping starting on the item's line
        items.append(mapping)
        column = lead + len(content) - len(rest)
        self.stack.append((column, mapping))
        self._entry(mapping, column, entry)

    def _entry(self, mapping: dict[Any, Any], indent: int, entry: re.Match[str]) -> None:
        _, key_text, value_text = entry.groups()
        key = _KEYS.get(key_text)
        if key is None:
            key = _key(key_text)
        if key in mapping:
            raise NeedsACarefulLook  # a repeated key: the careful parse names it
        if value_text:
            mapping[key] = _scalar(value_text) if value_text[0] not in "[{" else _value(value_text)
            return
        mapping[key] = None
        self.pending = (indent, mapping, key)


_KEYS: dict[str, str | int] = {}  # a directory file's few keys, read once


def _key(text: str) -> str | int:
    if len(text) > _MAX_KEY or text[-1] == " ":
        raise NeedsACarefulLook
    key = _scalar(text)
    if not isinstance(key, (str, int)):
        raise NeedsACarefulLook
    if len(_KEYS) < 256:
        _KEYS[text] = key
    return key


def _value(text: str) -> Any:
    """A scalar, or a one-line `[a, b]` or `{k: v}` of scalars."""
    if text[0] == "[" and text[-1] == "]":
        inner = text[1:-1].strip(" ")
        return [_flow_scalar(item.strip(" ")) for item in inner.split(",")] if inner else []
    if text[0] == "{" and text[-1] == "}":
        mapping: dict[Any, Any] = {}
        inner = text[1:-1].strip(" ")
        for pair in inner.split(",") if inner else []:
            key_text, colon, value_text = pair.strip(" ").partition(": ")
            key = _flow_scalar(key_text)
            if not colon or not isinstance(key, (str, int)) or key in mapping:
                raise NeedsACarefulLook
            mapping[key] = _flow_scalar(value_text.strip(" "))
        return mapping
    return _scalar(text)


# Characters that end or break a plain scalar inside `[...]` or `{...}`.
_FLOW_BREAK = re.compile(r"[\[\]{}:?]")


def _flow_scalar(text: str) -> Any:
    if not text or (text[0] not in "'\"" and _FLOW_BREAK.search(text)):
        raise NeedsACarefulLook
    return _scalar(text)


def _scalar(text: str) -> Any:
    """One scalar on one line, as the safe loader reads it: a string, a small integer, or
    NeedsACarefulLook for the rest (booleans, nulls, floats, dates, escapes...)."""
    first = text[0]
    if first == "'":
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != "'" or "'" in inner.replace("''", ""):
            raise NeedsACarefulLook
        return inner.replace("''", "'")
    if first == '"':
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != '"' or '"' in inner or "\\" in inner:
            raise NeedsACarefulLook
        return inner
    if first in "-?:,[]{}#&*!|>'\"%@`" or ": " in text or text[-1] == ":":
        raise NeedsACarefulLook
    if first not in _MAYBE_NOT_TEXT:
        return text
    for tag, pattern in yaml.SafeLoader.yaml_implicit_resolvers[first]:
        if pattern.match(text):
            if tag == _INT and text.isdigit() and (text == "0" or first != "0"):
                return int(text)
            raise NeedsACarefulLook  # a bool, null, float, date...: the safe loader's own rules
    return text


def lines_of(path: str | Path) -> Iterator[str]:
    with Path(path).open(encoding="utf-8") as lines:
        yield from lines


_PARTNERS_KEY = re.compile(r"partners:[ \t]*(#.*)?\n?\Z")


def _partner_item_lines(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """The `partners:` list's items, one at a time: the line each starts on, and its lines.

    An item starts with `- ` at the list's indentation, and everything indented deeper belongs to
    it (YAML's own rule for block collections), so the list can be cut between items.
    """
    lines = iter(lines)
    number = 1  # of the line the item starts on
    for line in lines:
        number += 1
        if _PARTNERS_KEY.match(line):
            break
        content = line.rstrip("\n").lstrip(" ")
        if (content and content[0] != "#") or _NOT_YAML.search(content):
            raise NeedsACarefulLook  # something else before the list
    else:
        raise NeedsACarefulLook
    indent: int | None = None
    item: list[str] = []  # blank lines and comments before the first item go with it
    for line in lines:
        content = line.lstrip(" ")
        if not content.strip(" \n") or content[0] == "#":
            item.append(line)  # the plain reader or libyaml checks it
            continue
        lead = len(line) - len(content)
        starts_item = content[0] == "-" and content[1:2] in (" ", "\n", "")
        if indent is None and starts_item:
            indent = lead
        elif indent is None or lead < indent or (lead == indent and not starts_item):
            raise NeedsACarefulLook  # another key, a flow list, a tab: beyond the quick reader
        elif lead == indent:
            yield number, item
            number += len(item)
            item = []
        item.append(line)
    if indent is None:
        raise NeedsACarefulLook
    yield number, item


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
