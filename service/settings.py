"""Typed settings (pydantic-settings): defaults, overlaid by a TOML file, overlaid by the environment.

Environment variables are `HERALD_<SECTION>__<KEY>` (for example `HERALD_DATABASE__URL`,
`HERALD_SMTP__PASSWORD`); a value is taken as text unless its key is a list, a table or a number
(`HERALD_SMTP__PASSWORD=123456` stays the string "123456"). Secrets are only ever read from the
environment; bearer tokens are declared by name in the TOML file and their values read from
`HERALD_TOKEN_<NAME>` (HMAC sources from `HERALD_HMAC_<NAME>`).
"""

from __future__ import annotations

import base64
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import pydantic_settings
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from service.ingest.config import IngestSettings
from service.notices import Kind

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
    # Seconds a SQLite write waits for another process's lock before the request gets a 503.
    busy_timeout: float = Field(30.0, gt=0)


class Token(_Section):
    name: str
    scopes: list[Scope]
    # From HERALD_TOKEN_<NAME>; a token without one is disabled.
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _secret_from_environment(self) -> Token:
        self.secret = self.secret or _secret_named("HERALD_TOKEN_", self.name)
        return self


class HmacSource(_Section):
    name: str
    header: str = "X-Herald-Signature"
    # From HERALD_HMAC_<NAME>.
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _secret_from_environment(self) -> HmacSource:
        self.secret = self.secret or _secret_named("HERALD_HMAC_", self.name)
        return self


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
    # The relay's certificate is verified against the system CAs, or against ca_file when set.
    validate_certs: bool = True
    ca_file: str | None = None
    # DKIM signing, for a relay that does not sign: the selector's public key is published at
    # <dkim_selector>._domainkey.<dkim_domain>. The private key (PEM) comes from
    # HERALD_SMTP__DKIM_PRIVATE_KEY or a file (a mounted secret), never from this file's text.
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key: SecretStr | None = None
    dkim_private_key_file: str | None = None

    @model_validator(mode="after")
    def _dkim_complete(self) -> SmtpSettings:
        parts = (self.dkim_domain, self.dkim_selector, self.dkim_private_key or self.dkim_private_key_file)
        if any(parts) and not all(parts):
            raise ValueError("DKIM needs dkim_domain, dkim_selector and a private key (or none of them)")
        return self

    def dkim_key(self) -> bytes | None:
        if self.dkim_private_key is not None:
            return self.dkim_private_key.get_secret_value().encode()
        if self.dkim_private_key_file:
            try:
                return Path(self.dkim_private_key_file).read_bytes()
            except OSError as exc:
                raise SettingsError(
                    f"smtp.dkim_private_key_file: {exc.strerror}: {self.dkim_private_key_file}"
                ) from exc
        return None


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
    # How long a broadcast's batches step aside, at most, for a stretch of requests and critical
    # work being written (Store.foreground): longer, and a storm of requests would stall them.
    foreground_hold: float = Field(0.25, ge=0)
    max_attempts: int = Field(8, ge=1)
    backoff_initial: float = Field(2.0, gt=0)
    backoff_max: float = Field(600.0, gt=0)
    backoff_jitter: float = Field(1.0, ge=0)
    deadline_seconds: float = Field(86_400.0, gt=0)


class WebhookSettings(_Section):
    """Partners' systems receive notices as JSON, signed per Standard Webhooks (webhook-id,
    webhook-timestamp, webhook-signature). Without a secret webhook deliveries go to the sandbox."""

    # HERALD_WEBHOOK__SECRET: "whsec_" + base64 of 24 to 64 random bytes, shared with partners.
    secret: SecretStr | None = None
    timeout: float = Field(10.0, gt=0)
    # Plain http:// endpoints are refused (a permanent failure) unless this is on: local drills only.
    allow_http: bool = False

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not raw.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ValueError('must be "whsec_" followed by base64 of 24 to 64 random bytes')
        return value


class RateLimit(_Section):
    per_second: float = Field(gt=0)
    burst: int = Field(1, ge=1)  # tokens saved up while idle: sent at once after a pause


class RateLimitSettings(_Section):
    """Provider limits (see service/pacing.py). `channels`: email | sms | webhook -> limit, e.g. the
    SMTP relay's messages a second. `senders`: the SMTP envelope sender, a Twilio from number or
    Messaging Service SID -> limit, e.g. a long code's 1 message a second."""

    channels: dict[ChannelName, RateLimit] = {}
    senders: dict[str, RateLimit] = {}


class SmsSettings(_Section):
    max_segments: int = Field(3, ge=1, le=10)


