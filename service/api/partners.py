"""Admin API for the partner directory: partners, their contacts, and tier-1 coverage.

Bodies are validated by the same models as the YAML file (service.directory). A PATCH is merged
into the stored record and the whole record validated again, so a change cannot leave a contact
with an sms channel and no phone. Audit rows and logs carry ids and field names, never addresses.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys, directory, suppression
from service.api import replies
from service.api.auth import principal_of, requires
from service.api.contract import operation
from service.api.errors import parse_json, read_body
from service.api.params import Limit, parse_query
from service.directory.validation import (
    AccountOwnerSpec,
    Channels,
    Component,
    Components,
    ContactSpec,
    Language,
    Name,
    PartnerFields,
    PartnerSpec,
    Policy,
    Slug,
    Tier,
    duplicates,
    issues,
)
from service.errors import Conflict, InvalidInput, NotFound, field_path
from service.notices import iso
from service.store import owners as owner_store
from service.store import partners as partner_store
from service.store.records import audit
from service.validation import Email, Phone

log = logging.getLogger("herald.api.partners")
routes = web.RouteTableDef()
Spec = TypeVar("Spec", bound=BaseModel)

PARTNER_KEYS = ("id", "name", "language", "components", "policy", "timezone")
CONTACT_KEYS = ("key", "name", "tier", "email", "phone", "webhook_url", "channels", "language")
OWNER_KEYS = ("key", "name", "email", "phone", "channels", "language")


def partner_json(row: dict[str, Any]) -> dict[str, Any]:
    body = {key: row[key] for key in PARTNER_KEYS}
    body.update(created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]))
    if "contacts" in row:
        body["contacts"] = [contact_json(c) for c in row["contacts"]]
    if "account_owners" in row:
        body["account_owners"] = [{key: owner[key] for key in OWNER_KEYS} for owner in row["account_owners"]]
    return body


def contact_json(row: dict[str, Any]) -> dict[str, Any]:
    body = {key: row[key] for key in CONTACT_KEYS}
    body.update(created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]))
    return body


def validate(model: type[Spec], payload: Any) -> Spec:
    """422 naming the first invalid field, worded as for the YAML file."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        loc, message = issues(exc)[0]
        path = field_path(loc)
        raise InvalidInput(f"{path}: {message}" if path else message, path or None) from exc


async def read_object(request: web.Request) -> dict[str, Any]:
    payload = parse_json(await read_body(request), request.content_type)
    if not isinstance(payload, dict):
        raise InvalidInput("send a JSON object", code="invalid_body")
    return payload


def _keep(payload: dict[str, Any], name: str, current: str) -> None:
    if name in payload and payload[name] != current:
        raise InvalidInput(f"{name} cannot change; create a new record instead", name, code="immutable_field")


async def _partner_or_404(conn: AsyncConnection, partner_id: str, with_contacts: bool = False) -> dict[str, Any]:
    partner = await partner_store.get_partner(conn, partner_id, with_contacts)
    if partner is None:
        raise NotFound(f"no partner {partner_id!r}")
    return partner


async def _contact_or_404(conn: AsyncConnection, partner_id: str, key: str) -> dict[str, Any]:
    contact = await partner_store.get_contact(conn, partner_id, key)
    if contact is None:
        raise NotFound(f"partner {partner_id!r} has no contact {key!r}")
    return contact


CONTACT_EXAMPLE = {
    "key": "suzuki",
    "name": "鈴木 一郎",
    "tier": 1,
    "email": "ichiro.suzuki@minato-shoji.example.jp",
    "phone": "090-1234-5678",
    "channels": ["sms", "email"],
}


class PartnerChanges(BaseModel):
    """What PATCH /v1/partners/{id} may send: any field of a partner but its contacts."""

    model_config = ConfigDict(extra="forbid")

    id: Slug | None = None
    name: Name | None = None
    language: Language | None = None
    components: Components | None = None
    policy: Policy | None = None


class ContactChanges(BaseModel):
    """What PATCH .../contacts/{key} may send: any field of a contact."""

    model_config = ConfigDict(extra="forbid")

    key: Slug | None = None
    name: Name | None = None
    tier: Tier | None = None
    email: Email | None = None
    phone: Phone | None = None
    channels: Channels | None = None
    language: Language | None = None


class PartnerQuery(BaseModel):
    limit: Limit = 50
    cursor: Slug | None = Field(None, description="`next_cursor` of the previous page")
    component: Component | None = Field(None, description="partners subscribed to this component")


# --- partners ----------------------------------------------------------------------------------


