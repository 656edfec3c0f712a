"""`herald demo`: Herald on embedded defaults posts a sample critical incident and shows the result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from service import appkeys
from service.app import create_app
from service.settings import ROOT, ServerSettings, Settings
from service.store import deliveries as delivery_store
from service.store import sandbox as sandbox_store

SAMPLE = ROOT / "config" / "sample-incident.json"
SETTLE_SECONDS = 60.0
DRILL_TIME_SCALE = 0.002  # the four-hour scenario in about half a minute
DRILL_SECONDS = 180.0
SETTLED = ("sent", "delivered", "failed", "dead", "acknowledged", "undelivered", "bounced")


async def run_demo(
    settings: Settings, once: bool = False, sample: Path = SAMPLE, drill: tuple[str, str] | None = None
) -> int:
    """`drill`: (file name, YAML text) of a scenario to run in the sandbox after the sample incident."""
    # Listen first (port 0 picks a free port) so the links in the messages can name the real port.
    listener = socket.create_server((settings.server.host, settings.server.port))
    base = f"http://{settings.server.host}:{listener.getsockname()[1]}"
    if settings.server.public_base_url == ServerSettings().public_base_url:
        server = settings.server.model_copy(update={"public_base_url": base})  # links point at this demo
        settings = settings.model_copy(update={"server": server})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    token = next(t for t in settings.auth.tokens if t.name == "demo").secret.get_secret_value()  # type: ignore[union-attr]
    try:
        print(f"Herald is serving on {base} (database: {settings.database.url})")
        reply = await _post_sample(base, token, sample)
        print(
            f"Posted the sample critical incident #{reply['incident_id']}: "
            f"{reply['deliveries']['total']} deliveries planned for {reply['deliveries']['partners']} partners."
        )
        await _wait_until_settled(app, reply["notice_id"])
        await _show(app, reply["notice_id"])
        if drill is not None:
            await _run_drill(base, token, drill)
        if once:
            return 0
        print(f"\nStill serving on {base}; press Ctrl-C to stop.")
        print(f"Console: {base}/console/")
        print(f"Sign in with this admin token (it works while this demo runs): {token}")
        await asyncio.Event().wait()
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await runner.cleanup()
    return 0


async def _post_sample(base: str, token: str, sample: Path) -> dict[str, Any]:
    incident = json.loads(await asyncio.to_thread(sample.read_text, "utf-8"))
    incident["next_update_at"] = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.post(f"{base}/v1/incidents", json=incident) as response,
    ):
        body: dict[str, Any] = await response.json()
        if response.status >= 400:
            raise SystemExit(f"herald demo: the sample incident was refused: {body}")
        return body


async def _drill_report_when_done(session: aiohttp.ClientSession, url: str, steps: int) -> Any:
    """The drill's report once every step has gone, or as it stands after DRILL_SECONDS."""
    report: Any = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRILL_SECONDS):
            while True:
                async with session.get(url) as response:
                    report = await response.json()
                if report["summary"]["notices"] >= steps:
                    break
                await asyncio.sleep(1)  # polled: the report is read over HTTP, like an operator would
    return report


async def _wait_until_settled(app: web.Application, notice_id: int) -> None:
    """Until every delivery of the notice settled, or SETTLE_SECONDS passed (then show what there is)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SETTLE_SECONDS):
            while await _still_waiting(app, notice_id):  # noqa: ASYNC110 -- polled: no event says "settled"
                await asyncio.sleep(0.1)


async def _still_waiting(app: web.Application, notice_id: int) -> int:
    async with app[appkeys.STORE].read() as conn:
        return await delivery_store.count_of_notice(conn, notice_id, exclude=SETTLED)


async def _run_drill(base: str, token: str, scenario: tuple[str, str]) -> None:
    """The shipped drill scenario in the sandbox, its clock compressed, then its report's figures."""
    name, text = scenario
    body = {"scenario_yaml": text, "mode": "sandbox", "time_scale": DRILL_TIME_SCALE}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.post(f"{base}/v1/drills", json=body) as response:
            started = await response.json()
        if response.status >= 400:
            raise SystemExit(f"herald demo: the drill was refused: {started}")
        print(
            f"\nDrill #{started['drill_id']} ({name}, sandbox): {started['steps']} notices at "
            f"{1 / DRILL_TIME_SCALE:.0f}× speed, every one marked 【訓練】/[DRILL]; waiting for the last one..."
        )
        report_url = f"{base}/v1/drills/{started['drill_id']}/report"
        report = await _drill_report_when_done(session, report_url, started["steps"])
    print(json.dumps(report["summary"], ensure_ascii=False, indent=2))
    print(f"Drill report: {report_url}?format=html")


async def _show(app: web.Application, notice_id: int) -> None:
    async with app[appkeys.STORE].read() as conn:
        rows = await delivery_store.plan_of_notice(conn, notice_id)
        first = [await sandbox_store.first_message(conn, channel) for channel in ("email", "sms")]
    table = Counter((r["priority"], r["tier"], r["channel"], r["status"]) for r in rows)
    print("\n priority  tier  channel  status   count")
    for (priority, tier, channel, status), count in sorted(table.items()):
        print(f" {priority:>8}  {tier:>4}  {channel:<7}  {status:<7}  {count:>5}")
    print("(lower priority numbers leave first: critical tier-1 SMS is 0)")
    for message in filter(None, first):
        print(f"\n--- sandbox {message['channel']} (delivery {message['delivery_id']}) ---")
        if message["subject"]:
            print(f"Subject: {message['subject']}")
        print(message["body"][:1400])
