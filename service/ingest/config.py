"""IngestSettings: how monitoring alerts become incidents (the `[ingest]` section of herald.toml).

Kept apart from service/settings.py so the ingest package owns its own knobs; this module must not
import service.settings (settings imports it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.notices import Responsible, Text

IngestSeverity = Literal["critical", "major", "minor", "maintenance"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_paths(paths: list[str]) -> list[str]:
    for path in paths:
        scope, _, name = path.partition(".")
        if scope not in ("labels", "annotations") or not name:
            raise ValueError(f"'{path}' must be 'labels.<name>' or 'annotations.<name>'")
    return paths


class LabelMapping(_Section):
    """Where each incident field comes from: the first non-empty `labels.X` / `annotations.X` wins."""

    component: list[str] = ["labels.component", "labels.service"]
    severity: list[str] = ["labels.severity"]
    title: list[str] = ["annotations.summary", "labels.alertname"]
    summary: list[str] = ["annotations.description", "annotations.summary"]
    impact: list[str] = ["annotations.impact"]
    # Source severity value (lower-cased) -> Herald severity.
    severity_map: dict[str, IngestSeverity] = {
        "critical": "critical",
        "page": "critical",
        "warning": "major",
        "info": "minor",
    }
    # When no label names a severity, or its value is not in severity_map.
    default_severity: IngestSeverity = "major"
    # When no label names a component (None: the incident has no components, so only partners
    # subscribed to "*" hear about it).
    default_component: str | None = None

    @field_validator("component", "severity", "title", "summary", "impact")
    @classmethod
    def _label_or_annotation(cls, value: list[str]) -> list[str]:
        return _check_paths(value)

    @field_validator("severity_map")
    @classmethod
    def _lower_keys(cls, value: dict[str, IngestSeverity]) -> dict[str, IngestSeverity]:
        return {key.lower(): severity for key, severity in value.items()}


def _default_responsible() -> Responsible:
    return Responsible(
        name={"ja": "運用センター", "en": "Operations Center"},
        email="ops@example.com",
        phone="+81-3-1234-5678",
    )


class IngestSettings(_Section):
    # "group": one incident per Alertmanager/Grafana group (groupKey);
    # "fingerprint": one incident per alert (its fingerprint).
    incident_per: Literal["group", "fingerprint"] = "group"
    # Severities whose initial notice is published at once; others wait as drafts for an operator.
    auto_publish: list[IngestSeverity] = ["critical"]
    # A resolve is held this long; firing again within it cancels the resolve (flap damping).
    flap_window: float = Field(300.0, ge=0)
    # How often the background flusher applies held resolves that are due.
    flush_interval: float = Field(1.0, gt=0)
    # Minutes until the "next update" promised in automatic notices.
    next_update_minutes: int = Field(30, ge=1, le=24 * 60)
    mapping: LabelMapping = LabelMapping()
    # Our responsible contact named in automatic notices.
    responsible: Responsible = Field(default_factory=_default_responsible)
    # Default texts of automatic notices (a source annotation, when mapped, takes precedence).
    impact: Text = {
        "ja": "影響範囲を調査しています。",
        "en": "We are assessing which services are affected.",
    }
    current_status: Text = {
        "ja": "監視システムが障害を検知し、担当者が調査を開始しました。",
        "en": "Our monitoring detected the problem and engineers are investigating.",
    }
    outlook: Text = {
        "ja": "復旧見込みが分かり次第お知らせします。",
        "en": "We will tell you as soon as we know when service will be restored.",
    }
    # Progress notice sent when new components join a published incident; {components} is filled in.
    components_added_status: Text = {
        "ja": "影響範囲が拡大しました。影響を受けるサービス：{components}",
        "en": "The impact has widened. Affected services: {components}",
    }
    resolved_summary: Text = {
        "ja": "監視システムで復旧を確認しました。",
        "en": "Our monitoring confirms that service has recovered.",
    }