@routes.get("/v1/partners")
@requires("admin")
@operation("The partner directory, by id", {200: replies.PartnerPage}, query=PartnerQuery, tag="partners")
async def list_partners(request: web.Request) -> web.Response:
    query = parse_query(request, PartnerQuery)
    limit = query.limit
    async with request.app[appkeys.STORE].read() as conn:
        rows = await partner_store.list_partners(conn, limit + 1, query.cursor, query.component)
    next_cursor = rows[limit - 1]["id"] if len(rows) > limit else None
    return web.json_response({"items": [partner_json(r) for r in rows[:limit]], "next_cursor": next_cursor})


@routes.post("/v1/partners")
@requires("admin")
@operation(
    "Add a partner with its contacts",
    {201: replies.Partner},
    body=PartnerSpec,
    errors=(409,),
    tag="partners",
    example={
        "id": "minato-shoji",
        "name": "株式会社みなと商事",
        "language": "ja",
        "components": ["order-api", "payments"],
        "contacts": [CONTACT_EXAMPLE],
    },
)
async def create_partner(request: web.Request) -> web.Response:
    spec = validate(PartnerSpec, await read_object(request))
    repeated = duplicates([c.row() for c in spec.contacts], "key")
    if repeated:
        index, key = repeated[0]
        raise Conflict(f"contact key {key!r} appears twice", f"contacts[{index}].key", code="duplicate_key")
    actor = principal_of(request).name
    try:
        async with request.app[appkeys.STORE].begin() as conn:
            if await partner_store.get_partner(conn, spec.id, with_contacts=False):
                raise Conflict(f"partner {spec.id!r} already exists", "id", code="duplicate_id")
            await partner_store.insert_partner(conn, spec.row_with_contacts())
            await audit(
                conn, "partner.created", "partner", spec.id, actor, {"contacts": [c.key for c in spec.contacts]}
            )
            partner = await _partner_or_404(conn, spec.id, with_contacts=True)
    except IntegrityError as exc:  # created by a concurrent request after our check
        raise Conflict(f"partner {spec.id!r} already exists", "id", code="duplicate_id") from exc
    log.info("partner %s created by %s", spec.id, actor)
    return web.json_response(partner_json(partner), status=201)


