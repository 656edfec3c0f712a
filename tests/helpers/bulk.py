"""A large directory in bulk, and the broadcast benchmarks and fault tests send to it.

Shared by the tests and `bench/` (which imports it from here, as it imports the fakes).
"""

from __future__ import annotations

import time
from typing import Any

from service.settings import Settings
from service.store import Store, tables

BROADCAST: dict[str, Any] = {
    "kind": "maintenance",
    "severity": "major",
    "fields": {
        "title": {"ja": "受発注APIの緊急メンテナンス", "en": "Emergency maintenance of the Order API"},
        "summary": {
            "ja": "受発注APIの緊急メンテナンスを実施いたします。",
            "en": "We will carry out emergency maintenance on the Order API.",
        },
        "impact": {
            "ja": "メンテナンス中は発注登録ができません。",
            "en": "Orders cannot be submitted during the window.",
        },
        "window_start": "2026-12-05T01:00:00+09:00",
        "window_end": "2026-12-05T03:00:00+09:00",
        "responsible": {"name": {"ja": "山田 太郎", "en": "Taro Yamada"}, "email": "incident-desk@example.com"},
    },
    "audience": {"all_partners": True},
}


def partner_row(pid: str, name: str, language: str, now: float, **fields: Any) -> dict[str, Any]:
    """A partners-table row subscribed to every component, with no policy override unless given."""
    return {
        "id": pid,
        "name": name,
        "language": language,
        "components": ["*"],
        "policy": None,
        "created_at": now,
        "updated_at": now,
        **fields,
    }


def partner_rows(count: int, emails: int = 2, phones: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` partners subscribed to every component, each with `emails` email and `phones` SMS contacts."""
    now = time.time()
    partners, contacts = [], []
    for p in range(count):
        pid = f"partner-{p:06d}"
        partners.append(partner_row(pid, f"取引先 {p} 株式会社", "ja" if p % 4 else "en", now))
        for e in range(emails):
            contacts.append(
                {
                    "partner_id": pid,
                    "key": f"e{e}",
                    "name": f"担当 {e}",
                    "tier": 1 if e == 0 else 2,
                    "email": f"contact{e}.{p}@partner{p}.example.jp",
                    "phone": None,
                    "channels": ["email"],
                    "language": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        for s in range(phones):
            contacts.append(
                {
                    "partner_id": pid,
                    "key": f"s{s}",
                    "name": f"当番 {s}",
                    "tier": 1,
                    "email": None,
                    "phone": f"+8190{p:08d}",
                    "channels": ["sms"],
                    "language": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return partners, contacts


async def seed_directory(settings: Settings, partners: int, emails: int = 2, phones: int = 1) -> None:
    """`partners` partners subscribed to every component, written in bulk (the directory import
    validates one by one)."""
    await insert_directory(settings, *partner_rows(partners, emails, phones))


async def insert_directory(
    settings: Settings, partner_list: list[dict[str, Any]], contact_list: list[dict[str, Any]]
) -> None:
    """Partners and contacts the caller shaped itself (components, ids), written in bulk."""
    store = Store(settings.database.url)
    await store.upgrade()
    async with store.begin() as conn:
        await conn.execute(tables.partners.insert(), partner_list)
        for start in range(0, len(contact_list), 5000):
            await conn.execute(tables.contacts.insert(), contact_list[start : start + 5000])
    await store.close()


ZONES = [None, "Asia/Tokyo", "America/New_York", "Europe/London", "Pacific/Auckland", "America/Los_Angeles"]
POLICIES = [None, {"major": {"1": ["sms"]}, "critical": {"2": ["sms", "email"]}}]


def varied_directory(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Partners in six time zones, with and without a policy override, whose contacts differ in
    tier, channel preferences, addresses and language."""
    now = time.time()
    partners, contacts = [], []
    kinds: list[dict[str, Any]] = [
        {"tier": 1, "email": "a", "channels": ["email"]},
        {"tier": 1, "phone": True, "channels": ["sms"]},
        {"tier": 2, "email": "b", "phone": True, "channels": ["sms", "email"]},
        {"tier": 3, "email": "c", "webhook": True, "channels": ["webhook", "email"], "language": "en"},
        {"tier": 1, "email": "d", "phone": True, "channels": []},
        {"tier": 2, "email": "e", "channels": ["sms"]},  # prefers SMS but has no number
    ]
    for p in range(count):
        pid = f"shape-{p:03d}"
        language = "ja" if p % 3 else "en"
        partners.append(
            partner_row(pid, f"Partner {p}", language, now, policy=POLICIES[p % 2], timezone=ZONES[p % len(ZONES)])
        )
        for k, kind in enumerate(kinds[: 3 + p % 4]):
            contacts.append(
                {
                    "partner_id": pid,
                    "key": f"c{k}",
                    "name": f"Contact {k}",
                    "tier": kind["tier"],
                    "email": f"{kind['email']}{p}@shape{p}.example.jp" if "email" in kind else None,
                    "phone": f"+8190{p:04d}{k:04d}" if kind.get("phone") else None,
                    "webhook_url": f"https://hooks.example.com/{pid}/{k}" if kind.get("webhook") else None,
                    "channels": kind["channels"],
                    "language": kind.get("language"),
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return partners, contacts
