"""A broadcast decides once per kind of contact, not once per contact: every contact still gets
exactly the rows the volume rules give it on its own (with its history in the incident), and the
dry run counts what publishing plans."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from service import appkeys, volume
from service.app import create_app
from service.policy import delivery_row, fallback_channels, planned_channels
from service.settings import Settings
from service.store import Store
from service.store import audience as audience_store
from service.store import deliveries as delivery_store
from service.store import incidents as incident_store
from service.store import suppressions as suppression_store
from service.store.models import Contact, Partner
from service.store.tables import deliveries, suppressions
from tests.helpers import auth, make_settings
from tests.helpers.bulk import BROADCAST, insert_directory, varied_directory
from tests.helpers.incidents import incident

COMPARED = (
    "partner_id", "contact_id", "tier", "channel", "address", "language", "priority", "status",
    "next_attempt_at", "message_id", "reason", "detail", "escalation_step", "purpose",
)  # fmt: skip


async def suppress_some(settings: Settings, contacts: list[dict[str, Any]]) -> None:
    """Every third email address and every fourth number refused for good."""
    barred = [("email", c["email"]) for c in contacts[::3] if c["email"]]
    barred += [("sms", c["phone"]) for c in contacts[::4] if c["phone"]]
    rows = [
        {"channel": channel, "address": address, "reason": "test", "source": "bounce", "created_at": time.time()}
        for channel, address in barred
    ]
    store = Store(settings.database.url)
    async with store.begin() as conn:
        await conn.execute(insert(suppressions), rows)
    await store.close()


async def each_contact_on_its_own(
    client: Any, notice_id: int, now: float, histories: dict[int, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """The notice's rows as `volume.plan_contact` decides them one contact at a time, each with its
    whole history in the incident as it was before the notice (`histories`)."""
    app = client.server.app
    settings: Settings = app[appkeys.SETTINGS]
    async with app[appkeys.STORE].read() as conn:
        notice = await incident_store.get_notice(conn, notice_id)
        assert notice is not None
        situation = await volume.situation_of(conn, notice, await suppression_store.active(conn))
        directory = await audience_store.partners_with_contacts(conn)
    kind, severity = notice["kind"], notice["severity"]

    def row_maker(partner: Partner, contact: Contact) -> volume.RowMaker:
        return lambda channel: delivery_row(settings, notice, partner, contact, channel, now)

    rows = []
    for partner in directory:
        for contact in partner.contacts:
            plan = volume.plan_contact(
                settings,
                situation,
                partner,
                contact,
                planned_channels(settings, partner, contact, severity, kind),
                fallback_channels(settings, contact, kind, severity),
                (histories or {}).get(contact.id, []),
                row_maker(partner, contact),
                now,
            )
            rows.extend(plan.rows)
    return rows


async def planned_rows(client: Any, notice_id: int) -> list[dict[str, Any]]:
    async with client.server.app[appkeys.STORE].read() as conn:
        query = select(deliveries).where(deliveries.c.notice_id == notice_id, deliveries.c.purpose == "partner")
        return [dict(r) for r in (await conn.execute(query.order_by(deliveries.c.id))).mappings()]


@pytest.mark.parametrize(
    ("kind", "severity", "fields"),
    [
        ("maintenance", "major", BROADCAST["fields"]),
        (
            "custom",
            "critical",
            {
                "subject": {"ja": "お知らせ", "en": "Notice"},
                "body": {"ja": "本文です。", "en": "The body."},
                "responsible": BROADCAST["fields"]["responsible"],
            },
        ),
    ],
)
async def test_a_broadcast_plans_each_contact_as_the_volume_rules_would_on_its_own_and_previews_the_same_counts(
    aiohttp_client: Any, db_url: str, kind: str, severity: str, fields: dict[str, Any]
) -> None:
    # Quiet hours all day long in every zone: a maintenance notice is held, a custom one is not.
    settings = make_settings(
        db_url,
        dispatch={"enabled": False},
        quiet_hours={"enabled": True, "start": "00:00", "end": "23:59"},
        notice_channels={"maintenance": {"any": ["sms", "email", "webhook"]}},
    )
    partners, contacts = varied_directory(36)
    await insert_directory(settings, partners, contacts)
    await suppress_some(settings, contacts)
    client = await aiohttp_client(create_app(settings))
    body = {"kind": kind, "severity": severity, "fields": fields, "audience": {"all_partners": True}}

    preview = await client.post("/v1/broadcasts?dry_run=true", json=body, headers=auth("operator"))
    assert preview.status == 200, await preview.text()
    audience = (await preview.json())["audience"]
    published = await client.post("/v1/broadcasts", json=body, headers=auth("operator"))
    assert published.status == 202, await published.text()
    outcome = await published.json()

    rows = await planned_rows(client, outcome["notice_id"])
    expected = await each_contact_on_its_own(client, outcome["notice_id"], rows[0]["created_at"])
    assert [{k: r[k] for k in COMPARED} for r in rows] == [{k: r[k] for k in COMPARED} for r in expected]
    reasons = {r["reason"] for r in rows}
    assert {"suppressed", "held" if kind == "maintenance" else None} <= reasons
    for figure in ("total", "partners", "by_tier", "by_channel", "by_reason"):
        assert audience[figure] == outcome["deliveries"][figure], figure
    assert audience["contacts"] == len({r["contact_id"] for r in rows if r["status"] == "pending"})


async def histories_now(client: Any, incident_id: int) -> dict[int, list[dict[str, Any]]]:
    async with client.server.app[appkeys.STORE].read() as conn:
        ids = [int(r[0]) for r in await conn.execute(select(deliveries.c.contact_id).distinct())]
        return await delivery_store.contact_history(conn, incident_id, ids)


async def age_history(client: Any, incident_id: int, now: float) -> None:
    """Contacts in three situations: a message an hour and more ago (no bearing), one sent half a
    minute ago (within the merge window), one still waiting; and every fifth contact with a second
    SMS, which reaches a cap of two."""
    async with client.server.app[appkeys.STORE].begin() as conn:
        c = deliveries.c
        old = {"status": "sent", "sent_at": now - 4000, "created_at": now - 4000, "next_attempt_at": now - 4000}
        await conn.execute(update(deliveries).where(c.incident_id == incident_id, c.contact_id % 3 == 1).values(old))
        recent = {"status": "sent", "sent_at": now - 30, "next_attempt_at": now - 30}
        await conn.execute(update(deliveries).where(c.incident_id == incident_id, c.contact_id % 3 == 2).values(recent))
        query = select(deliveries).where(c.incident_id == incident_id, c.channel == "sms", c.contact_id % 5 == 0)
        again = [dict(r) for r in (await conn.execute(query)).mappings()]
        for row in again:
            del row["id"]
            row.update(message_id=row["message_id"] + ".again", status="sent", sent_at=now - 60, created_at=now - 60)
        if again:
            await conn.execute(insert(deliveries), again)


async def test_updates_plan_each_contact_with_its_history_as_the_volume_rules_would_on_its_own(
    aiohttp_client: Any, db_url: str
) -> None:
    settings = make_settings(db_url, dispatch={"enabled": False}, volume={"sms_cap": 2, "merge_window_seconds": 120})
    partners, contacts = varied_directory(30)
    await insert_directory(settings, partners, contacts)
    client = await aiohttp_client(create_app(settings))
    opened = await client.post("/v1/incidents", json=incident(), headers=auth("operator"))
    assert opened.status == 202, await opened.text()
    incident_id = (await opened.json())["incident_id"]
    await age_history(client, incident_id, time.time())

    # A state change of a critical incident (never held), a progress update (held or merged),
    # then another state change, which goes at once and replaces the progress still held.
    reasons: set[str | None] = set()
    steps: list[dict[str, Any]] = [
        {"status": "identified"},
        {"notice": {"fields": {"progress_percent": 40}}},
        {"status": "monitoring"},
    ]
    for body in steps:
        fields = {
            "current_status": {"ja": "対応中です。", "en": "We are on it."},
            **body.get("notice", {}).get("fields", {}),
        }
        payload = {**body, "notice": {"fields": fields}}
        before = await histories_now(client, incident_id)
        preview = await client.post(
            f"/v1/incidents/{incident_id}/updates?dry_run=true", json=payload, headers=auth("operator")
        )
        assert preview.status == 200, await preview.text()
        published = await client.post(f"/v1/incidents/{incident_id}/updates", json=payload, headers=auth("operator"))
        assert published.status == 202, await published.text()
        outcome = await published.json()

        rows = await planned_rows(client, outcome["notice_id"])
        expected = await each_contact_on_its_own(client, outcome["notice_id"], rows[0]["created_at"], before)
        assert [{k: r[k] for k in COMPARED} for r in rows] == [{k: r[k] for k in COMPARED} for r in expected]
        audience = (await preview.json())["audience"]
        for figure in ("total", "partners", "by_tier", "by_channel", "by_reason"):
            assert audience[figure] == outcome["deliveries"][figure], figure
        reasons |= {r["reason"] for r in rows}
        reasons |= {r["reason"] for r in await planned_rows(client, outcome["notice_id"] - 1)}
    assert {"capped", "held", "merged"} <= reasons
