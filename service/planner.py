"""Planner: directory × policy[severity][tier] × component subscription → Delivery rows.

All deliveries of a notice are written in the caller's transaction, so a notice is either
published with its whole plan or not at all.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import compose, escalation, promises, volume
from service.errors import InvalidInput
from service.notices import LANGUAGE_NAMES, Audience, missing_text
from service.policy import delivery_row, fallback_channels, planned_channels, priority_of
from service.settings import Settings
from service.store import audience as audience_store
from service.store import deliveries as delivery_store
from service.store import directory_snapshot
from service.store import incidents as incident_store
from service.store import owners as owner_store
from service.store import suppressions as suppression_store
from service.store.engine import rehearsing
from service.store.models import Contact, Incident, Notice, Partner

PARTNERS_PER_PAGE = 1000


NO_TIER1_LISTED = 50


@dataclass(frozen=True, slots=True)
class RowShape:
    """One row of a contact's plan as the volume rules left it: its channel and the fields they
    decide; the rest is the policy's row for that contact and channel."""

    channel: str
    status: str
    reason: str | None
    detail: dict[str, Any] | None
    next_attempt_at: float


@dataclass(frozen=True, slots=True, eq=False)
class ContactShape:
    """A contact's whole plan for the notice, without who the contact is (compared by identity:
    contacts planned alike share one)."""

    rows: tuple[RowShape, ...]
    reached: bool  # a row goes now or later (pending)

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> ContactShape:
        shaped = tuple(
            RowShape(r["channel"], r["status"], r["reason"], r["detail"], r["next_attempt_at"]) for r in rows
        )
        return cls(shaped, any(r.status == "pending" for r in shaped))


@dataclass
class PlanSummary:
    """What a plan holds, counted while it is made: the publish reply and the dry-run preview
    read the same counts."""

    total: int = 0
    by_tier: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    partners: int = 0
    # Rows the volume rules shaped (capped, merged, held, suppressed), by reason.
    by_reason: Counter[str] = field(default_factory=Counter)
    # Account owners' copies: planned with the notice, never part of the partner figures above.
    internal: int = 0
    contacts: int = 0
    by_tier_channel: Counter[tuple[int, str]] = field(default_factory=Counter)
    # Contacts per language, and SMS deliveries per (language, tier): what a preview renders.
    languages: Counter[str] = field(default_factory=Counter)
    sms: Counter[tuple[str, int]] = field(default_factory=Counter)
    # Partners of the audience that no tier-1 contact of theirs will hear from (first few listed).
    without_tier1: int = 0
    without_tier1_listed: list[dict[str, str]] = field(default_factory=list)
    # Languages of every partner row planned, sent or not: the text the notice must have.
    readers: set[str] = field(default_factory=set)

    def count(self, tier: int, language: str, shape: ContactShape, contacts: int = 1) -> None:
        """`contacts` contacts of this tier and language, each planned as `shape`."""
        if shape.rows:
            self.readers.add(language)
        if shape.reached:
            self.contacts += contacts
            self.languages[language] += contacts
        for row in shape.rows:
            if row.reason:
                self.by_reason[row.reason] += contacts
            if row.status != "pending":
                continue
            self.total += contacts
            self.by_tier[str(tier)] += contacts
            self.by_channel[row.channel] += contacts
            self.by_tier_channel[tier, row.channel] += contacts
            if row.channel == "sms":
                self.sms[language, tier] += contacts

    def add_partner(self, partner_id: str, name: str, reached: bool, tier1_missing: bool) -> None:
        """After a partner's contacts are counted: whether any is reached now, and whether the
        partner lacks a tier-1 row (a tier-1 row held for quiet hours or capped still reaches it)."""
        self.partners += reached
        if tier1_missing:
            self.without_tier1 += 1
            if len(self.without_tier1_listed) < NO_TIER1_LISTED:
                self.without_tier1_listed.append({"id": partner_id, "name": name})

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "internal_copies": self.internal,
            "partners": self.partners,
            "by_tier": dict(self.by_tier),
            "by_channel": dict(self.by_channel),
            "by_reason": dict(self.by_reason),
        }


