"""What an operator should fix before trusting Herald: checked once at start, logged as
structured lines and shown on /readyz. None of them stops Herald (a demo runs with all four)."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service.settings import ROOT, Settings

log = logging.getLogger("herald.config")

EXAMPLE_DIRECTORY = ROOT / "config" / "partners.example.yaml"


@dataclass(frozen=True)
class ConfigWarning:
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def configuration_warnings(settings: Settings) -> list[ConfigWarning]:
    warnings: list[ConfigWarning] = []
    real_channels = [
        name for name, on in (("email", settings.email_configured), ("sms", settings.sms_configured)) if on
    ]
    if not any(token.secret for token in settings.auth.tokens):
        warnings.append(
            ConfigWarning(
                "no_token_enabled",
                "no API token has a secret (HERALD_TOKEN_<NAME>): every API call will be refused",
            )
        )
    if real_channels and _on_loopback(settings.server.public_base_url):
        warnings.append(
            ConfigWarning(
                "public_base_url_loopback",
                f"server.public_base_url is {settings.server.public_base_url} while {' and '.join(real_channels)} "
                "reach real people: their acknowledgement links and Twilio callbacks cannot reach Herald",
            )
        )
    if real_channels and settings.directory.import_on_start and _is_example(settings.directory.path):
        warnings.append(
            ConfigWarning(
                "example_directory",
                "the example partner directory (fictitious partners) is imported on start while "
                f"{' and '.join(real_channels)} are real: set directory.path or directory.import_on_start = false",
            )
        )
    if settings.ack.secret is None:
        warnings.append(
            ConfigWarning(
                "ack_secret_missing",
                "HERALD_ACK__SECRET is not set: acknowledgement links stop working at every restart",
            )
        )
    return warnings


def log_warnings(warnings: list[ConfigWarning]) -> None:
    for warning in warnings:
        log.warning(warning.detail, extra={"fields": {"event": "config_warning", "code": warning.code}})


def _on_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_example(path: str) -> bool:
    try:
        return Path(path).resolve() == EXAMPLE_DIRECTORY.resolve()
    except OSError:
        return False
