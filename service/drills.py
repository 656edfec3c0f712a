"""Drills (訓練・シナリオ演習): a scenario of notices at relative times, run as a marked incident.

A scenario (YAML, see `config/drills/`) names an audience and a sequence of steps, each a notice
`after_minutes` from the start. Running it opens a drill incident (`incidents.drill` = the mode),
publishes the steps due at once and schedules the others as scheduled notices, so the run is as
durable as any notice. Every row a drill writes carries the mode (`sandbox`: every message goes to
the sandbox whatever its channel; `real`: to the real contacts), every message says 【訓練】/[DRILL]
in its subject, SMS and text and carries the `X-Herald-Drill` header, and every real figure (the
incident list, the delivery log and summaries, metrics, promises overdue) leaves drill rows out.
`time_scale` compresses the scenario's clock (0.01: a two-hour scenario runs in 72 seconds).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from service import planner
from service.errors import InvalidInput, NotFound, invalid_input
from service.incidents import Status, check_transition
from service.notices import (
    Audience,
    Component,
    Kind,
    NoticeFields,
    Responsible,
    Text,
    Title,
    check_required,
    iso,
    missing_text,
)
from service.settings import Settings, Severity
from service.store import drills as drill_store
from service.store import incidents as incident_store
from service.store.records import audit

Mode = Literal["sandbox", "real"]


class DrillStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_minutes: float = Field(ge=0, le=60 * 24 * 14)
    kind: Kind
    # The incident's status from this step on (the previous step's when left out).
    status: Status | None = None
    # The next update this notice promises, counted from the step.
    next_update_in_minutes: float | None = Field(None, gt=0, le=60 * 24 * 14)
    fields: NoticeFields = NoticeFields()


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The scenario's key: runs of the same scenario are compared with each other.
    scenario: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=100)
    name: str = Field(min_length=1, max_length=200)
    severity: Severity = "critical"
    components: list[Component] = Field(default_factory=list, max_length=200)
    title: Title
    impact: Text | None = None
    responsible: Responsible
    # Empty: the partners subscribed to the components, as for a real incident.
    audience: Audience = Audience()
    allow_language_fallback: bool = False
    steps: list[DrillStep] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _steps_in_order(self) -> Scenario:
        waits = [step.after_minutes for step in self.steps]
        if waits != sorted(waits):
            raise ValueError("steps must come in order of after_minutes")
        return self


class DrillRequest(BaseModel):
    """Run a scenario: given as data (`scenario`) or as the YAML file's text (`scenario_yaml`)."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario | None = None
    scenario_yaml: str | None = Field(None, min_length=1, max_length=200_000)
    mode: Mode = "sandbox"
    time_scale: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _one_scenario(self) -> DrillRequest:
        if (self.scenario is None) == (self.scenario_yaml is None):
            raise ValueError("give either scenario or scenario_yaml")
        return self


def load_scenario(text: str, source: str = "scenario_yaml") -> Scenario:
    """A scenario from YAML; errors name the line (YAML) or the field path (content)."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise InvalidInput(f"{source}: line {line}: {exc.problem}", source) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: {exc}", source) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc, "scenario") from None


def check_scenario(scenario: Scenario) -> None:
    """Every step's notice is complete, its status change allowed, its text in both languages."""
    status = scenario.steps[0].status or "investigating"
    for index, step in enumerate(scenario.steps):
        path = f"scenario.steps[{index}]"
        if step.status is not None:
            check_transition(status, step.status)
            status = step.status
        placeholder = time.time() + 3600 if step.next_update_in_minutes else None  # the real time comes at the run
        fields = step_fields(scenario, step, placeholder)
        check_required(step.kind, fields, f"{path}.fields")
        missing = missing_text(fields.model_dump(mode="json", exclude_none=True), {"ja", "en"})
        if missing and not scenario.allow_language_fallback:
            raise InvalidInput(
                f"{path}.fields.{missing[0]}: a drill reaches partners in both languages; write it in both "
                "(or set allow_language_fallback)",
                f"{path}.fields.{missing[0]}",
                code="missing_language",
            )