async def check_audience(conn: AsyncConnection, audience: Audience, path: str) -> None:
    if not audience.partners:
        return
    unknown = sorted(set(audience.partners) - await audience_store.known_partner_ids(conn, audience.partners))
    if unknown:
        raise InvalidInput(f"no partner with id {', '.join(unknown)}", f"{path}.partners", code="unknown_partner")


def audience_filter(
    audience: dict[str, Any], incident: dict[str, Any] | None
) -> tuple[list[str] | None, list[str] | None, list[int] | None]:
    """(partner ids, components, tiers) to select: listed partners, everyone, or the partners
    subscribed to the audience's components (by default the incident's)."""
    tiers = list(audience.get("tiers") or []) or None
    if audience.get("partners"):
        return list(audience["partners"]), None, tiers
    if audience.get("all_partners"):
        return None, None, tiers
    return None, list(audience.get("components") or (incident or {}).get("components") or []), tiers


async def publish(
    conn: AsyncConnection, settings: Settings, notice: dict[str, Any], incident: dict[str, Any] | None = None
) -> PlanSummary:
    """Mark the notice published, keep its rendered text as evidence, and plan its deliveries.
    `incident` is the notice's incident as the caller already holds it (read when not given)."""
    if incident is None and notice["incident_id"] is not None:
        incident = await incident_store.get_incident(conn, notice["incident_id"])
    now = time.time()
    rendered = compose.evidence(settings, Notice.from_row(notice), Incident.from_row(incident) if incident else None)
    await incident_store.update_notice(
        conn, notice["id"], {"state": "published", "published_at": now, "rendered": rendered}
    )
    await promises.on_published(conn, settings, notice, now)
    if rehearsing():
        # A dry run counts the plan without building its rows (the transaction is rolled back
        # anyway), one kind of partner at a time; the decisions are the same code either way.
        summary = await count_plan(conn, settings, notice, incident, now)
    else:
        summary = PlanSummary()
        async for rows in plan_deliveries(conn, settings, notice, incident, now, summary):
            await delivery_store.insert_deliveries(conn, rows)
            pending = [r for r in rows if r["status"] == "pending" and r["purpose"] == "partner"]
            await escalation.schedule_for_notice(conn, settings, notice, pending, now)
    if not notice.get("allow_language_fallback"):
        check_languages(notice, summary.readers)
    return summary


def check_languages(notice: dict[str, Any], readers: set[str]) -> None:
    """422 naming every operator-written field that has no text in a language some recipients
    read, unless the operator allowed the fallback for this notice. Raised inside the publishing
    transaction, so nothing of the notice is kept."""
    missing = missing_text(notice["fields"], readers)
    if not missing:
        return
    prefix = "notice.fields." if notice["incident_id"] is not None else "fields."
    paths = [prefix + path for path in missing]
    languages = sorted({path.rsplit(".", 1)[1] for path in missing})
    raise InvalidInput(
        f"recipients read {' and '.join(LANGUAGE_NAMES[lang] for lang in languages)}, but these fields have no text "
        f"in it: {', '.join(paths)}; write them in every language or set allow_language_fallback",
        paths[0],
        code="missing_language",
    )


