"""Grafana unified alerting webhook contact point payloads.

https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/
— the body mirrors Alertmanager's (Grafana embeds it) plus Grafana's own fields (`orgId`, `title`,
`state`, `message`, per-alert `values`, `dashboardURL`, ...), which Herald keeps only in the raw body.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.ingest.config import IngestSettings
from service.ingest.events import AlertGroupPayload, IncidentEvent, events_from_group
from service.validation import parse_model

SOURCE = "grafana"


class GrafanaWebhook(AlertGroupPayload):
    version: str = "1"
    orgId: int | None = None
    title: str | None = Field(None, max_length=10_000)


def parse_events(payload: Any, settings: IngestSettings) -> list[IncidentEvent]:
    """Validate a decoded body (422 with the field path) and normalise it."""
    webhook = parse_model(GrafanaWebhook, payload)
    return events_from_group(SOURCE, webhook, settings)
