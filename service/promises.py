"""Promises: "next update at 15:30" told to partners is kept, or our operators hear about it.

Every published incident notice that names a next update creates a promise; the incident's next
published notice keeps it (`kept`, or `kept_late` after the time). Until then the checker (one
durable loop, `[promises] check_interval_seconds`) reminds the on-call operators once before the
promise falls due (`due_soon`) and once when it is `overdue`. The reminders are deliveries like any
other (see service/operators.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from service import appkeys
from service.notices import iso
from service.operators import notify_operators
from service.periodic import Periodic
from service.settings import Settings
from service.store import Store
from service.store import incidents as incident_store
from service.store import promises as promise_store
from service.store.records import audit

log = logging.getLogger("herald.promises")

BATCH = 50


def too_near(settings: Settings, promised_at: float, now: float) -> bool:
    return promised_at < now + settings.promises.min_lead_seconds


def state_at(promise: dict[str, Any], settings: Settings, now: float) -> str:
    """The promise's state by the clock: a kept promise stays as it was kept; an open one is
    `overdue` once its time has passed and `due_soon` within the reminder lead."""
    if promise["state"] in ("kept", "kept_late"):
        return str(promise["state"])
    if now >= promise["due_at"]:
        return "overdue"
    if now >= promise["due_at"] - settings.promises.remind_before_seconds:
        return "due_soon"
    return "pending"


def promise_json(promise: dict[str, Any], settings: Settings, now: float) -> dict[str, Any]:
    state = state_at(promise, settings, now)
    late_at = promise["kept_at"] if state == "kept_late" else now if state == "overdue" else None
    return {
        "id": promise["id"],
        "notice_id": promise["notice_id"],
        "due_at": iso(promise["due_at"]),
        "state": state,
        "kept_by_notice_id": promise["kept_by_notice_id"],
        "kept_at": iso(promise["kept_at"]),
        "minutes_late": _minutes(late_at - promise["due_at"]) if late_at is not None else None,
        "reminded_due_soon_at": iso(promise["reminded_due_soon_at"]),
        "reminded_overdue_at": iso(promise["reminded_overdue_at"]),
    }


async def on_published(conn: AsyncConnection, settings: Settings, notice: dict[str, Any], now: float) -> None:
    """A published incident notice keeps the incident's open promises and may make a new one."""
    incident_id = notice["incident_id"]
    if incident_id is None:
        return
    # Promises are made by published notices: before the incident's first one there is none to keep.
    kept = await promise_store.open_of_incident(conn, incident_id) if notice["version"] > 1 else []
    for promise in kept:
        state = "kept" if now <= promise["due_at"] else "kept_late"
        await promise_store.update_promise(
            conn,
            promise["id"],
            {"state": state, "kept_by_notice_id": notice["id"], "kept_at": now, "check_at": None, "updated_at": now},
        )
        await audit(conn, f"promise.{state}", "promise", promise["id"], None, {"notice_id": notice["id"]})
    due_at = notice["next_update_at"]
    if due_at is None:
        return
    await promise_store.insert_promise(
        conn,
        {
            "incident_id": incident_id,
            "notice_id": notice["id"],
            "due_at": due_at,
            "state": "pending",
            "check_at": max(now, due_at - settings.promises.remind_before_seconds),
            "created_at": now,
            "updated_at": now,
        },
    )


async def check_due(store: Store, settings: Settings, now: float | None = None) -> int:
    """Advance the promises whose check time has come and remind the operators; returns the
    reminder deliveries written (the caller wakes the dispatcher when it is not 0)."""
    now = time.time() if now is None else now
    written = 0
    async with store.begin() as conn:
        for promise in await promise_store.claim_due(conn, BATCH, now):
            written += await _advance(conn, settings, promise, now)
    return written


async def _advance(conn: AsyncConnection, settings: Settings, promise: dict[str, Any], now: float) -> int:
    overdue = now >= promise["due_at"]
    state = "overdue" if overdue else "due_soon"
    if promise["state"] == state:  # reminded already; nothing left to do until it is kept
        await promise_store.update_promise(conn, promise["id"], {"check_at": None, "updated_at": now})
        return 0
    incident = await incident_store.get_incident(conn, promise["incident_id"])
    kind = "operator_promise_overdue" if overdue else "operator_promise_due"
    fields = {
        "next_update_at": iso(promise["due_at"]),
        "minutes_late": _minutes(now - promise["due_at"]) if overdue else None,
        "minutes_left": None if overdue else _minutes(promise["due_at"] - now),
        "notice_id": promise["notice_id"],
    }
    written = await notify_operators(conn, settings, kind, fields, incident, now)
    values: dict[str, Any] = {"state": state, "updated_at": now, f"reminded_{state}_at": now}
    values["check_at"] = None if overdue else promise["due_at"]
    await promise_store.update_promise(conn, promise["id"], values)
    detail = {"incident_id": promise["incident_id"], "reminders": written}
    await audit(conn, f"promise.{state}", "promise", promise["id"], None, detail)
    log.info("promise %s of incident %s is %s; %d reminders", promise["id"], promise["incident_id"], state, written)
    return written


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


class PromiseChecker:
    """Checks promises once at start, then every `[promises] check_interval_seconds`."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings: Settings = app[appkeys.SETTINGS]
        self._periodic = Periodic("promise-checker", self.run_once, self.settings.promises.check_interval_seconds)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> int:
        written = await check_due(self.app[appkeys.STORE], self.settings)
        if written:
            self.app[appkeys.DISPATCHER_WAKE]()
        return written


async def promise_ctx(app: web.Application) -> AsyncIterator[None]:
    checker = PromiseChecker(app)
    app[appkeys.PROMISE_CHECKER] = checker
    checker.start()
    yield
    await checker.stop()