async def plan_deliveries(
    conn: AsyncConnection,
    settings: Settings,
    notice: dict[str, Any],
    incident: dict[str, Any] | None,
    now: float,
    summary: PlanSummary,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The notice's deliveries a page of partners at a time, so a broadcast to the whole directory
    holds one page in memory, not every row; `summary` counts what was planned."""
    planning, partner_ids, components, tiers = await _planning(conn, settings, notice, incident, now)
    bearing = await volume.contacts_history_may_bear(conn, settings, planning.situation, now)
    tier1_asked = _tier1_asked(tiers)
    after = None
    while True:
        page = await audience_store.partners_with_contacts(
            conn, partner_ids, components, tiers, after=after, limit=PARTNERS_PER_PAGE
        )
        if not page:
            return
        history = await _history(conn, notice, page, bearing)
        rows: list[dict[str, Any]] = []
        superseded: list[tuple[int, str]] = []
        told: list[str] = []
        alike: Counter[tuple[int, str, ContactShape]] = Counter()  # counted once per page
        for partner in page:
            planned = planning.plan_partner(partner, history, alike, summary)
            summary.add_partner(partner.id, partner.name, planned.reached, tier1_asked and not planned.tier1_planned)
            if planned.reached:
                told.append(partner.id)
            for contact, contact_plan in planned.contacts:
                rows.extend(planning.rows_of(partner, contact, contact_plan))
                superseded.extend(contact_plan.superseded)
        for (tier, language, shape), contacts in alike.items():
            summary.count(tier, language, shape, contacts)
        copies = await owner_copies(conn, settings, notice, told, now)
        summary.internal += len(copies)
        await delivery_store.mark_merged(conn, superseded, now)
        yield rows + copies
        if len(page) < PARTNERS_PER_PAGE:
            return
        after = page[-1].id


async def count_plan(
    conn: AsyncConnection, settings: Settings, notice: dict[str, Any], incident: dict[str, Any] | None, now: float
) -> PlanSummary:
    """Count the plan `plan_deliveries` would make, without its rows: a dry run.

    Each kind of partner in the directory (service/store/directory_snapshot.py) is planned once
    and counted once per partner of that kind in the audience. A partner with a suppressed address
    or a contact whose history may bear on the plan is planned from its own rows, as a publish would."""
    summary = PlanSummary()
    snapshot = await directory_snapshot.current(conn)
    if snapshot is None:  # a schema without the directory version: plan page by page
        async for _ in plan_deliveries(conn, settings, notice, incident, now, summary):
            pass
        return summary
    planning, partner_ids, components, tiers = await _planning(conn, settings, notice, incident, now)
    selected = await audience_store.audience_ids(conn, partner_ids, components)
    bearing = await volume.contacts_history_may_bear(conn, settings, planning.situation, now)
    bearing_partners = set(bearing.values())
    # Planned from their own rows: partners the snapshot cannot stand for (a suppressed address,
    # a history that may bear, or added since the snapshot's version was read).
    suppressed = await audience_store.with_address_in(conn, planning.situation.suppressed)
    own = {pid for pid in selected if pid in suppressed or pid in bearing_partners or pid not in snapshot.kind_of}
    planned_alone: dict[str, tuple[str, PartnerPlan]] = {}
    alike: Counter[tuple[int, str, ContactShape]] = Counter()
    alone = sorted(own)
    for start in range(0, len(alone), PARTNERS_PER_PAGE):
        page = await audience_store.partners_with_contacts(conn, alone[start : start + PARTNERS_PER_PAGE], tiers=tiers)
        history = await _history(conn, notice, page, bearing)
        for partner in page:
            planned_alone[partner.id] = partner.name, planning.plan_partner(partner, history, alike, summary)
    in_audience: Counter[int] = Counter(snapshot.kind_of[pid] for pid in selected if pid not in own)
    by_kind: dict[int, PartnerPlan] = {}
    for kind, partners in in_audience.items():
        by_kind[kind] = planning.plan_partner(snapshot.of_tiers(kind, tiers), None, alike, summary, partners)
    for (tier, language, shape), contacts in alike.items():
        summary.count(tier, language, shape, contacts)
    tier1_asked = _tier1_asked(tiers)
    told_alone = []
    for pid in selected:
        if pid in own:
            if pid not in planned_alone:  # deleted since it was selected
                continue
            name, planned = planned_alone[pid]
            if planned.reached:
                told_alone.append(pid)
        else:
            name, planned = "", by_kind[snapshot.kind_of[pid]]  # named below if listed
            if planned.reached:
                summary.internal += snapshot.owner_copies.get(pid, 0)
        summary.add_partner(pid, name, planned.reached, tier1_asked and not planned.tier1_planned)
    summary.internal += len(await owner_copies(conn, settings, notice, told_alone, now))
    unnamed = [listed["id"] for listed in summary.without_tier1_listed if not listed["name"]]
    names = await audience_store.names_of(conn, unnamed) if unnamed else {}
    for listed in summary.without_tier1_listed:
        listed["name"] = listed["name"] or names.get(listed["id"], listed["id"])
    return summary


def _tier1_asked(tiers: Sequence[int] | None) -> bool:
    return tiers is None or 1 in tiers


async def _planning(
    conn: AsyncConnection, settings: Settings, notice: dict[str, Any], incident: dict[str, Any] | None, now: float
) -> tuple[ContactPlanning, list[str] | None, list[str] | None, list[int] | None]:
    audience = notice["audience"] or {}
    situation = await volume.situation_of(conn, notice, await suppression_store.active(conn))
    return ContactPlanning(settings, situation, now), *audience_filter(audience, incident)


async def _history(
    conn: AsyncConnection, notice: dict[str, Any], page: Sequence[Partner], bearing: dict[int, str]
) -> dict[int, list[dict[str, Any]]]:
    """The incident history of the page's contacts that may bear on the plan (none for the rest)."""
    ids = [c.id for p in page for c in p.contacts if c.id in bearing]
    return await delivery_store.contact_history(conn, notice["incident_id"], ids)


@dataclass(frozen=True, slots=True)
class PartnerPlan:
    """A partner's plan: each contact's, whether any contact is reached, and whether a tier-1
    contact has a row (a tier-1 row held for quiet hours or capped still reaches the partner)."""

    contacts: list[tuple[Contact, PlannedContact]]
    reached: bool
    tier1_planned: bool


@dataclass(frozen=True, slots=True)
class PlannedContact:
    shape: ContactShape
    rows: list[dict[str, Any]] | None = None  # the rows as decided, when decided for this contact alone
    superseded: tuple[tuple[int, str], ...] = ()  # (held delivery id, replaced by message id)


class ContactPlanning:
    """One notice's decisions per contact: the policy's channels, shaped by caps, merging, quiet
    hours and suppression (`service/volume.py`).

    A contact whose history in the incident bears on the decision (`volume.history_bears`) is
    decided on its own. Any other gets the plan decided for the first contact with the same
    `volume.shape_key`, so a broadcast to 30,000 contacts decides a handful of times; its rows are
    that plan on this contact's own policy rows."""

    def __init__(self, settings: Settings, situation: volume.IncidentSituation, now: float) -> None:
        self.settings, self.situation, self.now = settings, situation, now
        self._channels: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._shapes: dict[tuple[Any, ...], PlannedContact] = {}

    def channels(self, partner: Partner, contact: Contact) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(planned, fallback) channels: what the policy offers this contact for the notice."""
        policy = None if partner.policy is None else json.dumps(partner.policy, sort_keys=True)
        key = (policy, contact.tier, tuple(contact.channels), contact.reachable())
        found = self._channels.get(key)
        if found is None:
            kind, severity = self.situation.notice["kind"], self.situation.notice["severity"]
            found = self._channels[key] = (
                tuple(planned_channels(self.settings, partner, contact, severity, kind)),
                tuple(fallback_channels(self.settings, contact, kind, severity)),
            )
        return found

    def plan(self, partner: Partner, contact: Contact, history: list[dict[str, Any]] | None) -> PlannedContact:
        channels, fallback = self.channels(partner, contact)
        if history and volume.history_bears(self.settings, self.situation, history, self.now):
            decided = self._decide(partner, contact, channels, fallback, history)
            return PlannedContact(ContactShape.of(decided.rows), decided.rows, tuple(decided.superseded))
        key = volume.shape_key(self.situation, partner, contact, channels, fallback)
        found = self._shapes.get(key)
        if found is None:
            decided = self._decide(partner, contact, channels, fallback, [])
            found = self._shapes[key] = PlannedContact(ContactShape.of(decided.rows))
        return found

    def plan_partner(
        self,
        partner: Partner,
        history: dict[int, list[dict[str, Any]]] | None,
        alike: Counter[tuple[int, str, ContactShape]],
        summary: PlanSummary,
        partners: int = 1,
    ) -> PartnerPlan:
        """Plan each contact of the partner (or of `partners` partners just like it). Contacts
        planned like their peers are tallied in `alike`, for the caller to count once; contacts
        decided alone are counted in `summary` now."""
        reached = tier1_planned = False
        contacts = []
        for contact in partner.contacts:
            language = contact.language or partner.language
            planned = self.plan(partner, contact, history.get(contact.id) if history else None)
            shape = planned.shape
            if planned.rows is None:
                alike[contact.tier, language, shape] += partners
            else:
                summary.count(contact.tier, language, shape, partners)
            reached = reached or shape.reached
            tier1_planned = tier1_planned or (contact.tier == 1 and bool(shape.rows))
            contacts.append((contact, planned))
        return PartnerPlan(contacts, reached, tier1_planned)

    def rows_of(self, partner: Partner, contact: Contact, planned: PlannedContact) -> list[dict[str, Any]]:
        """The contact's delivery rows: as decided for it, or its policy rows shaped like its peers'."""
        if planned.rows is not None:
            return planned.rows
        rows = []
        for shaped in planned.shape.rows:
            row = delivery_row(self.settings, self.situation.notice, partner, contact, shaped.channel, self.now)
            row["status"], row["reason"] = shaped.status, shaped.reason
            row["detail"] = None if shaped.detail is None else dict(shaped.detail)
            row["next_attempt_at"] = shaped.next_attempt_at
            rows.append(row)
        return rows

    def _decide(
        self,
        partner: Partner,
        contact: Contact,
        channels: Sequence[str],
        fallback: Sequence[str],
        history: list[dict[str, Any]],
    ) -> volume.ContactPlan:
        notice, now = self.situation.notice, self.now
        return volume.plan_contact(
            self.settings,
            self.situation,
            partner,
            contact,
            list(channels),
            list(fallback),
            history,
            lambda channel: delivery_row(self.settings, notice, partner, contact, channel, now),
            now,
        )


async def owner_copies(
    conn: AsyncConnection, settings: Settings, notice: dict[str, Any], partner_ids: list[str], now: float
) -> list[dict[str, Any]]:
    """A copy for each account owner of each partner told, due at the same moment and as urgent as
    the partner's tier-1 contacts' notice, on each of the owner's channels with an address."""
    if not partner_ids:
        return []
    copies = []
    for partner_id, owners in (await owner_store.owners_of(conn, partner_ids)).items():
        for owner in owners:
            for channel, address in owner_store.copy_channels(owner):
                row = internal_row(
                    settings,
                    notice,
                    partner_id,
                    "internal",
                    address,
                    owner["language"],
                    now,
                    f"o{owner['id']}",
                    channel,
                )
                row["owner_id"] = owner["id"]
                copies.append(row)
    return copies


def internal_row(
    settings: Settings,
    notice: dict[str, Any],
    partner_id: str,
    purpose: str,
    address: str,
    language: str,
    now: float,
    key: str,
    channel: str = "email",
) -> dict[str, Any]:
    """A delivery that is not a partner's notice (answer, reminder, account owner's copy): it goes
    through the dispatcher like any other but never counts in a partner delivery figure."""
    return {
        "notice_id": notice["id"],
        "incident_id": notice["incident_id"],
        "partner_id": partner_id,
        "contact_id": 0,
        "tier": 0,
        "channel": channel,
        "address": address,
        "language": language,
        "priority": priority_of(notice["severity"], 1, channel),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "message_id": f"<herald.n{notice['id']}.{key}.{channel}@{compose.sender_domain(settings)}>",
        "escalation_step": 0,
        "drill": notice.get("drill"),
        "purpose": purpose,
        "owner_id": None,
        "question_id": None,
        "reason": None,
        "detail": None,
        "created_at": now,
        "updated_at": now,
    }
