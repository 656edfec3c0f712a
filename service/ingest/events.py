"""One shape for every monitoring source: the IncidentEvent, and the label mapping that fills it.

Alertmanager and Grafana both send "a group of alerts, each with labels and annotations"; the
source modules only validate their payload and say which alerts form one incident.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from service.errors import InvalidInput
from service.ingest.config import IngestSettings, LabelMapping
from service.notices import LANGUAGES
from service.validation import MAX_TEXT, text_problem

AlertStatus = Literal["firing", "resolved"]
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "maintenance": 3}
TITLE_LIMIT = 300
# alert_groups.key and incidents.source_key are 512 characters; long group keys are hashed.
KEY_LIMIT = 400


class Alert(BaseModel):
    """One alert as Alertmanager (webhook v4) and Grafana (unified alerting) both send it."""

    model_config = ConfigDict(extra="ignore")

    status: AlertStatus
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime | None = None
    endsAt: AwareDatetime | None = None
    generatorURL: str | None = None
    fingerprint: str | None = Field(None, max_length=128)

    def identity(self) -> str:
        """The source's fingerprint, or a stable hash of the label set when it sends none."""
        if self.fingerprint:
            return self.fingerprint
        canonical = "\x00".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class AlertGroupPayload(BaseModel):
    """The fields Alertmanager and Grafana webhooks share; extra fields are kept only in the raw body."""

    model_config = ConfigDict(extra="ignore")

    receiver: str = ""
    status: AlertStatus
    alerts: list[Alert] = Field(min_length=1)
    groupKey: str = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    truncatedAlerts: int = 0


MAX_COMPONENT = 64


@dataclass(frozen=True)
class IncidentEvent:
    """What a source says about one would-be incident, in Herald's words."""

    source: str
    key: str  # alert_groups.key: the dedup identity (source, group or fingerprint)
    status: AlertStatus
    severity: str
    title: str
    summary: str | None
    impact: str | None
    components: tuple[str, ...]
    fingerprints: tuple[str, ...]  # the alerts firing now
    # What the alerts' own partner annotations say, per language (`partner_summary_ja`, ...):
    # the only alert text partners ever read. Empty: Herald words it from the services affected.
    partner_summary: Mapping[str, str] = field(default_factory=dict)
    partner_impact: Mapping[str, str] = field(default_factory=dict)


def lookup(paths: Sequence[str], labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
    """The first non-blank value among `labels.X` / `annotations.X` paths."""
    for path in paths:
        scope, _, name = path.partition(".")
        value = (labels if scope == "labels" else annotations).get(name, "")
        if value.strip():
            return value.strip()
    return None


def severity_of(alert: Alert, mapping: LabelMapping) -> str:
    raw = lookup(mapping.severity, alert.labels, alert.annotations)
    return mapping.severity_map.get((raw or "").lower(), mapping.default_severity)


def component_of(alert: Alert, mapping: LabelMapping) -> str | None:
    return lookup(mapping.component, alert.labels, alert.annotations) or mapping.default_component


def group_key(source: str, kind: str, identity: str) -> str:
    key = f"{source}:{kind}:{identity}"
    if len(key) <= KEY_LIMIT:
        return key
    return f"{source}:{kind}:sha256:{hashlib.sha256(identity.encode()).hexdigest()}"


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _first_started(alerts: Sequence[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: a.startsAt.timestamp() if a.startsAt else float("-inf"))


def event_for(
    source: str,
    key: str,
    alerts: Sequence[Alert],
    settings: IngestSettings,
    common_labels: Mapping[str, str] | None = None,
    common_annotations: Mapping[str, str] | None = None,
) -> IncidentEvent:
    """Fold alerts into one event: firing if any alert fires; the gravest severity wins.

    Title and summary come from what the alerts have in common when it says something,
    otherwise from the alert that started first.
    """
    mapping = settings.mapping
    firing = [a for a in alerts if a.status == "firing"]
    relevant = _first_started(firing or list(alerts))
    first = relevant[0]
    labels = {**first.labels, **(common_labels or {})}
    annotations = {**first.annotations, **(common_annotations or {})}
    severities = [severity_of(a, mapping) for a in relevant]
    title = lookup(mapping.title, labels, annotations) or f"Alert from {source}"
    return IncidentEvent(
        source=source,
        key=key,
        status="firing" if firing else "resolved",
        severity=min(severities, key=SEVERITY_RANK.__getitem__),
        title=title[:TITLE_LIMIT],
        summary=lookup(mapping.summary, labels, annotations),
        impact=lookup(mapping.impact, labels, annotations),
        components=_unique(component_of(a, mapping) for a in relevant),
        fingerprints=_unique(a.identity() for a in firing),
        partner_summary=partner_text(relevant, common_annotations, "partner_summary"),
        partner_impact=partner_text(relevant, common_annotations, "partner_impact"),
    )


def partner_text(alerts: Sequence[Alert], common: Mapping[str, str] | None, prefix: str) -> dict[str, str]:
    """`<prefix>_<lang>` annotations for the whole group: what all alerts share, else every distinct
    text of the group's alerts in the order they started, so a group reads as one."""
    found = {}
    for lang in LANGUAGES:
        name = f"{prefix}_{lang}"
        shared = (common or {}).get(name, "").strip()
        texts = [shared] if shared else list(_unique(a.annotations.get(name, "").strip() for a in alerts))
        if texts:
            found[lang] = (" " if lang == "en" else "").join(texts)
    return found


def events_from_group(source: str, payload: AlertGroupPayload, settings: IngestSettings) -> list[IncidentEvent]:
    """One event per group (groupKey), or one per alert fingerprint, as configured."""
    if settings.incident_per == "group":
        key = group_key(source, "group", payload.groupKey)
        events = [event_for(source, key, payload.alerts, settings, payload.commonLabels, payload.commonAnnotations)]
    else:
        by_fingerprint: dict[str, list[Alert]] = {}
        for alert in payload.alerts:
            by_fingerprint.setdefault(alert.identity(), []).append(alert)
        events = [
            event_for(source, group_key(source, "fingerprint", identity), alerts, settings)
            for identity, alerts in by_fingerprint.items()
        ]
    for event in events:
        check_sendable(event, settings.mapping)
    return events


def check_sendable(event: IncidentEvent, mapping: LabelMapping) -> None:
    """What partners will read of an alert obeys the text rules now, as a 422 naming the label or
    annotation, rather than failing when the incident is opened (or its messages are sent)."""
    for component in event.components:
        problem = text_problem(component, multiline=False) or (
            f"is longer than {MAX_COMPONENT} characters" if len(component) > MAX_COMPONENT else None
        )
        if problem:
            where = f"alerts[].{mapping.component[0] if mapping.component else 'labels'}"
            raise InvalidInput(f"{where}: the component {component[:MAX_COMPONENT]!r} {problem}", where)
    texts = {"impact": event.impact, "summary": event.summary}
    texts.update({f"partner_summary_{lang}": text for lang, text in event.partner_summary.items()})
    texts.update({f"partner_impact_{lang}": text for lang, text in event.partner_impact.items()})
    for name, text in texts.items():
        problem = text and (
            text_problem(text) or (f"is longer than {MAX_TEXT} characters" if len(text) > MAX_TEXT else None)
        )
        if problem:
            where = f"alerts[].annotations.{name}" if name.startswith("partner_") else f"alerts[] ({name})"
            raise InvalidInput(f"{where}: {problem}", where)
