"""Words partners read about monitoring alerts: service names, never hosts, ports or alert names.

An alert's labels and annotations are written for engineers ("ConfOrderApiDown on
order-api-0:8080"). Partners read only the services affected, named as `[services]` configures
them in their language, and the alerts' partner annotations (`partner_summary_ja`, ...); without
those, neutral wording built from the service names and the severity, so a critical alert still
goes out at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from service.notices import LANGUAGES
from service.render import SEVERITY_LABELS
from service.settings import Settings

LIST_SEPARATOR = {"ja": "・", "en": ", "}
OUR_SERVICES = {"ja": "弊社サービス", "en": "our services"}


def service_names(settings: Settings, components: Iterable[str], lang: str) -> list[str]:
    """Partner-facing names of components, in order, each once; an unmapped component keeps its name."""
    names = []
    for component in components:
        if component == "*":
            continue
        mapped = settings.services.get(component)
        names.append(getattr(mapped, lang) if mapped is not None else component)
    return list(dict.fromkeys(names))


def listed(names: Sequence[str], lang: str) -> str:
    if not names:
        return OUR_SERVICES[lang]
    if lang == "en" and len(names) > 1:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return LIST_SEPARATOR[lang].join(names)


def alert_title(settings: Settings, components: Sequence[str]) -> dict[str, str]:
    title = {}
    for lang in LANGUAGES:
        services = listed(service_names(settings, components, lang), lang)
        title[lang] = f"{services}の障害" if lang == "ja" else f"Disruption to {services}"
    return title


def neutral_summary(settings: Settings, components: Sequence[str], severity: str) -> dict[str, str]:
    summary = {}
    for lang in LANGUAGES:
        services = listed(service_names(settings, components, lang), lang)
        label = SEVERITY_LABELS[lang].get(severity, severity)
        if lang == "ja":
            summary[lang] = f"{services}で障害が発生しています（重大度：{label}）。担当者が状況を確認しております。"
        else:
            summary[lang] = (
                f"We are experiencing a {label.lower()} disruption affecting {services}. Our engineers are on it."
            )
    return summary


def in_every_language(given: Mapping[str, str], fallback: Mapping[str, str]) -> dict[str, str]:
    """The alert's partner text where it has it, Herald's wording for the languages it lacks."""
    return {lang: given.get(lang) or fallback[lang] for lang in LANGUAGES}