@routes.get("/v1/partners/{id}")
@requires("admin")
@operation("A partner with its contacts", {200: replies.Partner}, tag="partners")
async def get_partner(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        partner = await _partner_or_404(conn, request.match_info["id"], with_contacts=True)
    return web.json_response(partner_json(partner))


@routes.patch("/v1/partners/{id}")
@requires("admin")
@operation(
    "Change a partner (not its contacts)",
    {200: replies.Partner},
    body=PartnerChanges,
    tag="partners",
    example={"components": ["order-api", "payments", "billing"], "policy": {"minor": {"1": ["email", "sms"]}}},
)
async def update_partner(request: web.Request) -> web.Response:
    partner_id = request.match_info["id"]
    payload = await read_object(request)
    if "contacts" in payload:
        raise InvalidInput(f"edit contacts at /v1/partners/{partner_id}/contacts", "contacts")
    validate(PartnerChanges, payload)
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        current = await _partner_or_404(conn, partner_id)
        _keep(payload, "id", partner_id)
        spec = validate(PartnerFields, {**{k: current[k] for k in PARTNER_KEYS}, **payload})
        await partner_store.update_partner(conn, partner_id, spec.row())
        await audit(conn, "partner.updated", "partner", partner_id, actor, {"fields": sorted(payload)})
        partner = await _partner_or_404(conn, partner_id, with_contacts=True)
    log.info("partner %s updated by %s", partner_id, actor)
    return web.json_response(partner_json(partner))


@routes.delete("/v1/partners/{id}")
@requires("admin")
@operation("Remove a partner and its contacts", {204: None}, tag="partners")
async def delete_partner(request: web.Request) -> web.Response:
    partner_id = request.match_info["id"]
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        partner = await _partner_or_404(conn, partner_id, with_contacts=True)
        await partner_store.delete_partner(conn, partner_id)
        await audit(
            conn, "partner.deleted", "partner", partner_id, actor, {"contacts": [c["key"] for c in partner["contacts"]]}
        )
    log.info("partner %s deleted by %s", partner_id, actor)
    return web.Response(status=204)


# --- contacts ----------------------------------------------------------------------------------


def _contact_subject(partner_id: str, key: str) -> str:
    return f"{partner_id}/{key}"


@routes.get("/v1/partners/{id}/contacts")
@requires("admin")
@operation("The contacts of a partner", {200: replies.ContactList}, tag="partners")
async def list_contacts(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        partner = await _partner_or_404(conn, request.match_info["id"], with_contacts=True)
    return web.json_response({"items": [contact_json(c) for c in partner["contacts"]]})


@routes.post("/v1/partners/{id}/contacts")
@requires("admin")
@operation(
    "Add a contact", {201: replies.Contact}, body=ContactSpec, errors=(409,), tag="partners", example=CONTACT_EXAMPLE
)
async def create_contact(request: web.Request) -> web.Response:
    partner_id = request.match_info["id"]
    spec = validate(ContactSpec, await read_object(request))
    actor = principal_of(request).name
    try:
        async with request.app[appkeys.STORE].begin() as conn:
            await _partner_or_404(conn, partner_id)
            if await partner_store.get_contact(conn, partner_id, spec.key):
                raise Conflict(f"partner {partner_id!r} already has contact {spec.key!r}", "key", code="duplicate_key")
            await partner_store.insert_contact(conn, partner_id, spec.row())
            await audit(
                conn,
                "contact.created",
                "contact",
                _contact_subject(partner_id, spec.key),
                actor,
                {"partner_id": partner_id, "key": spec.key, "tier": spec.tier},
            )
            contact = await _contact_or_404(conn, partner_id, spec.key)
    except IntegrityError as exc:
        raise Conflict(f"partner {partner_id!r} already has contact {spec.key!r}", "key", code="duplicate_key") from exc
    log.info("contact %s/%s created by %s", partner_id, spec.key, actor)
    return web.json_response(contact_json(contact), status=201)


@routes.patch("/v1/partners/{id}/contacts/{key}")
@requires("admin")
@operation(
    "Change a contact",
    {200: replies.Contact},
    body=ContactChanges,
    tag="partners",
    example={"tier": 2, "channels": ["email"]},
)
async def update_contact(request: web.Request) -> web.Response:
    partner_id, key = request.match_info["id"], request.match_info["key"]
    payload = await read_object(request)
    validate(ContactChanges, payload)
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        current = await _contact_or_404(conn, partner_id, key)
        _keep(payload, "key", key)
        spec = validate(ContactSpec, {**{k: current[k] for k in CONTACT_KEYS}, **payload})
        await partner_store.update_contact(conn, partner_id, key, spec.row())
        await audit(
            conn,
            "contact.updated",
            "contact",
            _contact_subject(partner_id, key),
            actor,
            {"partner_id": partner_id, "key": key, "fields": sorted(payload)},
        )
        contact = await _contact_or_404(conn, partner_id, key)
    log.info("contact %s/%s updated by %s", partner_id, key, actor)
    return web.json_response(contact_json(contact))


@routes.delete("/v1/partners/{id}/contacts/{key}")
@requires("admin")
@operation("Remove a contact", {204: None}, tag="partners")
async def delete_contact(request: web.Request) -> web.Response:
    partner_id, key = request.match_info["id"], request.match_info["key"]
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        await _contact_or_404(conn, partner_id, key)
        await partner_store.delete_contact(conn, partner_id, key)
        await audit(
            conn,
            "contact.deleted",
            "contact",
            _contact_subject(partner_id, key),
            actor,
            {"partner_id": partner_id, "key": key},
        )
    log.info("contact %s/%s deleted by %s", partner_id, key, actor)
    return web.Response(status=204)


# --- coverage ----------------------------------------------------------------------------------


@routes.get("/v1/directory/coverage")
@requires("admin")
@operation("Partners no incident could reach at tier 1", {200: replies.Coverage}, tag="partners")
async def coverage(request: web.Request) -> web.Response:
    async with request.app[appkeys.STORE].read() as conn:
        gaps = await directory.coverage_gaps(conn)
        suppressed = await suppression.suppressed_contacts(conn)
    return web.json_response({"gaps": gaps, "suppressed": [{**s, "since": iso(s["since"])} for s in suppressed]})


# --- account owners ------------------------------------------------------------------------------


class AccountOwners(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[AccountOwnerSpec]


@routes.put("/v1/partners/{id}/account-owners")
@requires("admin")
@operation(
    "Replace a partner's account owners (our staff copied on every notice)",
    {200: replies.Partner},
    body=AccountOwners,
    errors=(404, 409),
    tag="partners",
)
async def replace_account_owners(request: web.Request) -> web.Response:
    """The partner's account owners, replaced as a whole: `{"items": [{key, name, email, phone, channels}]}`."""
    partner_id = request.match_info["id"]
    spec = validate(AccountOwners, await read_object(request))
    repeated = duplicates([o.row() for o in spec.items], "key")
    if repeated:
        index, key = repeated[0]
        raise Conflict(f"account owner key {key!r} appears twice", f"items[{index}].key", code="duplicate_key")
    actor = principal_of(request).name
    async with request.app[appkeys.STORE].begin() as conn:
        await _partner_or_404(conn, partner_id)
        await owner_store.replace_owners(conn, partner_id, [o.row() for o in spec.items], time.time())
        await audit(
            conn, "partner.owners_replaced", "partner", partner_id, actor, {"owners": [o.key for o in spec.items]}
        )
        partner = await _partner_or_404(conn, partner_id, with_contacts=True)
    return web.json_response(partner_json(partner))
