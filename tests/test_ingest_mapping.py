"""Labels and annotations become an incident's component, severity, title and summary as configured."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from service.ingest import alertmanager
from service.ingest.config import IngestSettings, LabelMapping
from service.settings import load_settings
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"


def webhook(*alerts: dict[str, Any], **top: Any) -> dict[str, Any]:
    body = {"version": "4", "groupKey": '{}:{alertname="X"}', "status": "firing", "alerts": list(alerts)}
    return {**body, **top}


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": labels, "annotations": {}}


@pytest.mark.parametrize(
    "label, severity",
    [
        ("critical", "critical"),
        ("page", "critical"),
        ("PAGE", "critical"),
        ("warning", "major"),
        ("info", "minor"),
        ("unheard-of", "major"),
    ],
)
def test_severity_label_maps_to_a_herald_severity(label: str, severity: str) -> None:
    [event] = alertmanager.parse_events(webhook(alert(alertname="X", severity=label)), IngestSettings())
    assert event.severity == severity


def test_component_comes_from_component_then_service_label() -> None:
    body = webhook(
        alert(alertname="X", component="billing"), alert(alertname="X", service="reporting"), alert(alertname="X")
    )
    [event] = alertmanager.parse_events(body, IngestSettings())
    assert event.components == ("billing", "reporting")


def test_title_falls_back_to_the_alert_name_and_summary_to_the_description() -> None:
    body = webhook({"status": "firing", "labels": {"alertname": "DiskFull"}, "annotations": {"description": "95%"}})
    [event] = alertmanager.parse_events(body, IngestSettings())
    assert (event.title, event.summary) == ("DiskFull", "95%")


def test_the_gravest_firing_alert_sets_the_group_severity() -> None:
    body = webhook(
        alert(alertname="X", severity="info"),
        alert(alertname="X", severity="critical"),
        alert("resolved", alertname="X", severity="critical"),
    )
    [event] = alertmanager.parse_events(body, IngestSettings())
    assert event.severity == "critical"
    assert len(event.fingerprints) == 2


def test_group_is_resolved_only_when_every_alert_is() -> None:
    body = webhook(alert("resolved", alertname="A"), alert("firing", alertname="B"), status="firing")
    assert alertmanager.parse_events(body, IngestSettings())[0].status == "firing"
    body = webhook(alert("resolved", alertname="A"), alert("resolved", alertname="B"), status="resolved")
    assert alertmanager.parse_events(body, IngestSettings())[0].status == "resolved"


def test_configured_mapping_reads_other_labels() -> None:
    settings = IngestSettings(
        mapping=LabelMapping(
            component=["labels.team"],
            severity=["labels.priority"],
            severity_map={"P1": "critical"},
            default_component="core",
        )
    )
    [event] = alertmanager.parse_events(webhook(alert(alertname="X", team="payments", priority="p1")), settings)
    assert (event.components, event.severity) == (("payments",), "critical")
    [event] = alertmanager.parse_events(webhook(alert(alertname="X")), settings)
    assert event.components == ("core",)


def test_mapping_paths_must_name_labels_or_annotations() -> None:
    with pytest.raises(ValidationError, match=re.escape("labels.<name>")):
        LabelMapping(title=["alertname"])


def test_very_long_group_keys_are_hashed_to_fit_the_key_column() -> None:
    [event] = alertmanager.parse_events(webhook(alert(alertname="X"), groupKey="{}:" + "x" * 2000), IngestSettings())
    assert len(event.key) < 512


def test_shipped_configuration_declares_the_ingest_section() -> None:
    settings = load_settings(ROOT / "config" / "herald.toml", environ={})
    assert settings.ingest.incident_per == "group"
    assert settings.ingest.auto_publish == ["critical"]
    assert settings.ingest.responsible.name == {"ja": "運用センター", "en": "Operations Center"}
    [event] = alertmanager.parse_events(json.loads((FIXTURES / "firing_critical.json").read_text()), settings.ingest)
    assert (event.severity, event.components) == ("critical", ("order-api",))
