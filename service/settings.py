"""Typed settings: defaults, overlaid by `config/herald.toml`, overlaid by environment variables.

Environment variables are `HERALD_<SECTION>__<KEY>` (for example `HERALD_DATABASE__URL`,
`HERALD_SMTP__PASSWORD`). Secrets are only ever read from the environment; bearer tokens are
declared by name in the TOML file and their values read from `HERALD_TOKEN_<NAME>`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from service.ingest.config import IngestSettings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "herald.toml"

Scope = Literal["ingest", "operator", "admin"]
Severity = Literal["critical", "major", "minor", "maintenance"]
ChannelName = Literal["email", "sms", "webhook", "sandbox"]
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "maintenance")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = Field(1_048_576, gt=0)


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///herald.db"
    auto_migrate: bool = True
    pool_size: int = Field(5, ge=1)


class Token(_Section):
    name: str
    scopes: list[Scope]
    secret: SecretStr | None = None


class HmacSource(_Section):
    name: str
    header: str = "X-Herald-Signature"
    secret: SecretStr | None = None


class AuthSettings(_Section):
    tokens: list[Token] = []
    hmac_sources: list[HmacSource] = []


class SmtpSettings(_Section):
    host: str | None = None
    port: int = Field(25, ge=0, le=65535)
    tls: Literal["none", "starttls", "implicit"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "Herald <herald@example.com>"
    pool_size: int = Field(4, ge=1)
    timeout: float = Field(30.0, gt=0)
    validate_certs: bool = True


class TwilioSettings(_Section):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    api_base_url: str = "https://api.twilio.com"
    timeout: float = Field(15.0, gt=0)


class DispatchSettings(_Section):
    enabled: bool = True
    batch_size: int = Field(64, ge=1)
    concurrency: dict[str, int] = {"email": 64, "sms": 64, "webhook": 16, "sandbox": 64}
    lease_seconds: float = Field(60.0, gt=0)
    poll_interval: float = Field(1.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_initial: float = Field(2.0, gt=0)
    backoff_max: float = Field(600.0, gt=0)
    backoff_jitter: float = Field(1.0, ge=0)
    deadline_seconds: float = Field(86_400.0, gt=0)


class SmsSettings(_Section):
    max_segments: int = Field(3, ge=1, le=10)


class AckSettings(_Section):
    """Acknowledgement links. Without a secret each process signs with a random one of its own,
    so links stop working at the next restart (and differ between processes)."""

    secret: SecretStr | None = None
    ttl_hours: float = Field(72.0, gt=0)
    # Tiers whose notices carry a link; tier 3 is informed only and is never asked to acknowledge.
    tiers: list[Literal[1, 2, 3]] = [1, 2]


class EscalationSettings(_Section):
    """How long Herald waits for a tier-1 acknowledgement before it escalates, per severity.

    Minutes may be fractional (tests use seconds); 0 turns escalation off for that severity.
    """

    critical_minutes: float = Field(15.0, ge=0)
    major_minutes: float = Field(60.0, ge=0)
    minor_minutes: float = Field(0.0, ge=0)
    maintenance_minutes: float = Field(0.0, ge=0)
    # Also send the notice to tier-2 contacts, on a channel they have not had it on yet.
    escalate_to_tier2: bool = True
    # Notice kinds that are never chased: telling partners all is well needs no acknowledgement.
    exempt_kinds: list[str] = ["resolved"]
    # Seconds between scans of the escalations table (one scan also runs at start).
    poll_interval: float = Field(5.0, gt=0)
    batch_size: int = Field(50, ge=1)

    def window_seconds(self, severity: str) -> float | None:
        """The wait before escalating a notice of this severity; None when it is off."""
        minutes = float(getattr(self, f"{severity}_minutes", 0.0))
        return minutes * 60.0 if minutes > 0 else None


class DirectorySettings(_Section):
    path: str = str(ROOT / "config" / "partners.example.yaml")
    import_on_start: bool = True


class CompanySettings(_Section):
    """Who Herald speaks for: shown in every notice."""

    name_ja: str = "株式会社サンプル"
    name_en: str = "Sample Corporation"
    status_page_url: str = "https://status.example.com"
    timezone: str = "Asia/Tokyo"


def _default_policy() -> dict[str, dict[str, list[str]]]:
    return {
        "critical": {"1": ["sms", "email"], "2": ["email", "sms"], "3": ["email"]},
        "major": {"1": ["email", "sms"], "2": ["email"], "3": ["email"]},
        "minor": {"1": ["email"], "2": ["email"], "3": []},
        "maintenance": {"1": ["email"], "2": ["email"], "3": ["email"]},
    }


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    smtp: SmtpSettings = SmtpSettings()
    twilio: TwilioSettings = TwilioSettings()
    dispatch: DispatchSettings = DispatchSettings()
    sms: SmsSettings = SmsSettings()
    ack: AckSettings = AckSettings()
    directory: DirectorySettings = DirectorySettings()
    company: CompanySettings = CompanySettings()
    # severity -> tier ("1".."3") -> channels the tier's contacts are reached on, in order.
    policy: dict[Severity, dict[Literal["1", "2", "3"], list[ChannelName]]] = Field(default_factory=_default_policy)
    # Everything an ingest source needs (mappings, grouping, damping); see service/ingest.
    ingest: IngestSettings = IngestSettings()
    # Escalation window per severity; see service/escalation.py.
    escalation: EscalationSettings = EscalationSettings()

    @field_validator("policy")
    @classmethod
    def _every_severity(cls, value: dict) -> dict:
        missing = [s for s in SEVERITIES if s not in value]
        if missing:
            raise ValueError(f"policy has no entry for severity {', '.join(missing)}")
        return value

    @property
    def email_configured(self) -> bool:
        return bool(self.smtp.host)

    @property
    def sms_configured(self) -> bool:
        return bool(self.twilio.account_sid and self.twilio.auth_token)


class SettingsError(Exception):
    """A configuration problem, worded for the operator: it names the source and the key."""


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    config_path = Path(path or environ.get("HERALD_CONFIG") or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_path}: {exc}") from exc
    elif path is not None:
        raise SettingsError(f"{config_path}: no such configuration file")
    _relative_to(config_path.parent, data.get("directory"), "path")
    _overlay_environment(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_path)) from exc


def _relative_to(base: Path, section: Any, key: str) -> None:
    """A path written in the TOML file is relative to that file, wherever Herald is started."""
    if isinstance(section, dict) and isinstance(section.get(key), str) and not Path(section[key]).is_absolute():
        section[key] = str(base / section[key])


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith("HERALD_") or "__" not in name:
            continue
        section, _, key = name[len("HERALD_") :].lower().partition("__")
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            continue
        target[key] = _parse_env_value(raw)
    for kind, prefix in (("tokens", "HERALD_TOKEN_"), ("hmac_sources", "HERALD_HMAC_")):
        for entry in data.get("auth", {}).get(kind, []):
            secret = environ.get(prefix + str(entry.get("name", "")).upper().replace("-", "_"))
            if secret:
                entry["secret"] = secret


def _parse_env_value(raw: str) -> Any:
    """Environment values may be JSON (numbers, booleans, lists); anything else is a string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _describe(exc: ValidationError, source: Path) -> str:
    lines = [f"invalid configuration ({source} and HERALD_* environment):"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {key}: {error['msg']}")
    return "\n".join(lines)
