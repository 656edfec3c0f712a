"""Admins read the delivery log: filtered pages, one delivery with its receipts, summaries, and a
CSV export that streams however large the log is."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from service import appkeys
from service.app import create_app
from service.store import deliveries as outbox
from service.store import incidents as incident_store
from service.store import log as log_store
from service.store.tables import receipts
from tests.helpers import auth, make_settings

BASE = 1_780_000_000.0  # 2026-05-28T20:26:40Z: seeded rows are created one second apart from here
PARTNERS = ("tokai-logistics", "minato-shoji", "kansai-foods")
STATUSES = ("sent", "failed", "delivered", "dead", "acknowledged")
TOKYO = ZoneInfo("Asia/Tokyo")
FORMULA = '=HYPERLINK("http://evil")'  # a spreadsheet formula the CSV export must defuse


@pytest.fixture
async def log_client(aiohttp_client: Any, sqlite_url: str) -> Any:
    """The whole app with the dispatcher off, so seeded rows stay exactly as written."""
    app = create_app(make_settings(sqlite_url, dispatch={"enabled": False}))
    return await aiohttp_client(app)


async def seed(client: Any, count: int, notices: int = 2) -> list[dict[str, Any]]:
    """One incident with `notices` notices and `count` deliveries spread across them, written
    straight through the store (the planner would need that many contacts)."""
    async with client.app[appkeys.STORE].begin() as conn:
        incident_id = await incident_store.insert_incident(
            conn, {"title": "Seeded", "severity": "major", "status": "investigating", "components": [], "source": "api"}
        )
        notice_ids = [
            await incident_store.insert_notice(conn, {
                "incident_id": incident_id, "kind": "progress", "version": v, "state": "published",
                "severity": "major", "fields": {}, "audience": {}, "published_at": BASE,
            })
            for v in range(1, notices + 1)
        ]  # fmt: skip
        rows = [seeded_row(i, incident_id, notice_ids[i % notices]) for i in range(count)]
        await outbox.insert_deliveries(conn, rows)
    for i, row in enumerate(rows):
        row["id"] = i + 1  # a fresh table numbers from 1 in insertion order
    return rows


def seeded_row(i: int, incident_id: int, notice_id: int) -> dict[str, Any]:
    channel = ("email", "sms")[i % 2]
    status = STATUSES[i % len(STATUSES)]
    failed = status in ("failed", "dead")
    return {
        "notice_id": notice_id, "incident_id": incident_id, "partner_id": PARTNERS[i % 3],
        "contact_id": 100 + i % 7, "tier": 1 + (i // 3) % 3, "channel": channel,
        "address": f"contact{i}@example.jp" if channel == "email" else f"+8190{i:08d}",
        "language": "ja", "priority": 10, "status": status, "attempts": 2 if failed else 1,
        "next_attempt_at": BASE + i, "message_id": f"<seed.{i}@herald.test>", "escalation_step": 0,
        "provider_id": None if failed else f"P{i}",
        "last_error": (FORMULA if i % 10 == 1 else "550 5.1.1 宛先不明 no such user") if failed else None,
        "error_code": "550" if failed else None,
        "created_at": BASE + i, "updated_at": BASE + i,
        "sent_at": None if failed else BASE + i + 1, "failed_at": BASE + i + 1 if failed else None,
    }  # fmt: skip


async def get_json(client: Any, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=auth("admin"))
    assert response.status == 200, await response.text()
    return await response.json()


async def page_through(
    client: Any, params: dict[str, Any] | list[tuple[str, str]], cursor: int | None = None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        query = list(params.items()) if isinstance(params, dict) else list(params)
        if cursor is not None:
            query.append(("cursor", str(cursor)))
        response = await client.get("/v1/deliveries", params=query, headers=auth("admin"))
        assert response.status == 200, await response.text()
        body = await response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_an_admin_pages_through_the_whole_log_newest_first(log_client: Any) -> None:
    rows = await seed(log_client, 250)
    items = await page_through(log_client, {"limit": "100"})
    assert [i["id"] for i in items] == [r["id"] for r in reversed(rows)]
    newest = items[0]
    assert newest["address"] == rows[-1]["address"] and newest["partner_id"] == rows[-1]["partner_id"]
    assert newest["created_at"] == "2026-05-28T20:30:49Z"
    assert set(newest) >= {
        "id", "notice_id", "incident_id", "partner_id", "contact_id", "tier", "channel", "status", "attempts",
        "priority", "provider_id", "provider_status", "error_code", "last_error", "message_id", "address",
        "created_at", "sent_at", "delivered_at", "failed_at", "acknowledged_at",
    }  # fmt: skip


async def test_rows_added_while_paging_do_not_shift_the_pages(log_client: Any) -> None:
    rows = await seed(log_client, 30, notices=1)
    first = await get_json(log_client, "/v1/deliveries", limit="10")
    async with log_client.app[appkeys.STORE].begin() as conn:
        await outbox.insert_deliveries(conn, [{**seeded_row(1000, rows[0]["incident_id"], rows[0]["notice_id"])}])
    rest = await page_through(log_client, {"limit": "10"}, cursor=first["next_cursor"])
    seen = [i["id"] for i in first["items"] + rest]
    assert seen == list(range(30, 0, -1))


async def test_filters_narrow_the_log(log_client: Any) -> None:
    rows = await seed(log_client, 120)

    async def ids(params: list[tuple[str, str]]) -> set[int]:
        return {i["id"] for i in await page_through(log_client, params)}

    def expected(keep: Any) -> set[int]:
        return {r["id"] for r in rows if keep(r)}

    assert await ids([("status", "failed"), ("status", "dead"), ("channel", "sms")]) == expected(
        lambda r: r["status"] in ("failed", "dead") and r["channel"] == "sms"
    )
    assert await ids([("partner", "minato-shoji"), ("tier", "2")]) == expected(
        lambda r: r["partner_id"] == "minato-shoji" and r["tier"] == 2
    )
    notice_id = rows[1]["notice_id"]
    assert await ids([("notice", str(notice_id)), ("contact", "103")]) == expected(
        lambda r: r["notice_id"] == notice_id and r["contact_id"] == 103
    )
    assert await ids([("incident", str(rows[0]["incident_id"]))]) == expected(lambda r: True)
    assert await ids([("incident", "999")]) == set()
    since = datetime.fromtimestamp(BASE + 50, TOKYO).isoformat()  # +09:00
    until = datetime.fromtimestamp(BASE + 60, ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")
    assert await ids([("since", since), ("until", until)]) == expected(
        lambda r: BASE + 50 <= r["created_at"] < BASE + 60
    )
    # A hand-typed URL often leaves the + of +09:00 unencoded; it arrives as a space.
    response = await log_client.get(f"/v1/deliveries?since={since}&limit=500", headers=auth("admin"))
    assert {i["id"] for i in (await response.json())["items"]} == expected(lambda r: r["created_at"] >= BASE + 50)


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"), ("cursor=abc", "cursor"),
        ("status=lost", "status"), ("status=sent&status=nope", "status"), ("channel=fax", "channel"),
        ("tier=4", "tier"), ("incident=x", "incident"), ("notice=-1", "notice"), ("contact=1.5", "contact"),
        ("since=yesterday", "since"), ("until=2026-11-25T10:00:00", "until"),
    ],
)  # fmt: skip
async def test_a_bad_query_value_is_400_naming_the_field(log_client: Any, query: str, field: str) -> None:
    paging = field in ("limit", "cursor")  # the export has no pages to ask for
    for path in ("/v1/deliveries",) if paging else ("/v1/deliveries", "/v1/deliveries.csv"):
        response = await log_client.get(f"{path}?{query}", headers=auth("admin"))
        assert response.status == 400, (path, await response.text())
        body = await response.json()
        assert body["error"] == "invalid_query" and body["field"] == field


async def test_the_log_is_for_admins_only(log_client: Any) -> None:
    rows = await seed(log_client, 3, notices=1)
    paths = ["/v1/deliveries", "/v1/deliveries.csv", f"/v1/deliveries/{rows[0]['id']}"]
    for path in paths:
        assert (await log_client.get(path, headers=auth("operator"))).status == 403, path
        assert (await log_client.get(path)).status == 401, path
        assert (await log_client.get(path, headers=auth("admin"))).status == 200, path


async def test_an_operator_follows_counts_but_never_sees_addresses(log_client: Any) -> None:
    rows = await seed(log_client, 3, notices=1)
    for path in (f"/v1/incidents/{rows[0]['incident_id']}/summary", f"/v1/notices/{rows[0]['notice_id']}/summary"):
        reply = await log_client.get(path, headers=auth("operator"))
        assert reply.status == 200, path
        assert "@" not in await reply.text(), "counts only"
        assert (await log_client.get(path)).status == 401, path


async def test_one_delivery_comes_with_its_receipts(log_client: Any) -> None:
    rows = await seed(log_client, 3, notices=1)
    target = rows[2]
    async with log_client.app[appkeys.STORE].begin() as conn:
        for receipt in (
            {"delivery_id": target["id"], "status": "sent", "received_at": BASE + 10},
            {
                "delivery_id": target["id"],
                "status": "delivered",
                "detail": {"MessageStatus": "delivered"},
                "received_at": BASE + 20,
            },
            {"delivery_id": rows[0]["id"], "status": "failed", "error_code": "30003", "received_at": BASE},
        ):
            await conn.execute(insert(receipts).values(source="twilio", **receipt))
    body = await get_json(log_client, f"/v1/deliveries/{target['id']}")
    assert body["id"] == target["id"] and body["address"] == target["address"] and body["status"] == target["status"]
    assert [(r["source"], r["status"], r["received_at"]) for r in body["receipts"]] == [
        ("twilio", "sent", "2026-05-28T20:26:50Z"),
        ("twilio", "delivered", "2026-05-28T20:27:00Z"),
    ]
    assert body["receipts"][1]["detail"] == {"MessageStatus": "delivered"}
    missing = await log_client.get("/v1/deliveries/999999", headers=auth("admin"))
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"


async def test_summaries_count_by_status_by_channel_and_by_tier(log_client: Any) -> None:
    rows = await seed(log_client, 60)
    incident_id, notice_id = rows[0]["incident_id"], rows[0]["notice_id"]

    def counts(selected: list[dict[str, Any]]) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        by_channel: dict[str, dict[str, int]] = {}
        by_tier: dict[str, dict[str, int]] = {}
        by_tier_channel: dict[str, dict[str, dict[str, int]]] = {}
        for r in selected:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
            cell = by_channel.setdefault(r["channel"], {})
            cell[r["status"]] = cell.get(r["status"], 0) + 1
            cell = by_tier.setdefault(str(r["tier"]), {})
            cell[r["status"]] = cell.get(r["status"], 0) + 1
            cell = by_tier_channel.setdefault(str(r["tier"]), {}).setdefault(r["channel"], {})
            cell[r["status"]] = cell.get(r["status"], 0) + 1
        return {
            "total": len(selected),
            "by_status": by_status,
            "by_channel": by_channel,
            "by_tier": by_tier,
            "by_tier_channel": by_tier_channel,
        }

    incident = await get_json(log_client, f"/v1/incidents/{incident_id}/summary")
    assert incident == {"incident_id": incident_id, **counts(rows)}
    notice = await get_json(log_client, f"/v1/notices/{notice_id}/summary")
    assert notice == {
        "notice_id": notice_id,
        "incident_id": incident_id,
        **counts([r for r in rows if r["notice_id"] == notice_id]),
    }
    for path in ("/v1/incidents/999/summary", "/v1/notices/999/summary"):
        assert (await log_client.get(path, headers=auth("admin"))).status == 404


async def test_csv_export_of_10000_rows_streams_page_by_page(log_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export holds one page at a time and the first rows reach the client while later pages
    have not been read yet: the second page waits until the client has seen the first bytes."""
    rows = await seed(log_client, 10_000)
    page_size = log_store.EXPORT_PAGE_SIZE
    pages: list[int] = []
    client_saw_bytes = asyncio.Event()
    read_page = log_store.list_deliveries

    async def spying_page(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if len(pages) == 1:
            await client_saw_bytes.wait()
        page = await read_page(*args, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(log_store, "list_deliveries", spying_page)
    response = await log_client.get("/v1/deliveries.csv", headers=auth("admin"))
    try:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Disposition"].startswith("attachment; filename=")
        assert response.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in response.headers
        head = b""
        for _ in range(2):  # the header, then the newest row: page 1 is out while page 2 is not read
            head += await asyncio.wait_for(response.content.readline(), timeout=10)
        assert pages == [page_size], "rows reached the client only after more than one page was read"
    finally:
        client_saw_bytes.set()
    body = head + await response.read()

    assert max(pages) == page_size <= 1000 and len(pages) >= len(rows) // page_size
    table = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert len(table) == 10_000
    assert [int(r["id"]) for r in table] == [r["id"] for r in reversed(rows)]
    by_id = {int(r["id"]): r for r in table}
    failed = next(r for r in rows if r["last_error"] and r["last_error"].startswith("5"))
    assert by_id[failed["id"]]["last_error"] == failed["last_error"]  # Japanese survives the round trip
    formula = next(r for r in rows if r["last_error"] and r["last_error"].startswith("="))
    assert by_id[formula["id"]]["last_error"] == "'" + formula["last_error"]
    assert by_id[rows[1]["id"]]["address"] == "+819000000001"  # our own columns are left as they are


async def test_csv_export_applies_the_same_filters(log_client: Any) -> None:
    rows = await seed(log_client, 40)
    response = await log_client.get("/v1/deliveries.csv?status=sent&channel=email", headers=auth("admin"))
    table = list(csv.DictReader(io.StringIO(await response.text())))
    assert {int(r["id"]) for r in table} == {r["id"] for r in rows if r["status"] == "sent" and r["channel"] == "email"}
    assert {r["created_at"] for r in table} <= {
        datetime.fromtimestamp(r["created_at"], ZoneInfo("UTC")).isoformat().replace("+00:00", "Z") for r in rows
    }
