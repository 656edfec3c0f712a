"""The drill report: how the chain of notices performed, per partner and tier, against the last run.

Figures, from the drill's own rows only: time to first delivery and to acknowledgement (from the
first notice's publication), acknowledgement rate (notices acknowledged by the tier out of those
that reached it; tiers 1 and 2, who are asked to acknowledge), bounces and invalid numbers found,
partners with no reachable tier-1 contact, and the change since the previous run of the scenario.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from service import drills, planner
from service.operators import OPERATORS
from service.report import render_page
from service.store import audience as audience_store
from service.store import drills as drill_store
from service.store import incidents as incident_store
from service.store import log as log_store

REACHED = frozenset({"sent", "delivered", "acknowledged"})
# Twilio codes that mean the number itself is wrong (not a passing failure).
INVALID_NUMBER_CODES = frozenset({"21211", "21214", "21217", "21401", "21407", "21421", "21614", "30005", "30006"})
ASKED_TIERS = (1, 2)
COMPARED = ("ack_rate", "median_first_delivery_seconds", "median_ack_seconds", "bounces", "invalid_numbers",
            "partners_without_reachable_tier1")  # fmt: skip


async def build_drill_report(conn: AsyncConnection, drill_id: int) -> dict[str, Any]:
    drill = await drills.get_drill(conn, drill_id)
    this = await _figures(conn, drill)
    previous = await drill_store.previous_run(conn, drill)
    before = await _figures(conn, previous) if previous else None
    return {
        "drill": drills.drill_json(drill),
        **this,
        "previous": drills.drill_json(previous) if previous else None,
        "comparison": _compare(this["summary"], before["summary"]) if before else None,
    }


async def _figures(conn: AsyncConnection, drill: dict[str, Any]) -> dict[str, Any]:
    incident_id = drill["incident_id"]
    notices = [n for n in await incident_store.notices_of(conn, incident_id) if n["published_at"] is not None]
    logged = await log_store.recipients_of_incident(conn, incident_id)
    deliveries = [d for d in logged if d["partner_id"] != OPERATORS]
    published = {n["id"]: n["published_at"] for n in notices}
    first = min(notices, key=lambda n: n["published_at"]) if notices else None
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for delivery in deliveries:
        groups[delivery["partner_id"], delivery["tier"]].append(delivery)
    rows = [_partner_tier(key, found, published, first) for key, found in sorted(groups.items())]
    unreachable = await _without_reachable_tier1(conn, first, deliveries) if first else []
    asked = [r for r in rows if r["tier"] in ASKED_TIERS]
    sent = sum(r["notices_reached"] for r in asked)
    acknowledged = sum(r["notices_acknowledged"] for r in asked)
    tier1 = [r for r in rows if r["tier"] == 1]
    summary = {
        "notices": len(notices),
        "steps": len(drill["scenario"].get("steps", [])),
        "partners": len({r["partner_id"] for r in rows}),
        "deliveries": len(deliveries),
        "ack_rate": round(acknowledged / sent, 4) if sent else None,
        "median_first_delivery_seconds": _median([r["first_delivery_seconds"] for r in tier1]),
        "median_ack_seconds": _median([r["ack_seconds"] for r in tier1]),
        "bounces": sum(len(r["bounces"]) for r in rows),
        "invalid_numbers": sum(len(r["invalid_numbers"]) for r in rows),
        "partners_without_reachable_tier1": len(unreachable),
        "operator_messages": len(logged) - len(deliveries),
    }
    return {"summary": summary, "partners": rows, "partners_without_reachable_tier1": unreachable}


def _partner_tier(
    key: tuple[str, int], found: list[dict[str, Any]], published: dict[int, float], first: dict[str, Any] | None
) -> dict[str, Any]:
    partner_id, tier = key
    first_sent = [d["sent_at"] for d in found if first and d["notice_id"] == first["id"] and d["sent_at"]]
    acks = [
        d["acknowledged_at"] - published[d["notice_id"]]
        for d in found
        if d["acknowledged_at"] and d["notice_id"] in published
    ]
    reached = {d["notice_id"] for d in found if d["status"] in REACHED or d["acknowledged_at"]}
    acknowledged = {d["notice_id"] for d in found if d["acknowledged_at"]}
    return {
        "partner_id": partner_id,
        "partner_name": found[0]["partner_name"],
        "tier": tier,
        "contacts": len({d["contact_id"] for d in found}),
        "first_delivery_seconds": round(min(first_sent) - first["published_at"], 3) if first_sent and first else None,
        "ack_seconds": round(min(acks), 3) if acks else None,
        "notices_reached": len(reached),
        "notices_acknowledged": len(acknowledged),
        "ack_rate": round(len(acknowledged) / len(reached), 4) if reached and tier in ASKED_TIERS else None,
        "bounces": sorted(
            {
                d["address"]
                for d in found
                if d["status"] == "bounced"
                or (
                    d["channel"] == "email"
                    and d["status"] in ("failed", "dead")
                    and (d["error_code"] or "").startswith("5")
                )
            }
        ),
        "invalid_numbers": sorted(
            {d["address"] for d in found if d["channel"] == "sms" and d["error_code"] in INVALID_NUMBER_CODES}
        ),
    }


async def _without_reachable_tier1(
    conn: AsyncConnection, first: dict[str, Any], deliveries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Partners of the drill's audience whose tier-1 contacts it could not reach: none planned (no
    address for the policy's channels), or every tier-1 delivery failed."""
    incident = await incident_store.get_incident(conn, first["incident_id"])
    partner_ids, components, _tiers = planner.audience_filter(first["audience"] or {}, incident)
    audience = await audience_store.partners_with_contacts(conn, partner_ids, components, tiers=[1])
    reached = {
        d["partner_id"] for d in deliveries if d["tier"] == 1 and (d["status"] in REACHED or d["acknowledged_at"])
    }
    planned = {d["partner_id"] for d in deliveries if d["tier"] == 1}
    return [
        {
            "partner_id": p.id,
            "partner_name": p.name,
            "why": "no tier-1 delivery planned" if p.id not in planned else "every tier-1 delivery failed",
        }
        for p in audience
        if p.id not in reached
    ]


def _compare(this: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    def change(name: str) -> float | None:
        if this.get(name) is None or before.get(name) is None:
            return None
        return round(float(this[name]) - float(before[name]), 4)

    return {name: {"this": this.get(name), "previous": before.get(name), "change": change(name)} for name in COMPARED}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(statistics.median(present)), 3) if present else None


def render_drill_html(report: dict[str, Any], timezone: str) -> str:
    return render_page("drill_report.html.j2", timezone, report=report)