class AckSettings(_Section):
    """Acknowledgement links. Without a secret each process signs with a random one of its own,
    so links stop working at the next restart (and differ between processes)."""

    secret: SecretStr | None = None
    ttl_hours: float = Field(72.0, gt=0)
    # Tiers whose notices carry a link; tier 3 is informed only and is never asked to acknowledge.
    tiers: list[Literal[1, 2, 3]] = [1, 2]


EscalationAction = Literal["reminder", "tier2", "operators"]


class EscalationStep(_Section):
    """One step of escalation, taken when the partner has not acknowledged a notice in time.

    `reminder`: the notice again to tier 1, worded as a reminder (【再送】/[Reminder]), on a channel
    each contact has not had it on yet, else by SMS again. `tier2`: the same to tier-2 contacts.
    `operators`: our on-call operators get the list of partners still unacknowledged.
    """

    after_minutes: float = Field(gt=0)  # counted from publication; fractions allowed (tests use seconds)
    action: EscalationAction


def _default_steps() -> dict[str, list[EscalationStep]]:
    def steps(*plan: tuple[float, EscalationAction]) -> list[EscalationStep]:
        return [EscalationStep(after_minutes=minutes, action=action) for minutes, action in plan]

    return {
        "critical": steps((15, "reminder"), (30, "tier2"), (45, "operators")),
        "major": steps((60, "reminder"), (120, "tier2"), (180, "operators")),
    }


class EscalationSettings(_Section):
    """What Herald does, per severity, while a partner has not acknowledged a notice."""

    # severity -> steps in the order they are taken; a severity with no steps is never chased.
    steps: dict[Severity, list[EscalationStep]] = Field(default_factory=_default_steps)  # type: ignore[arg-type]
    # Notice kinds that are never chased: telling partners all is well needs no acknowledgement.
    exempt_kinds: list[str] = ["resolved"]
    # Seconds between scans of the escalations table (one scan also runs at start).
    poll_interval: float = Field(5.0, gt=0)
    batch_size: int = Field(50, ge=1)

    @field_validator("steps")
    @classmethod
    def _in_order(cls, value: dict[str, list[EscalationStep]]) -> dict[str, list[EscalationStep]]:
        for severity, steps in value.items():
            waits = [step.after_minutes for step in steps]
            if waits != sorted(waits):
                raise ValueError(f"{severity}: steps must come in order of after_minutes")
        return value

    def steps_for(self, severity: str) -> list[EscalationStep]:
        return list(self.steps.get(severity, []))  # type: ignore[call-overload]


class OnCallContact(_Section):
    """One of our own operators: reminded of promises and told about unacknowledged notices."""

    name: str
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, pattern=r"^\+[1-9]\d{6,14}$")
    language: Literal["ja", "en"] = "ja"
    channels: list[Literal["email", "sms"]] = ["email", "sms"]


class PromiseSettings(_Section):
    """Promised next updates ("next report at 15:30"): how they are checked and who is reminded."""

    # Seconds between scans for promises coming due or overdue (one scan also runs at start).
    check_interval_seconds: float = Field(30.0, ge=1)
    # The shortest accepted time from now to a promised next update; nearer or past times are a 422.
    min_lead_seconds: float = Field(300.0, ge=0)
    # The on-call operators are reminded this long before a promise falls due (and again when overdue).
    remind_before_seconds: float = Field(600.0, ge=0)


class QuestionSettings(_Section):
    """Partner questions: replies to notice emails and the form on the acknowledgement page.

    With `reply_address` set, each notice email's Reply-To is that address with a signed token
    after a `+` (reply+<token>@domain); the mail server pipes mail for it to POST /v1/inbound/email.
    Unset, Reply-To stays our responsible contact and only In-Reply-To can match a reply.
    """

    reply_address: str | None = None
    # An unanswered question reminds the on-call operators ([[on_call]]) after this...
    remind_after_minutes: float = Field(30.0, gt=0)
    # ...and again this often while it stays unanswered (0 = remind once).
    remind_every_minutes: float = Field(60.0, ge=0)
    max_length: int = Field(4000, ge=1)
    # Seconds between scans for due reminders (one scan also runs at start).
    poll_interval: float = Field(10.0, gt=0)
    batch_size: int = Field(50, ge=1)


class ConsoleSettings(_Section):
    """The operator console under /console/. Sessions are cookies encrypted with `secret`
    (HERALD_CONSOLE__SECRET); without it each process makes a random key, so a restart signs
    everyone out."""

    secret: SecretStr | None = None
    session_minutes: float = Field(480.0, gt=0)


class ScheduleSettings(_Section):
    """Notices with a `send_at`: the scheduler publishes each when its time comes."""

    check_interval_seconds: float = Field(10.0, ge=1)
    batch_size: int = Field(20, ge=1)


class DirectorySettings(_Section):
    path: str = str(ROOT / "config" / "partners.example.yaml")
    import_on_start: bool = True
    # How often a process looks whether the directory changed, to rebuild the summary its dry runs
    # count from before an operator asks (0 = only when a dry run finds it out of date).
    preview_refresh_seconds: float = Field(5.0, ge=0)


