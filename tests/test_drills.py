"""Drills: a scenario runs as a marked incident, in the sandbox or to real contacts, leaves a report
compared with the previous run, and never shows in real figures."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import yaml
from sqlalchemy import select

from service import appkeys
from service.cli import main
from service.store.tables import deliveries, incidents, notices, sandbox_messages
from tests.fakes.smtp import SmtpSink
from tests.fakes.twilio import TwilioFake
from tests.helpers import ROOT, TOKENS, auth, make_settings, wait_until
from tests.helpers.wired import rows, start, wired_settings

SCENARIO = (ROOT / "config" / "drills" / "order-api-outage.yaml").read_text("utf-8")
FAST = 6 / (240 * 60)  # the four-hour scenario in six seconds
ACK_LINK = re.compile(r"https://herald\.example\.com(/ack/[A-Za-z0-9._\-]+)")
SATO_PHONE = "+819012345678"


def drilling(base: Any) -> Any:
    return base.model_copy(update={"schedule": base.schedule.model_copy(update={"check_interval_seconds": 1})})


async def run_drill(client: Any, status: int = 202, **body: Any) -> dict[str, Any]:
    payload = {"scenario_yaml": SCENARIO, "time_scale": FAST, **body}
    response = await client.post("/v1/drills", json=payload, headers=auth("operator"))
    assert response.status == status, await response.text()
    return await response.json()


async def report_of(client: Any, drill_id: int) -> dict[str, Any]:
    response = await client.get(f"/v1/drills/{drill_id}/report", headers=auth("operator"))
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_sandbox_drill_runs_the_scenario_marked_and_stays_out_of_real_figures(
    aiohttp_client: Any, db_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, drilling(wired_settings(db_url, smtp_sink, twilio_fake)))
    started = await run_drill(client)
    incident_id = started["incident_id"]
    link = ACK_LINK.search((await wait_until(lambda: _sandbox_mail(client), timeout=20))["body"]).group(1)
    assert (await client.post(link)).status == 200

    await wait_until(lambda: _all_published_and_sent(client, incident_id, 5), timeout=40)

    assert not smtp_sink.messages and not twilio_fake.requests, "a sandbox drill sends nothing out"
    recorded = await _all(client, sandbox_messages)
    assert recorded and all((m["subject"] or m["body"]).startswith(("【訓練】", "[DRILL]")) for m in recorded)
    assert all(("訓練" in m["body"] or "DRILL" in m["body"]) for m in recorded)
    assert {r["drill"] for r in await rows(client)} == {"sandbox"}
    assert {n["drill"] for n in await _all(client, notices)} == {"sandbox"}
    [incident] = await _all(client, incidents)
    assert (incident["drill"], incident["status"]) == ("sandbox", "resolved")

    real = await (await client.get("/v1/incidents", headers=auth("operator"))).json()
    assert real["items"] == []
    drilled = await (await client.get("/v1/incidents?drill=true", headers=auth("operator"))).json()
    assert [i["id"] for i in drilled["items"]] == [incident_id]
    log = await (await client.get("/v1/deliveries", headers=auth("admin"))).json()
    assert log["items"] == []
    metrics = await (await client.get("/metrics")).text()
    assert "herald_delivery_outcomes_total{" not in metrics and "herald_promises_overdue 0.0" in metrics

    report = await report_of(client, started["drill_id"])
    summary = report["summary"]
    assert (summary["notices"], summary["steps"]) == (5, 5) and summary["partners"] > 0
    assert summary["ack_rate"] and 0 < summary["ack_rate"] < 1
    assert summary["median_first_delivery_seconds"] is not None and report["comparison"] is None
    acknowledged = [r for r in report["partners"] if r["ack_seconds"] is not None]
    assert len(acknowledged) == 1 and acknowledged[0]["tier"] in (1, 2)

    again = await run_drill(client, time_scale=1e-6)
    await wait_until(lambda: _all_published_and_sent(client, again["incident_id"], 5), timeout=40)
    second = await report_of(client, again["drill_id"])
    assert second["previous"]["id"] == started["drill_id"]
    assert second["comparison"]["ack_rate"] == {
        "this": 0.0,
        "previous": summary["ack_rate"],
        "change": round(0.0 - summary["ack_rate"], 4),
    }
    html = await (
        await client.get(f"/v1/drills/{again['drill_id']}/report?format=html", headers=auth("operator"))
    ).text()
    assert "Drill report" in html and "Compared with the previous run" in html
    listed = await (await client.get("/v1/drills", headers=auth("operator"))).json()
    assert [d["id"] for d in listed["items"]] == [again["drill_id"], started["drill_id"]]


async def test_a_real_drill_reaches_real_contacts_marked_and_finds_bad_addresses(
    aiohttp_client: Any, sqlite_url: str, smtp_sink: SmtpSink, twilio_fake: TwilioFake
) -> None:
    client = await start(aiohttp_client, drilling(wired_settings(sqlite_url, smtp_sink, twilio_fake)))
    twilio_fake.reject_numbers([SATO_PHONE], code=21211)
    smtp_sink.fail_next(1, code=550, text="5.1.1 no such user", on="RCPT")
    scenario = yaml.safe_load(SCENARIO)
    scenario["audience"] = {"partners": ["tokai-logistics", "minato-shoji"], "tiers": [1]}
    scenario["steps"] = scenario["steps"][:1]

    started = await run_drill(client, scenario_yaml=None, scenario=scenario, mode="real")

    await wait_until(lambda: _settled(client), timeout=30)
    assert smtp_sink.messages and all(m.message["X-Herald-Drill"] == "real" for m in smtp_sink.messages)
    assert all(str(m.message["Subject"]).startswith("【訓練】") for m in smtp_sink.messages)
    assert twilio_fake.requests and all(r["Body"].startswith("【訓練】") for r in twilio_fake.requests)
    report = await report_of(client, started["drill_id"])
    assert report["summary"]["invalid_numbers"] == 1 and report["summary"]["bounces"] == 1
    tokai = next(r for r in report["partners"] if r["partner_id"] == "tokai-logistics")
    assert tokai["invalid_numbers"] == [SATO_PHONE]
    tier1 = [r for r in await rows(client) if r["tier"] == 1]
    all_failed = sorted({r["partner_id"] for r in tier1} - {r["partner_id"] for r in tier1 if r["status"] == "sent"})
    assert [p["partner_id"] for p in report["partners_without_reachable_tier1"]] == all_failed


async def test_a_bad_scenario_is_refused_naming_the_line_or_the_field(aiohttp_client: Any, sqlite_url: str) -> None:
    client = await start(aiohttp_client, make_settings(sqlite_url))
    broken = await run_drill(client, 422, scenario_yaml="scenario: x\nsteps: [\n")
    assert "line" in broken["detail"] and broken["field"] == "scenario_yaml"
    scenario = yaml.safe_load(SCENARIO)
    del scenario["steps"][1]["fields"]["current_status"]
    missing = await run_drill(client, 422, scenario_yaml=None, scenario=scenario)
    assert missing["field"] == "scenario.steps[1].fields.current_status"
    scenario = yaml.safe_load(SCENARIO)
    scenario["steps"][0]["fields"]["summary"] = "日本語だけの概要です。"
    one_language = await run_drill(client, 422, scenario_yaml=None, scenario=scenario)
    assert one_language["field"] == "scenario.steps[0].fields.summary.en"
    assert not await rows(client)


async def test_herald_drill_run_starts_the_scenario_file_and_waits_for_its_report(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Any, capsys: Any
) -> None:
    client = await start(aiohttp_client, drilling(make_settings(sqlite_url)))
    base = str(client.make_url("")).rstrip("/")
    scenario = ROOT / "config" / "drills" / "order-api-outage.yaml"
    command = ["drill", "run", str(scenario), "--url", base, "--token", TOKENS["operator"], "--time-scale", "1e-6"]

    assert await asyncio.to_thread(main, [*command, "--wait"]) == 0

    out = capsys.readouterr().out
    assert "drill #1 started (sandbox)" in out and '"notices": 5' in out
    broken = tmp_path / "broken.yaml"
    broken.write_text(SCENARIO.replace("kind: progress", "kind: progres"), encoding="utf-8")
    assert await asyncio.to_thread(main, ["drill", "run", str(broken), "--token", "x"]) == 1
    error = capsys.readouterr().err
    assert str(broken) in error and "scenario.steps[1].kind" in error


async def _all(client: Any, table: Any) -> list[dict[str, Any]]:
    async with client.app[appkeys.STORE].read() as conn:
        return [dict(r) for r in (await conn.execute(select(table))).mappings()]


async def _sandbox_mail(client: Any) -> dict[str, Any] | None:
    found = [m for m in await _all(client, sandbox_messages) if m["channel"] == "email" and ACK_LINK.search(m["body"])]
    return found[0] if found else None


async def _all_published_and_sent(client: Any, incident_id: int, count: int) -> bool:
    found = [n for n in await _all(client, notices) if n["incident_id"] == incident_id and n["state"] == "published"]
    if len(found) < count:
        return False
    planned = await rows(client, deliveries.c.incident_id == incident_id)
    return all(r["status"] in ("sent", "acknowledged", "skipped") for r in planned)  # skipped: SMS caps


async def _settled(client: Any) -> bool:
    found = await rows(client)
    return bool(found) and all(r["status"] in ("sent", "failed", "dead", "skipped") for r in found)