def step_fields(scenario: Scenario, step: DrillStep, next_update_at: float | None) -> NoticeFields:
    inherited = {"title": scenario.title, "impact": scenario.impact, "responsible": scenario.responsible}
    merged: dict[str, Any] = {k: v for k, v in inherited.items() if v is not None}
    merged.update(step.fields.model_dump(exclude_none=True))
    if next_update_at is not None:
        merged["next_update_at"] = iso(next_update_at)
    return NoticeFields.model_validate(merged)


async def start_drill(
    conn: AsyncConnection, settings: Settings, request: DrillRequest, actor: str | None
) -> dict[str, Any]:
    scenario = request.scenario or load_scenario(request.scenario_yaml or "")
    check_scenario(scenario)
    now = time.time()
    scale, mode = request.time_scale, request.mode
    status = scenario.steps[0].status or "investigating"
    incident = {
        "title": scenario.title,
        "severity": scenario.severity,
        "status": status,
        "components": scenario.components,
        "impact": scenario.impact,
        "responsible": scenario.responsible.model_dump(exclude_none=True),
        "next_update_at": None,
        "estimates": None,
        "source": "drill",
        "source_key": None,
        "drill": mode,
        "created_at": now,
        "updated_at": now,
    }
    incident["id"] = await incident_store.insert_incident(conn, incident)
    await audit(
        conn, "incident.opened", "incident", incident["id"], actor, {"drill": mode, "scenario": scenario.scenario}
    )
    drill_id = await drill_store.insert_drill(
        conn,
        {
            "scenario_key": scenario.scenario,
            "name": scenario.name,
            "mode": mode,
            "time_scale": scale,
            "scenario": scenario.model_dump(mode="json", exclude_none=True),
            "incident_id": incident["id"],
            "started_by": actor,
            "started_at": now,
        },
    )
    planned = 0
    for version, step in enumerate(scenario.steps, start=1):
        send_at = now + step.after_minutes * 60 * scale
        status = step.status or status
        promised = send_at + step.next_update_in_minutes * 60 * scale if step.next_update_in_minutes else None
        fields = step_fields(scenario, step, promised)
        notice = {
            "incident_id": incident["id"],
            "kind": step.kind,
            "version": version,
            "corrects_id": None,
            "state": "scheduled" if step.after_minutes > 0 else "draft",
            "severity": scenario.severity,
            "status": status,
            "fields": fields.model_dump(mode="json", exclude_none=True),
            "audience": scenario.audience.model_dump(),
            "next_update_at": promised,
            "created_by": actor,
            "allow_language_fallback": scenario.allow_language_fallback,
            "drill": mode,
            "send_at": send_at,
        }
        notice["id"] = await incident_store.insert_notice(conn, notice)
        if notice["state"] == "draft":
            planned += (await planner.publish(conn, settings, notice, incident)).total
    await audit(conn, "drill.started", "drill", drill_id, actor, {"incident_id": incident["id"], "mode": mode})
    return {
        "drill_id": drill_id,
        "incident_id": incident["id"],
        "mode": mode,
        "steps": len(scenario.steps),
        "planned": planned,
    }


async def get_drill(conn: AsyncConnection, drill_id: int) -> dict[str, Any]:
    drill = await drill_store.get_drill(conn, drill_id)
    if drill is None:
        raise NotFound(f"no drill {drill_id}")
    return drill


def drill_json(drill: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": drill["id"],
        "scenario": drill["scenario_key"],
        "name": drill["name"],
        "mode": drill["mode"],
        "time_scale": drill["time_scale"],
        "incident_id": drill["incident_id"],
        "started_by": drill["started_by"],
        "started_at": iso(drill["started_at"]),
    }