class TemplatesSettings(_Section):
    """The company's own notice templates: `<directory>/<lang>/<kind>.<part>.j2` files override the
    built-in ones one by one. Every kind is rendered in every language at start to check them."""

    directory: str | None = None


class CompanySettings(_Section):
    """Who Herald speaks for: shown in every notice."""

    name_ja: str = "株式会社サンプル"
    name_en: str = "Sample Corporation"
    status_page_url: str = "https://status.example.com"
    timezone: str = "Asia/Tokyo"


ANY_SEVERITY: Literal["any"] = "any"


# severity -> tier ("1".."3") -> channels the tier's contacts are reached on, in order.
Policy = dict[Severity, dict[Literal["1", "2", "3"], list[ChannelName]]]
# notice kind -> severity (or "any") -> channels that may carry it; a kind not listed may go on any
# channel. The tier policy still decides who gets which of them.
NoticeChannels = dict[Kind, dict[Severity | Literal["any"], list[ChannelName]]]


def _default_notice_channels() -> NoticeChannels:
    everything: list[ChannelName] = ["sms", "email", "webhook"]
    written: list[ChannelName] = ["email", "webhook"]
    return {
        "initial": {ANY_SEVERITY: everything},
        "progress": {"critical": everything, ANY_SEVERITY: written},
        "resolved": {ANY_SEVERITY: everything},
        "recovery_failed": {ANY_SEVERITY: everything},
        "root_cause": {ANY_SEVERITY: written},
        "estimate": {ANY_SEVERITY: written},
        "bcp_revision": {ANY_SEVERITY: written},
        "maintenance": {ANY_SEVERITY: written},
        "custom": {ANY_SEVERITY: everything},
    }


class ServiceName(_Section):
    """What partners call one of our components, in each language."""

    ja: str = Field(min_length=1, max_length=100)
    en: str = Field(min_length=1, max_length=100)


class PartnerPageSettings(_Section):
    """The page each partner contact reaches from every notice (signed with [ack] secret)."""

    # A link works this long after the notice carrying it was planned.
    ttl_days: float = Field(30.0, gt=0)
    # Resolved incidents older than this drop off the page (open ones always show).
    history_days: float = Field(90.0, gt=0)


class VolumeSettings(_Section):
    """How much one contact hears about one incident; see service/volume.py."""

    # SMS per contact per incident within `sms_cap_window_seconds`; beyond it updates go by email
    # and the next SMS says which updates it did not carry. 0 = no cap.
    sms_cap: int = Field(3, ge=0)
    sms_cap_window_seconds: float = Field(3600.0, gt=0)
    # Successive updates to one contact within this window go out as one message with the latest
    # state and what changed. State changes of a critical incident always go at once. 0 = off.
    merge_window_seconds: float = Field(120.0, ge=0)


