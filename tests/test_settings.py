"""An operator configures Herald with a TOML file and HERALD_<SECTION>__<KEY> variables, and is
told at start what still needs fixing."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.config_checks import configuration_warnings
from service.logs import JsonFormatter
from service.settings import SettingsError, load_settings
from tests.helpers import ROOT, make_settings

SHIPPED = ROOT / "config" / "herald.toml"


def test_a_numeric_looking_secret_stays_a_string() -> None:
    settings = load_settings(SHIPPED, environ={"HERALD_SMTP__PASSWORD": "123456", "HERALD_ACK__SECRET": "0042"})
    assert settings.smtp.password is not None and settings.smtp.password.get_secret_value() == "123456"
    assert settings.ack.secret is not None and settings.ack.secret.get_secret_value() == "0042"


def test_nested_keys_lists_and_tables_come_from_the_environment() -> None:
    settings = load_settings(
        SHIPPED,
        environ={
            "HERALD_SMTP__PORT": "2525",
            "HERALD_SMTP__VALIDATE_CERTS": "false",
            "HERALD_ACK__TIERS": "[1]",
            "HERALD_POLICY__MINOR__3": '["email"]',
            "HERALD_INGEST__MAPPING__DEFAULT_SEVERITY": "minor",
            "HERALD_DISPATCH__CONCURRENCY": '{"email": 8, "sms": 4, "webhook": 2, "sandbox": 8}',
        },
    )
    assert settings.smtp.port == 2525 and settings.smtp.validate_certs is False
    assert settings.ack.tiers == [1]
    assert settings.policy["minor"]["3"] == ["email"]
    assert settings.policy["minor"]["1"] == ["email", "webhook"], "the rest of the file's table is kept"
    assert settings.ingest.mapping.default_severity == "minor"
    assert settings.dispatch.concurrency["sms"] == 4


def test_a_misspelt_section_in_the_environment_is_named() -> None:
    with pytest.raises(SettingsError, match="HERALD_SMPT__HOST"):
        load_settings(SHIPPED, environ={"HERALD_SMPT__HOST": "mail.example.com"})


def test_a_misspelt_key_in_the_environment_is_named() -> None:
    with pytest.raises(SettingsError, match=r"smtp\.hots"):
        load_settings(SHIPPED, environ={"HERALD_SMTP__HOTS": "mail.example.com"})


def test_herald_config_names_another_file(tmp_path: Path) -> None:
    other = tmp_path / "herald.toml"
    other.write_text('[company]\nname_en = "Example Ltd"\n[directory]\npath = "partners.yaml"\n', encoding="utf-8")
    settings = load_settings(environ={"HERALD_CONFIG": str(other)})
    assert settings.company.name_en == "Example Ltd"
    assert Path(settings.directory.path) == tmp_path / "partners.yaml", "paths are relative to the file"


def test_a_missing_configuration_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such configuration file"):
        load_settings(tmp_path / "absent.toml", environ={})


def production_like(db_url: str, **overrides: dict[str, Any]) -> Any:
    sections: dict[str, Any] = {
        "smtp": {"host": "smtp.example.com"},
        "server": {"public_base_url": "https://herald.example.com"},
        "directory": {"path": str(ROOT / "config" / "partners.example.yaml"), "import_on_start": False},
        "ack": {"secret": "a-long-ack-signing-secret"},
    }
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    return make_settings(db_url, **sections)


def test_a_well_configured_herald_has_no_warnings(sqlite_url: str) -> None:
    assert configuration_warnings(production_like(sqlite_url)) == []


def test_each_risky_setting_is_warned_about(sqlite_url: str) -> None:
    risky = production_like(
        sqlite_url,
        server={"public_base_url": "http://127.0.0.1:8080"},
        directory={"import_on_start": True},
        ack={"secret": None},
        auth={"tokens": [{"name": "ops", "scopes": ["operator"]}]},
    )
    codes = [warning.code for warning in configuration_warnings(risky)]
    assert codes == ["no_token_enabled", "public_base_url_loopback", "example_directory", "ack_secret_missing"]


def test_loopback_and_example_directory_are_fine_on_the_sandbox(sqlite_url: str) -> None:
    demo = production_like(
        sqlite_url,
        smtp={"host": None},
        server={"public_base_url": "http://localhost:8080"},
        directory={"import_on_start": True},
    )
    assert configuration_warnings(demo) == []


async def test_readyz_and_the_log_carry_the_start_up_warnings(aiohttp_client: Any, sqlite_url: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("herald.config").addHandler(handler)
    try:
        client = await aiohttp_client(
            create_app(production_like(sqlite_url, server={"public_base_url": "http://127.0.0.1"}))
        )
    finally:
        logging.getLogger("herald.config").removeHandler(handler)
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert [warning["code"] for warning in ready["warnings"]] == ["public_base_url_loopback"]
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["level"] == "warning" and line["event"] == "config_warning"
    assert line["code"] == "public_base_url_loopback" and "127.0.0.1" in line["msg"]
