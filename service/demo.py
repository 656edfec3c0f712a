"""`herald demo`: Herald on embedded defaults posts a sample critical incident and shows the result."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from service.app import create_app
from service.settings import ROOT, ServerSettings, Settings
from service.store.tables import deliveries, sandbox_messages

SAMPLE = ROOT / "config" / "sample-incident.json"
SETTLED = ("sent", "delivered", "failed", "dead", "acknowledged", "undelivered", "bounced")


async def run_demo(settings: Settings, once: bool = False, sample: Path = SAMPLE) -> int:
    base = f"http://{settings.server.host}:{settings.server.port}"
    if settings.server.public_base_url == ServerSettings().public_base_url:
        server = settings.server.model_copy(update={"public_base_url": base})  # links point at this demo
        settings = settings.model_copy(update={"server": server})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
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
        if once:
            return 0
        print(f"\nStill serving on {base}; press Ctrl-C to stop.")
        await asyncio.Event().wait()
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await runner.cleanup()
    return 0


async def _post_sample(base: str, token: str, sample: Path) -> dict:
    incident = json.loads(sample.read_text("utf-8"))
    incident["next_update_at"] = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.post(f"{base}/v1/incidents", json=incident) as response:
            body = await response.json()
            if response.status >= 400:
                raise SystemExit(f"herald demo: the sample incident was refused: {body}")
            return body


async def _wait_until_settled(app: web.Application, notice_id: int, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with app["store"].read() as conn:
            waiting = await conn.scalar(
                select(func.count()).where(deliveries.c.notice_id == notice_id, deliveries.c.status.not_in(SETTLED))
            )
        if not waiting:
            return
        await asyncio.sleep(0.1)


async def _show(app: web.Application, notice_id: int) -> None:
    async with app["store"].read() as conn:
        rows = (
            await conn.execute(
                select(deliveries.c.tier, deliveries.c.channel, deliveries.c.status, deliveries.c.priority)
                .where(deliveries.c.notice_id == notice_id)
                .order_by(deliveries.c.sent_at)
            )
        ).all()
        first = [
            (
                await conn.execute(
                    select(sandbox_messages)
                    .where(sandbox_messages.c.channel == channel)
                    .order_by(sandbox_messages.c.id)
                    .limit(1)
                )
            )
            .mappings()
            .first()
            for channel in ("email", "sms")
        ]
    table = Counter((priority, tier, channel, status) for tier, channel, status, priority in rows)
    print("\n priority  tier  channel  status   count")
    for (priority, tier, channel, status), count in sorted(table.items()):
        print(f" {priority:>8}  {tier:>4}  {channel:<7}  {status:<7}  {count:>5}")
    print("(lower priority numbers leave first: critical tier-1 SMS is 0)")
    for message in filter(None, first):
        print(f"\n--- sandbox {message['channel']} (delivery {message['delivery_id']}) ---")
        if message["subject"]:
            print(f"Subject: {message['subject']}")
        print(message["body"][:1400])
