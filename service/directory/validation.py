"""The partner directory's one validator: the same pydantic models check the YAML file and the
admin API's bodies, so a phone number or a channel list is checked in exactly one place; and
pydantic's errors worded for a person editing the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from service.settings import Severity
from service.validation import Email, Line, Phone, WebhookUrl

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


class _Reachable(_Spec):
    """Someone reached on ordered channels: each listed channel needs its address."""

    if TYPE_CHECKING:  # declared by each subclass, in its own order and with its own defaults
        channels: Channels

    @model_validator(mode="after")
    def _reachable_on_its_channels(self) -> Self:
        for channel in self.channels:
            address = ADDRESS_OF[channel]
            if getattr(self, address, None) is None:
                raise PydanticCustomError(
                    "address_missing",
                    "channel {channel} needs {address}",
                    {"channel": channel, "address": _ADDRESS_WORDS[address], "field": "channels"},
                )
        return self

    def row(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ContactSpec(_Reachable):
    key: Slug
    name: Name
    tier: Tier
    email: Email | None = None
    phone: Phone | None = None
    # The partner's system: signed JSON notices (Standard Webhooks) are POSTed here.
    webhook_url: WebhookUrl | None = None
    # Ordered preferences; empty means "whatever the policy says, in its order". (A factory, not
    # `= []`: pydantic deep-copies a mutable default for every contact.)
    channels: Channels = Field(default_factory=list)
    language: Language | None = None


class AccountOwnerSpec(_Reachable):
    """One of our own staff who owns the relationship with the partner: gets a copy of every notice
    the partner gets (by email, SMS or both), with the partner's delivery and acknowledgement status."""

    key: Slug
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    channels: Channels = Field(default_factory=lambda: list[ContactChannel](["email"]))
    language: Language = "ja"


class PartnerFields(_Spec):
    """A partner without its contacts: what PATCH /v1/partners/{id} may change."""

    id: Slug
    name: Name
    language: Language
    components: Components = Field(default_factory=list)
    policy: Policy | None = None
    # The partner's time zone for quiet hours; omitted = the company's.
    timezone: TimeZone | None = None

    def row(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"contacts", "account_owners"})


class PartnerSpec(PartnerFields):
    contacts: list[ContactSpec] = Field(default_factory=list)
    account_owners: list[AccountOwnerSpec] = Field(default_factory=list)

    def row_with_contacts(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class DirectoryFile(_Spec):
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


def duplicates(items: Any, key: str, seen: set[str] | None = None) -> list[tuple[int, str]]:
    """(index, value) of every item whose `key` repeats an earlier item's (or one of `seen`)."""
    if not isinstance(items, list):
        return []
    seen = set(seen or ())
    repeated = []
    for index, item in enumerate(items):
        value = item.get(key) if isinstance(item, dict) else None
        if not isinstance(value, str):
            continue
        if value in seen:
            repeated.append((index, value))
        seen.add(value)
    return repeated


def duplicate_issues(data: Any, ids: set[str] | None = None) -> list[tuple[Loc, str]]:
    """Repeated partner ids (`ids`: those of the file's partners before these) and contact keys."""
    partners = data.get("partners") if isinstance(data, dict) else None
    found: list[tuple[Loc, str]] = [
        (("partners", i, "id"), f"duplicate partner id {value!r}") for i, value in duplicates(partners, "id", ids)
    ]
    for i, partner in enumerate(partners if isinstance(partners, list) else []):
        contacts = partner.get("contacts") if isinstance(partner, dict) else None
        found += [
            (("partners", i, "contacts", j, "key"), f"duplicate contact key {value!r} in this partner")
            for j, value in duplicates(contacts, "key")
        ]
    return found
