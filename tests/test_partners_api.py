"""The admin API edits the partner directory with the same validation as the YAML file."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from service import appkeys, directory
from service.store.tables import audit_log
from tests.helpers import EXAMPLE_DIRECTORY, auth

ADMIN = auth("admin")

MINATO: dict[str, Any] = {
    "id": "minato-shoji",
    "name": "株式会社みなと商事",
    "language": "ja",
    "components": ["order-api", "payments"],
    "contacts": [
        {
            "key": "suzuki",
            "name": "鈴木 一郎",
            "tier": 1,
            "email": "ichiro.suzuki@minato-shoji.example.jp",
            "phone": "090-1234-5678",
            "channels": ["sms", "email"],
        },
        {"key": "takahashi", "name": "高橋 直子", "tier": 2, "email": "naoko.takahashi@minato-shoji.example.jp"},
    ],
}


async def create(client: Any, body: dict[str, Any]) -> Any:
    return await client.post("/v1/partners", json=body, headers=ADMIN)


async def audit_rows(client: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        return [dict(r) for r in (await conn.execute(select(audit_log).order_by(audit_log.c.id))).mappings()]


async def test_admin_can_create_update_and_delete_partners_and_contacts(client: Any) -> None:
    created = await create(client, MINATO)
    assert created.status == 201, await created.text()
    body = await created.json()
    assert body["contacts"][0]["phone"] == "+819012345678"
    assert [c["key"] for c in body["contacts"]] == ["suzuki", "takahashi"]

    patched = await client.patch(
        "/v1/partners/minato-shoji",
        json={"name": "みなと商事株式会社", "policy": {"minor": {"1": ["email", "sms"]}}},
        headers=ADMIN,
    )
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["name"] == "みなと商事株式会社"
    assert (await patched.json())["policy"] == {"minor": {"1": ["email", "sms"]}}

    added = await client.post(
        "/v1/partners/minato-shoji/contacts",
        headers=ADMIN,
        json={"key": "kato", "name": "加藤 美咲", "tier": 3, "email": "misaki.kato@minato-shoji.example.jp"},
    )
    assert added.status == 201, await added.text()
    changed = await client.patch(
        "/v1/partners/minato-shoji/contacts/kato",
        headers=ADMIN,
        json={"tier": 2, "phone": "+81 80-2345-6789", "channels": ["email", "sms"]},
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["phone"] == "+818023456789"

    listed = await (await client.get("/v1/partners/minato-shoji/contacts", headers=ADMIN)).json()
    assert [(c["key"], c["tier"]) for c in listed["items"]] == [("suzuki", 1), ("takahashi", 2), ("kato", 2)]

    assert (await client.delete("/v1/partners/minato-shoji/contacts/kato", headers=ADMIN)).status == 204
    one = await (await client.get("/v1/partners/minato-shoji", headers=ADMIN)).json()
    assert [c["key"] for c in one["contacts"]] == ["suzuki", "takahashi"]

    assert (await client.delete("/v1/partners/minato-shoji", headers=ADMIN)).status == 204
    assert (await client.get("/v1/partners/minato-shoji", headers=ADMIN)).status == 404
    assert (await client.get("/v1/partners/minato-shoji/contacts", headers=ADMIN)).status == 404

    rows = await audit_rows(client)
    assert [r["action"] for r in rows] == [
        "partner.created",
        "partner.updated",
        "contact.created",
        "contact.updated",
        "contact.deleted",
        "partner.deleted",
    ]
    assert {r["actor"] for r in rows} == {"admin"}
    recorded = repr([r["detail"] for r in rows])
    assert "@" not in recorded and "+81" not in recorded and "2345" not in recorded


async def test_duplicate_ids_and_keys_are_409(client: Any) -> None:
    assert (await create(client, MINATO)).status == 201
    again = await create(client, MINATO)
    assert again.status == 409
    assert (await again.json())["field"] == "id"

    twice = await client.post(
        "/v1/partners/minato-shoji/contacts", headers=ADMIN, json={"key": "suzuki", "name": "鈴木 二郎", "tier": 2}
    )
    assert twice.status == 409
    assert await twice.json() == {
        "error": "duplicate_key",
        "detail": "partner 'minato-shoji' already has contact 'suzuki'",
        "field": "key",
    }

    repeated = await create(client, {**MINATO, "id": "minato-2", "contacts": [MINATO["contacts"][0]] * 2})
    assert repeated.status == 409
    assert (await repeated.json())["field"] == "contacts[1].key"


async def test_unknown_ids_are_404(client: Any) -> None:
    for method, path in (
        ("GET", "/v1/partners/nobody"),
        ("PATCH", "/v1/partners/nobody"),
        ("DELETE", "/v1/partners/nobody"),
        ("POST", "/v1/partners/nobody/contacts"),
        ("PATCH", "/v1/partners/nobody/contacts/x"),
        ("DELETE", "/v1/partners/nobody/contacts/x"),
    ):
        body = {"key": "x", "name": "X", "tier": 1} if method == "POST" else {"name": "X"}
        response = await client.request(method, path, headers=ADMIN, json=body if method != "DELETE" else None)
        assert response.status == 404, (method, path)
        assert (await response.json())["error"] == "not_found"


async def test_operator_token_cannot_edit_the_directory(client: Any) -> None:
    assert (await client.post("/v1/partners", json=MINATO, headers=auth("operator"))).status == 403
    assert (await client.get("/v1/partners", headers=auth("operator"))).status == 403
    assert (await client.get("/v1/directory/coverage", headers=auth("ingest"))).status == 403
    assert (await client.post("/v1/partners", json=MINATO)).status == 401
    assert (await client.delete("/v1/partners/minato-shoji")).status == 401


async def test_invalid_phone_via_api_is_422_with_field_path(client: Any) -> None:
    contacts = MINATO["contacts"]
    bad = {**MINATO, "contacts": [contacts[0], {**contacts[1], "phone": "+81 90-12"}]}
    response = await create(client, bad)
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "invalid_field"
    assert body["field"] == "contacts[1].phone"
    assert "phone" in body["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channels": ["sms", "fax"]}, "channels[1]"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": None}, "channels"),  # suzuki prefers sms: dropping the phone would strand it
        ({"tier": 0}, "tier"),
        ({"pager": "123"}, "pager"),
        ({"key": "renamed"}, "key"),
    ],
)
async def test_contact_changes_are_validated_like_the_file(client: Any, change: dict[str, Any], field: str) -> None:
    assert (await create(client, MINATO)).status == 201
    response = await client.patch("/v1/partners/minato-shoji/contacts/suzuki", json=change, headers=ADMIN)
    assert response.status == 422, await response.text()
    assert (await response.json())["field"] == field
    unchanged = await (await client.get("/v1/partners/minato-shoji", headers=ADMIN)).json()
    assert unchanged["contacts"][0]["phone"] == "+819012345678"


async def test_partner_changes_are_validated(client: Any) -> None:
    assert (await create(client, MINATO)).status == 201
    for change, field in (
        ({"language": "fr"}, "language"),
        ({"policy": {"urgent": {}}}, "policy.urgent"),
        ({"components": ["Order API"]}, "components[0]"),
        ({"contacts": []}, "contacts"),
    ):
        response = await client.patch("/v1/partners/minato-shoji", json=change, headers=ADMIN)
        assert response.status == 422, change
        assert (await response.json())["field"] == field
    not_json = await client.post("/v1/partners", data=b"[]", headers={**ADMIN, "Content-Type": "application/json"})
    assert not_json.status == 422


async def test_list_pages_through_partners_and_filters_by_component(client: Any) -> None:
    example, _ = directory.load_directory(EXAMPLE_DIRECTORY)
    await directory.import_directory(client.app[appkeys.STORE], example)
    ids: list[str] = []
    cursor = None
    while True:
        query = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/v1/partners", params=query, headers=ADMIN)).json()
        ids += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == sorted(p.id for p in example.partners)

    billing = await (await client.get("/v1/partners", params={"component": "billing"}, headers=ADMIN)).json()
    expected = sorted(p.id for p in example.partners if {"billing", "*"} & set(p.components))
    assert [p["id"] for p in billing["items"]] == expected
    assert "kyushu-medical" in expected  # subscribed to every component
    assert (await client.get("/v1/partners", params={"limit": "0"}, headers=ADMIN)).status == 400


async def test_coverage_lists_partners_without_reachable_tier1(client: Any) -> None:
    assert (await create(client, MINATO)).status == 201
    assert (
        await create(
            client,
            {
                "id": "sakura-foods",
                "name": "さくら食品株式会社",
                "language": "ja",
                "contacts": [{"key": "yamamoto", "name": "山本 恵", "tier": 1}],
            },
        )
    ).status == 201
    assert (
        await create(client, {"id": "pacific-freight", "name": "Pacific Freight Ltd.", "language": "en"})
    ).status == 201

    coverage = await (await client.get("/v1/directory/coverage", headers=ADMIN)).json()
    assert coverage == {
        "gaps": [
            {"partner_id": "pacific-freight", "name": "Pacific Freight Ltd.", "reason": "no tier-1 contact"},
            {
                "partner_id": "sakura-foods",
                "name": "さくら食品株式会社",
                "reason": "tier-1 contacts have no email or phone",
            },
        ],
        "suppressed": [],
    }

    fixed = await client.patch(
        "/v1/partners/sakura-foods/contacts/yamamoto",
        headers=ADMIN,
        json={"email": "megumi.yamamoto@sakura-foods.example.jp"},
    )
    assert fixed.status == 200
    coverage = await (await client.get("/v1/directory/coverage", headers=ADMIN)).json()
    assert [g["partner_id"] for g in coverage["gaps"]] == ["pacific-freight"]