class QuietHoursSettings(_Section):
    """Non-urgent notices wait for the end of the night in the partner's time zone."""

    enabled: bool = True
    start: str = Field("21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field("08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    kinds: list[Kind] = ["root_cause", "estimate", "bcp_revision", "maintenance"]


def _default_policy() -> Policy:
    return {
        "critical": {"1": ["sms", "email", "webhook"], "2": ["email", "sms", "webhook"], "3": ["email", "webhook"]},
        "major": {"1": ["email", "sms", "webhook"], "2": ["email", "webhook"], "3": ["email", "webhook"]},
        "minor": {"1": ["email", "webhook"], "2": ["email", "webhook"], "3": []},
        "maintenance": {"1": ["email", "webhook"], "2": ["email", "webhook"], "3": ["email", "webhook"]},
    }


class Settings(BaseSettings):
    """Every key of the TOML file, each overridable by HERALD_<SECTION>__<KEY>.

    `load_settings()` is the way in: it names the file and the environment and words errors for
    the operator. `Settings.model_validate(data)` builds settings from data alone (tests).
    """

    model_config = SettingsConfigDict(
        env_prefix="HERALD_", env_nested_delimiter="__", case_sensitive=False, extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    smtp: SmtpSettings = SmtpSettings()
    twilio: TwilioSettings = TwilioSettings()
    dispatch: DispatchSettings = DispatchSettings()
    sms: SmsSettings = SmsSettings()
    webhook: WebhookSettings = WebhookSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    ack: AckSettings = AckSettings()
    directory: DirectorySettings = DirectorySettings()
    company: CompanySettings = CompanySettings()
    templates: TemplatesSettings = TemplatesSettings()
    policy: Policy = Field(default_factory=_default_policy)
    # Everything an ingest source needs (mappings, grouping, damping); see service/ingest.
    ingest: IngestSettings = IngestSettings()
    # Escalation window per severity; see service/escalation.py.
    escalation: EscalationSettings = EscalationSettings()
    # Our own on-call operators (reminders, escalation's last step); see service/operators.py.
    on_call: list[OnCallContact] = []
    promises: PromiseSettings = PromiseSettings()
    # Scheduled notices (send_at); see service/scheduled.py.
    schedule: ScheduleSettings = ScheduleSettings()
    notice_channels: NoticeChannels = Field(default_factory=_default_notice_channels)
    volume: VolumeSettings = VolumeSettings()
    partner_page: PartnerPageSettings = PartnerPageSettings()
    # component -> partner-facing service name per language (titles, "affected services").
    services: dict[str, ServiceName] = {}
    quiet_hours: QuietHoursSettings = QuietHoursSettings()

    @field_validator("notice_channels", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: Any) -> Any:
        """A kind configured replaces that kind's default; kinds not mentioned keep theirs."""
        return {**_default_notice_channels(), **value} if isinstance(value, dict) else value

    # Partner questions and their reminders; see service/questions.py.
    questions: QuestionSettings = QuestionSettings()

    console: ConsoleSettings = ConsoleSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _environ.get()
        return (
            init_settings,
            EnvironmentVariables(settings_cls, environ),
            _TomlFile(settings_cls, config_path(None, environ)),
        )

    @field_validator("policy")
    @classmethod
    def _every_severity(cls, value: dict[str, Any]) -> dict[str, Any]:
        missing = [s for s in SEVERITIES if s not in value]
        if missing:
            raise ValueError(f"policy has no entry for severity {', '.join(missing)}")
        return value

    @property
    def email_configured(self) -> bool:
        return bool(self.smtp.host)

    @property
    def webhook_configured(self) -> bool:
        return self.webhook.secret is not None

    @property
    def sms_configured(self) -> bool:
        return bool(self.twilio.account_sid and self.twilio.auth_token)


class SettingsError(Exception):
    """A configuration problem, worded for the operator: it names the source and the key."""


# The environment settings are read from: os.environ, or the mapping given to load_settings.
_environ: ContextVar[Mapping[str, str]] = ContextVar("herald_settings_environ", default=os.environ)
_config_file: ContextVar[Path | None] = ContextVar("herald_settings_file", default=None)

# Keys holding a file path: written in the TOML file, they are relative to that file.
PATH_KEYS: tuple[tuple[str, str], ...] = (
    ("directory", "path"),
    ("smtp", "ca_file"),
    ("smtp", "dkim_private_key_file"),
    ("templates", "directory"),
)


def config_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    return Path(path or _config_file.get() or environ.get("HERALD_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    source = config_path(path, environ)
    if path is not None and not source.exists():
        raise SettingsError(f"{source}: no such configuration file")
    with _reading(source, environ):
        try:
            return Settings()
        except ValidationError as exc:
            raise SettingsError(_describe(exc, source)) from exc
        except pydantic_settings.SettingsError as exc:
            raise SettingsError(f"invalid configuration in the HERALD_* environment: {exc}") from exc


@contextmanager
def _reading(source: Path, environ: Mapping[str, str]) -> Iterator[None]:
    file_token, environ_token = _config_file.set(source), _environ.set(environ)
    try:
        yield
    finally:
        _config_file.reset(file_token)
        _environ.reset(environ_token)


def _secret_named(prefix: str, name: str) -> SecretStr | None:
    value = _environ.get().get(prefix + name.upper().replace("-", "_"))
    return SecretStr(value) if value else None


class EnvironmentVariables(EnvSettingsSource):
    """HERALD_<SECTION>__<KEY> from a given mapping; a section that does not exist is an error
    (a typo would otherwise be ignored in silence)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._given = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._given.items()}

    def __call__(self) -> dict[str, Any]:
        sections = set(self.settings_cls.model_fields)
        for name in self._given:
            section, nested, _ = name.lower().removeprefix("herald_").partition("__")
            if name.upper().startswith("HERALD_") and nested and section not in sections:
                raise SettingsError(f"{name}: Herald has no configuration section [{section}]")
        return super().__call__()


class _TomlFile(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{self.path}: {exc}") from exc
        for section, key in PATH_KEYS:
            _relative_to(self.path.parent, data.get(section), key)
        return data


def _relative_to(base: Path, section: Any, key: str) -> None:
    """A path written in the TOML file is relative to that file, wherever Herald is started."""
    if isinstance(section, dict) and isinstance(section.get(key), str) and not Path(section[key]).is_absolute():
        section[key] = str(base / section[key])


def _describe(exc: ValidationError, source: Path) -> str:
    lines = [f"invalid configuration ({source} and HERALD_* environment):"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {key}: {error['msg']}")
    return "\n".join(lines)
