"""A company brands its notices with its own templates, overriding the built-in ones file by file,
and learns about a broken template before any partner would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service import appkeys
from service.app import create_app
from service.cli import main
from service.settings import SettingsError
from service.store.tables import sandbox_messages
from tests.helpers import ROOT, auth, make_settings, wait_until

FOOTER_JA = "株式会社ヘラルド 情報システム部 お客様窓口 0120-000-000"
LOGO = '<img src="https://www.example.co.jp/logo.png" alt="ヘラルド">'


def own_templates(root: Path) -> Path:
    """Own footer in the Japanese text layout, own logo in the English HTML layout, own English
    subject for the initial notice; everything else stays built in."""
    (root / "ja").mkdir(parents=True)
    (root / "en").mkdir()
    builtin_txt = (ROOT / "templates" / "ja" / "_layout.txt.j2").read_text(encoding="utf-8")
    (root / "ja" / "_layout.txt.j2").write_text(builtin_txt + "\n" + FOOTER_JA + "\n", encoding="utf-8")
    builtin_html = (ROOT / "templates" / "en" / "_layout.html.j2").read_text(encoding="utf-8")
    body = builtin_html.index(">", builtin_html.index("<body")) + 1
    branded = builtin_html[:body] + "\n" + LOGO + builtin_html[body:]
    assert branded != builtin_html
    (root / "en" / "_layout.html.j2").write_text(branded, encoding="utf-8")
    (root / "en" / "initial.subject.j2").write_text(
        "[Herald Inc.] Incident: {{ incident.title|oneline }}", encoding="utf-8"
    )
    return root


def incident_body() -> dict[str, Any]:
    import json

    body = json.loads((ROOT / "config" / "sample-incident.json").read_text(encoding="utf-8"))
    body["next_update_at"] = "2030-01-01T00:00:00Z"
    return body


async def test_own_templates_override_the_built_in_ones_file_by_file(
    aiohttp_client: Any, sqlite_url: str, tmp_path: Path
) -> None:
    own = own_templates(tmp_path / "brand")
    settings = make_settings(sqlite_url, templates={"directory": str(own)}, directory={"import_on_start": True})
    client = await aiohttp_client(create_app(settings))
    reply = await client.post("/v1/incidents", json=incident_body(), headers=auth("operator"))
    assert reply.status == 202, await reply.text()
    total = (await reply.json())["deliveries"]["total"]
    store = client.app[appkeys.STORE]

    async def every_message_recorded() -> list[Any]:
        async with store.read() as conn:
            rows = (await conn.execute(select(sandbox_messages))).all()
        return rows if len(rows) == total else []

    messages = await wait_until(every_message_recorded, timeout=30)
    emails = [row for row in messages if row.channel == "email"]
    japanese = [row for row in emails if "【" in (row.subject or "")]
    english = [row for row in emails if (row.subject or "").startswith("[Herald Inc.] Incident: ")]
    assert japanese and english, [row.subject for row in emails]
    assert all(FOOTER_JA in row.body for row in japanese), "own Japanese layout is used"
    assert all(FOOTER_JA not in row.body for row in english), "the English text layout stays built in"
    assert all(LOGO in row.html for row in english), "own English HTML layout is used"
    assert all(LOGO not in row.html for row in japanese)


def test_a_template_with_a_syntax_error_stops_start_up_naming_file_and_line(sqlite_url: str, tmp_path: Path) -> None:
    own = tmp_path / "brand"
    (own / "ja").mkdir(parents=True)
    (own / "ja" / "initial.txt.j2").write_text("ご担当者様\n{% if notice.summary %}\n{{ notice.summary }}\n", "utf-8")
    with pytest.raises(SettingsError, match=r"ja/initial\.txt\.j2:\d+: .*endif"):
        create_app(make_settings(sqlite_url, templates={"directory": str(own)}))


def test_a_template_that_only_fails_without_optional_fields_is_caught(sqlite_url: str, tmp_path: Path) -> None:
    own = tmp_path / "brand"
    (own / "en").mkdir(parents=True)
    (own / "en" / "initial.txt.j2").write_text("Window opens {{ notice.window_start.strftime('%H:%M') }}\n", "utf-8")
    with pytest.raises(SettingsError, match=r"en/initial: rendering with only the required fields"):
        create_app(make_settings(sqlite_url, templates={"directory": str(own)}))


def test_templates_check_reports_good_and_bad_directories(tmp_path: Path, capsys: Any) -> None:
    good = own_templates(tmp_path / "good")
    assert main(["templates", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 9 kinds × 2 languages render; 3 file(s) override")
    assert "en/initial.subject.j2" in out

    bad = tmp_path / "bad"
    (bad / "ja").mkdir(parents=True)
    (bad / "ja" / "inital.txt.j2").write_text("typo in the name\n", "utf-8")
    (bad / "ja" / "progress.sms.j2").write_text("{{ notice.summary | no_such_filter }}\n", "utf-8")
    assert main(["templates", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "ja/inital.txt.j2: Herald never uses this file" in err
    assert main(["templates", "check", str(tmp_path / "absent")]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_an_unknown_filter_is_reported_with_its_file(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "bad"
    (bad / "ja").mkdir(parents=True)
    (bad / "ja" / "progress.sms.j2").write_text("{{ notice.summary | no_such_filter }}\n", "utf-8")
    assert main(["templates", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "progress.sms.j2" in err and "no_such_filter" in err
