"""A dry run counts from a summary of the directory kept between requests (one plan per kind of
partner). An operator who previews, changes the directory and previews again must see the new
directory, however it was changed, and the preview must still say exactly what publishing does."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import delete, insert, select, text, update

from service import appkeys
from service.app import create_app
from service.store import Store, directory_snapshot
from service.store.tables import account_owners, contacts, deliveries
from service.store.tables import partners as partner_table
from tests.helpers import auth, make_settings, wait_until
from tests.helpers.bulk import insert_directory, partner_row, varied_directory

BODY: dict[str, Any] = {
    "kind": "custom",
    "severity": "critical",
    "fields": {
        "subject": {"ja": "お知らせ", "en": "Notice"},
        "body": {"ja": "本文です。", "en": "The body."},
        "responsible": {"name": {"ja": "運用センター", "en": "Operations Center"}},
    },
}
FIGURES = ("total", "partners", "by_tier", "by_channel", "by_reason", "internal_copies")


async def preview(client: Any, audience: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/v1/broadcasts?dry_run=true", json={**BODY, "audience": audience}, headers=auth("operator")
    )
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def publish(client: Any, audience: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    response = await client.post("/v1/broadcasts", json={**BODY, "audience": audience}, headers=auth("operator"))
    assert response.status == 202, await response.text()
    outcome = await response.json()
    async with client.server.app[appkeys.STORE].read() as conn:
        query = select(deliveries).where(deliveries.c.notice_id == outcome["notice_id"])
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return outcome["deliveries"], rows


def without_tier1(found: dict[str, Any]) -> list[str]:
    warning = next((w for w in found["warnings"] if w["code"] == "no_tier1_contact"), None)
    return [] if warning is None else [p["id"] for p in warning["partners"]]


async def owners_for(client: Any, partner_ids: list[str]) -> None:
    now = time.time()
    rows = [
        {
            "partner_id": pid,
            "key": "owner",
            "name": "営業担当",
            "email": f"owner-{pid}@herald.example.com",
            "phone": "+819011112222" if n % 2 else None,
            "channels": ["email", "sms"],
            "language": "ja",
            "created_at": now,
            "updated_at": now,
        }
        for n, pid in enumerate(partner_ids)
    ]
    async with client.server.app[appkeys.STORE].begin() as conn:
        await conn.execute(insert(account_owners), rows)


async def test_a_preview_sees_every_change_to_the_directory_and_still_counts_what_publishing_plans(
    aiohttp_client: Any, db_url: str
) -> None:
    settings = make_settings(db_url, dispatch={"enabled": False})
    partners, contact_rows = varied_directory(24)
    await insert_directory(settings, partners, contact_rows)
    client = await aiohttp_client(create_app(settings))
    store = client.server.app[appkeys.STORE]
    everyone = {"all_partners": True}

    first = await preview(client, everyone)
    assert first["audience"]["partners"] == 24
    assert first["audience"]["internal_copies"] == 0
    assert without_tier1(first) == []

    # Changed behind the API's back, as an import or an administrator's SQL would: three
    # partners lose their tier-1 contacts, one contact gives up email for SMS, four partners get
    # an account owner.
    async with store.begin() as conn:
        await conn.execute(
            delete(contacts).where(
                contacts.c.tier == 1, contacts.c.partner_id.in_(["shape-003", "shape-010", "shape-017"])
            )
        )
        await conn.execute(
            update(contacts)
            .where(contacts.c.partner_id == "shape-005", contacts.c.key == "c0")
            .values(channels=["sms"], phone="+819000000005")
        )
    await owners_for(client, ["shape-001", "shape-002", "shape-003", "shape-020"])

    second = await preview(client, everyone)
    assert without_tier1(second) == ["shape-003", "shape-010", "shape-017"]
    warning = next(w for w in second["warnings"] if w["code"] == "no_tier1_contact")
    assert [p["name"] for p in warning["partners"]] == ["Partner 3", "Partner 10", "Partner 17"]
    assert second["audience"]["internal_copies"] == 6  # two owners with an email, two with email and SMS
    assert second["audience"]["by_channel"] != first["audience"]["by_channel"]

    planned, rows = await publish(client, everyone)
    for figure in FIGURES:
        assert second["audience"][figure] == planned[figure], figure
    told_tier1 = {r["partner_id"] for r in rows if r["tier"] == 1 and r["purpose"] == "partner"}
    assert sorted({p["id"] for p in partners} - told_tier1) == without_tier1(second)


async def test_a_preview_by_tiers_and_components_counts_what_publishing_plans(aiohttp_client: Any, db_url: str) -> None:
    settings = make_settings(db_url, dispatch={"enabled": False})
    partners, contact_rows = varied_directory(30)
    for n, partner in enumerate(partners):
        partner["components"] = ["order-api"] if n % 3 else ["billing"]
    await insert_directory(settings, partners, contact_rows)
    client = await aiohttp_client(create_app(settings))
    await owners_for(client, [p["id"] for p in partners[::4]])

    audiences: list[dict[str, Any]] = [
        {"components": ["order-api"], "tiers": [2, 3]},
        {"components": ["billing"]},
        {"partners": ["shape-001", "shape-002", "shape-009"], "tiers": [1]},
    ]
    for audience in audiences:
        found = await preview(client, audience)
        planned, rows = await publish(client, audience)
        for figure in FIGURES:
            assert found["audience"][figure] == planned[figure], (audience, figure)
        assert {r["tier"] for r in rows if r["purpose"] == "partner"} <= set(audience.get("tiers") or [1, 2, 3])
        if audience.get("tiers") == [2, 3]:
            assert without_tier1(found) == []  # tier 1 was not asked for


async def test_a_new_partner_written_between_two_previews_is_counted(aiohttp_client: Any, db_url: str) -> None:
    settings = make_settings(db_url, dispatch={"enabled": False})
    partners, contact_rows = varied_directory(6)
    await insert_directory(settings, partners, contact_rows)
    client = await aiohttp_client(create_app(settings))
    before = await preview(client, {"all_partners": True})

    created = await client.post(
        "/v1/partners",
        json={
            "id": "newcomer",
            "name": "新規取引先",
            "language": "en",
            "components": ["*"],
            "contacts": [{"key": "ops", "name": "Ops", "tier": 1, "email": "ops@newcomer.example.com"}],
        },
        headers=auth("admin"),
    )
    assert created.status in (200, 201), await created.text()
    after = await preview(client, {"all_partners": True})
    assert after["audience"]["partners"] == before["audience"]["partners"] + 1
    assert after["audience"]["languages"].get("en", 0) == before["audience"]["languages"].get("en", 0) + 1

    async with client.server.app[appkeys.STORE].read() as conn:
        version = (await conn.execute(text("SELECT version FROM directory_version"))).scalar()
    assert version and version > 0


async def test_once_built_the_snapshot_is_rebuilt_after_a_change_before_anyone_previews_again(
    aiohttp_client: Any, db_url: str
) -> None:
    settings = make_settings(db_url, dispatch={"enabled": False}, directory={"preview_refresh_seconds": 0.1})
    partners, contact_rows = varied_directory(4)
    await insert_directory(settings, partners, contact_rows)
    client = await aiohttp_client(create_app(settings))
    store = client.server.app[appkeys.STORE]

    async def database_version() -> int:
        async with store.read() as conn:
            return int((await conn.execute(text("SELECT version FROM directory_version"))).scalar())

    async def snapshot_is_current() -> bool:
        return directory_snapshot.kept_version(store.engine.sync_engine) == await database_version()

    await preview(client, {"all_partners": True})  # the first dry run builds it
    assert await snapshot_is_current()
    before = await database_version()
    changed = await client.patch("/v1/partners/shape-002", json={"language": "en"}, headers=auth("admin"))
    assert changed.status == 200, await changed.text()
    assert await database_version() > before
    await wait_until(snapshot_is_current)


async def test_partners_that_differ_in_one_contact_detail_are_not_counted_alike(
    aiohttp_client: Any, db_url: str
) -> None:
    # Eight partners alike; then one contact of one of them at a time differs in one detail.
    settings = make_settings(db_url, dispatch={"enabled": False})
    now = time.time()
    partners = [partner_row(f"alike-{n}", f"Partner {n}", "ja", now) for n in range(8)]
    contact_rows: list[dict[str, Any]] = [
        {
            "partner_id": f"alike-{n}",
            "key": f"c{k}",
            "name": f"Contact {k}",
            "tier": 1 + k,
            "email": f"c{k}@alike{n}.example.jp",
            "phone": f"+81901234{n:02d}{k:02d}",
            "webhook_url": None,
            "channels": [],  # whatever the policy offers and an address reaches
            "language": None,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(8)
        for k in range(2)
    ]
    await insert_directory(settings, partners, contact_rows)
    client = await aiohttp_client(create_app(settings))
    store = client.server.app[appkeys.STORE]
    changes: list[dict[str, Any]] = [
        {"tier": 3},
        {"channels": ["email"]},
        {"phone": None},
        {"email": None},
        {"language": "en"},
        {"webhook_url": "https://hooks.example.com/x"},
    ]
    for n, change in enumerate(changes, start=1):
        async with store.begin() as conn:
            await conn.execute(
                update(contacts).where(contacts.c.partner_id == f"alike-{n}", contacts.c.key == "c0").values(**change)
            )
        found = await preview(client, {"all_partners": True})
        planned, rows = await publish(client, {"all_partners": True})
        for figure in FIGURES:
            assert found["audience"][figure] == planned[figure], (change, figure)
        reached = {(r["contact_id"], r["language"]) for r in rows if r["status"] == "pending"}
        assert found["audience"]["languages"] == dict(Counter(language for _, language in reached)), change


async def test_the_directory_version_rises_with_each_committed_change_and_not_with_a_rolled_back_one(
    db_url: str,
) -> None:
    store = Store(db_url)
    await store.upgrade()

    async def version() -> int:
        async with store.read() as conn:
            return int((await conn.execute(text("SELECT version FROM directory_version"))).scalar_one())

    try:
        now = time.time()
        start = await version()
        async with store.begin() as conn:  # many statements, one transaction
            for n in range(20):
                await conn.execute(insert(partner_table), partner_row(f"v-{n}", f"Partner {n}", "ja", now))
        after_insert = await version()
        assert after_insert > start

        async with store.begin() as conn:
            await conn.execute(update(partner_table).where(partner_table.c.id == "v-3").values(language="en"))
        assert await version() > after_insert

        before_rollback = await version()
        async with store.rehearse() as conn:
            await conn.execute(delete(partner_table).where(partner_table.c.id == "v-4"))
        assert await version() == before_rollback
    finally:
        await store.close()
