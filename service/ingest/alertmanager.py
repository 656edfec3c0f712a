"""Prometheus Alertmanager webhook receiver payloads (`version: "4"`).

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config — Alertmanager posts a
whole group at a time: at first notification, every `group_interval` when it changes, and again
every `repeat_interval` while it keeps firing (the re-sends Herald must not pass on to partners).
"""

from __future__ import annotations

from typing import Any, Literal

from service.ingest.config import IngestSettings
from service.ingest.events import AlertGroupPayload, IncidentEvent, events_from_group
from service.validation import parse_model

SOURCE = "alertmanager"


class AlertmanagerWebhook(AlertGroupPayload):
    version: Literal["4"]


def parse_events(payload: Any, settings: IngestSettings) -> list[IncidentEvent]:
    """Validate a decoded body (422 with the field path) and normalise it."""
    webhook = parse_model(AlertmanagerWebhook, payload)
    return events_from_group(SOURCE, webhook, settings)
