"""The partner directory: one validator for the YAML file and the admin API, import, coverage.

The YAML file is composed into PyYAML's node tree first, so every error can name the file, the
line, the column and the field path (`partners[3].contacts[0].phone`). The same pydantic models
validate the file and the admin API's bodies: a phone number or a channel list is checked in
exactly one place.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy.ext.asyncio import AsyncConnection
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from service.settings import Settings, Severity
from service.store import Store
from service.store import partners as partner_store
from service.store.records import audit
from service.validation import Email, Line, Phone, WebhookUrl

log = logging.getLogger("herald.directory")

Language = Literal["ja", "en"]
ContactChannel = Literal["email", "sms", "webhook"]
# Which contact field a channel sends to.
ADDRESS_OF: dict[str, str] = {"email": "email", "sms": "phone", "webhook": "webhook_url"}
_ADDRESS_WORDS = {"email": "an email address", "phone": "a phone number", "webhook_url": "a webhook_url"}
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


# --- the one validator for addresses and channels -------------------------------------------


def unique_channels(value: list[str]) -> list[str]:
    repeated = sorted({c for c in value if value.count(c) > 1})
    if repeated:
        raise PydanticCustomError("channel_repeated", "channel {channel} is listed twice", {"channel": repeated[0]})
    return value


def known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone_unknown", "not an IANA time zone (e.g. Asia/Tokyo, Europe/London)"
        ) from None
    return value


def unique_components(value: list[str]) -> list[str]:
    repeated = sorted({c for c in value if value.count(c) > 1})
    if repeated:
        raise PydanticCustomError("component_repeated", "component {name} is listed twice", {"name": repeated[0]})
    return value


Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, min_length=1, max_length=64)]
Name = Annotated[Line, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tier = Annotated[int, Field(ge=1, le=3)]
Channels = Annotated[list[ContactChannel], AfterValidator(unique_channels)]
Component = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)*)$", max_length=64)]
Components = Annotated[list[Component], AfterValidator(unique_components)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(known_timezone)]
# severity -> tier -> channels, overriding the global policy for one partner.
Policy = dict[Severity, dict[Tier, Channels]]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactSpec(_Spec):
    key: Slug
    name: Name
    tier: Tier
    email: Email | None = None
    phone: Phone | None = None
    # The partner's system: signed JSON notices (Standard Webhooks) are POSTed here.
    webhook_url: WebhookUrl | None = None
    # Ordered preferences; empty means "whatever the policy says, in its order".
    channels: Channels = []
    language: Language | None = None

    @model_validator(mode="after")
    def _reachable_on_its_channels(self) -> ContactSpec:
        for channel in self.channels:
            address = ADDRESS_OF[channel]
            if getattr(self, address) is None:
                raise PydanticCustomError(
                    "address_missing",
                    "channel {channel} needs {address}",
                    {"channel": channel, "address": _ADDRESS_WORDS[address], "field": "channels"},
                )
        return self

    def row(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PartnerFields(_Spec):
    """A partner without its contacts: what PATCH /v1/partners/{id} may change."""

    id: Slug
    name: Name
    language: Language
    components: Components = []
    policy: Policy | None = None
    # The partner's time zone for quiet hours; omitted = the company's.
    timezone: TimeZone | None = None

    def row(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"contacts"})


class PartnerSpec(PartnerFields):
    contacts: list[ContactSpec] = []

    def row_with_contacts(self) -> dict[str, Any]:
        return {**self.row(), "contacts": [c.row() for c in self.contacts]}


class _DirectoryFile(_Spec):
    partners: list[PartnerSpec]


@dataclass
class Directory:
    partners: list[PartnerSpec] = field(default_factory=list)

    @property
    def contact_count(self) -> int:
        return sum(len(p.contacts) for p in self.partners)

    def rows(self) -> list[dict[str, Any]]:
        return [p.row_with_contacts() for p in self.partners]


@dataclass
class DirectoryError:
    path: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


Loc = tuple[str | int, ...]


def issues(exc: ValidationError) -> list[tuple[Loc, str]]:
    """pydantic's errors as (location, message), worded for a person editing the file."""
    found = []
    for error in exc.errors():
        loc: list[str | int] = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p and p.endswith("]"))]
        is_key = error["loc"][-1:] == ("[key]",)
        extra = (error.get("ctx") or {}).get("field")
        if extra:
            loc.append(extra)
        found.append((tuple(loc), _message(error, is_key)))
    return found


def _message(error: Any, is_key: bool) -> str:
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return "should be a mapping (key: value)"
    if error["type"] == "list_type":
        return "should be a list"
    if error["type"] == "string_pattern_mismatch":
        return "use lower-case letters, digits and single hyphens (a slug)"
    message = error["msg"].removeprefix("Value error, ")
    return f"not a valid key: {message}" if is_key else message


def duplicates(items: Any, key: str) -> list[tuple[int, str]]:
    """(index, value) of every item whose `key` repeats an earlier item's."""
    if not isinstance(items, list):
        return []
    seen: set[str] = set()
    repeated = []
    for index, item in enumerate(items):
        value = item.get(key) if isinstance(item, dict) else None
        if not isinstance(value, str):
            continue
        if value in seen:
            repeated.append((index, value))
        seen.add(value)
    return repeated


def _duplicate_issues(data: Any) -> list[tuple[Loc, str]]:
    partners = data.get("partners") if isinstance(data, dict) else None
    found: list[tuple[Loc, str]] = [
        (("partners", i, "id"), f"duplicate partner id {value!r}") for i, value in duplicates(partners, "id")
    ]
    for i, partner in enumerate(partners if isinstance(partners, list) else []):
        contacts = partner.get("contacts") if isinstance(partner, dict) else None
        found += [
            (("partners", i, "contacts", j, "key"), f"duplicate contact key {value!r} in this partner")
            for j, value in duplicates(contacts, "key")
        ]
    return found


# --- YAML with line numbers --------------------------------------------------------------------


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
        spec = _DirectoryFile.model_validate(data)
    except ValidationError as exc:
        found += issues(exc)
    found += _duplicate_issues(data)
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


# --- import and coverage -----------------------------------------------------------------------


async def import_directory(store: Store, directory: Directory, actor: str = "directory-import") -> dict[str, int]:
    """Replace the whole directory in one transaction; counts of what is there afterwards."""
    async with store.begin() as conn:
        counts = await partner_store.replace_all(conn, directory.rows())
        await audit(conn, "directory.imported", "directory", None, actor, counts)
    log.info("directory imported: %(partners)s partners, %(contacts)s contacts", counts)
    return counts


class DirectoryFileInvalid(Exception):
    def __init__(self, errors: list[DirectoryError]) -> None:
        super().__init__("the partner directory file is invalid:\n" + "\n".join(str(e) for e in errors))
        self.errors = errors


async def import_if_empty(store: Store, path: str | Path) -> None:
    """At start-up: fill an empty directory from the file; an edited directory is left alone."""
    file = Path(path)
    if not await asyncio.to_thread(file.exists):
        log.warning("directory file %s not found; the partner directory was not imported", file)
        return
    async with store.read() as conn:
        if (await partner_store.counts(conn))["partners"]:
            return
    directory, errors = load_directory(file)
    if errors:
        raise DirectoryFileInvalid(errors)
    async with store.begin() as conn:
        if (await partner_store.counts(conn))["partners"]:
            return  # another instance imported it meanwhile
        counts = await partner_store.replace_all(conn, directory.rows())
        await audit(conn, "directory.imported", "directory", None, "start-up", {**counts, "file": file.name})
    log.info("directory imported from %s: %s partners, %s contacts", file.name, counts["partners"], counts["contacts"])


NO_TIER1 = "no tier-1 contact"
TIER1_UNREACHABLE = "tier-1 contacts have no email or phone"


async def coverage_gaps(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Partners that no incident could reach at tier 1, ordered by id."""
    gaps = []
    for row in await partner_store.tier1_coverage(conn):
        if row["tier1"] == 0:
            gaps.append({"partner_id": row["id"], "name": row["name"], "reason": NO_TIER1})
        elif row["tier1_reachable"] == 0:
            gaps.append({"partner_id": row["id"], "name": row["name"], "reason": TIER1_UNREACHABLE})
    return gaps


# --- the CLI -----------------------------------------------------------------------------------


def cli_validate(file: str) -> int:
    directory, errors = load_directory(file)
    if errors:
        _print_errors(errors)
        return 1
    print(f"OK: {len(directory.partners)} partners, {directory.contact_count} contacts")
    return 0


async def cli_import(settings: Settings, file: str) -> int:
    directory, errors = load_directory(file)
    if errors:
        _print_errors(errors)
        print(f"{file}: nothing imported", file=sys.stderr)
        return 1
    store = Store(settings.database.url)
    try:
        await store.upgrade()
        counts = await import_directory(store, directory, actor="cli")
    except Exception as exc:
        print(f"{file}: import failed, nothing changed: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"imported: {counts['partners']} partners, {counts['contacts']} contacts")
    return 0


async def cli_coverage(settings: Settings) -> int:
    store = Store(settings.database.url)
    try:
        if settings.database.auto_migrate:
            await store.upgrade()
        async with store.read() as conn:
            gaps = await coverage_gaps(conn)
    finally:
        await store.close()
    for gap in gaps:
        print(f"{gap['partner_id']}: {gap['name']}: {gap['reason']}")
    if gaps:
        print(f"{len(gaps)} partner(s) cannot be reached at tier 1", file=sys.stderr)
        return 1
    print("OK: every partner has a reachable tier-1 contact")
    return 0


def _print_errors(errors: list[DirectoryError]) -> None:
    for error in errors:
        print(error, file=sys.stderr)
