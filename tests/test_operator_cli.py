"""An operator runs an incident from a terminal: the `herald` verbs talk to a running Herald over
its HTTP API (here a real server on 127.0.0.1), never to its database."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.cli.deliveries import LiveScreen, progress_lines
from service.cli.output import table, width
from tests.fakes.smtp import SmtpSink
from tests.helpers import ROOT, TOKENS, make_settings

SAMPLE = ROOT / "config" / "sample-incident.json"


async def herald_cli(url: str, *argv: str, token: str | None = TOKENS["operator"]) -> tuple[int, str, str]:
    """`herald ARGV` in its own process, with HERALD_URL and HERALD_TOKEN as a script would set them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(HERALD_URL=url, PYTHONPATH=str(ROOT))
    if token is not None:
        env["HERALD_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def herald(aiohttp_server: Any, sqlite_url: str) -> AsyncIterator[str]:
    settings = make_settings(sqlite_url, directory={"import_on_start": True})
    server = await aiohttp_server(create_app(settings))
    yield str(server.make_url("")).rstrip("/")


async def test_an_operator_opens_follows_updates_and_reports_an_incident(herald: str, tmp_path: Path) -> None:
    code, out, err = await herald_cli(herald, "incident", "open", "--file", str(SAMPLE), "--next-update", "30")
    assert code == 0, err
    assert "Incident #1 opened." in out and "Notice #1 (version 1) is published." in out
    assert "herald deliveries watch 1" in out

    code, out, err = await herald_cli(herald, "deliveries", "watch", "1", "--interval", "0.2", "--for", "30")
    assert code == 0, err
    assert "tier 1  sms" in out and "█" * 24 in out
    total = json.loads((await herald_cli(herald, "incident", "show", "1", "--json"))[1])["timeline"][0]["deliveries"]
    assert f"settled: {sum(total.values())} of {sum(total.values())} out, 0 failed" in out

    code, out, err = await herald_cli(
        herald,
        "incident", "update", "1",
        "--status", "recovering",
        "--stage", "started",
        "--current-status", "ja=予備系への切り替えを開始しました。",
        "--current-status", "en=We have started switching to the standby system.",
        "--next-update", "30",
    )  # fmt: skip
    assert code == 0, err
    assert "Notice #2 (version 2) is published." in out

    code, out, _ = await herald_cli(herald, "incident", "list")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert row.split()[:3] == ["1", "critical", "recovering"]
    assert "受発注APIの応答遅延・エラー" in row, "Japanese is shown as text, not escapes"
    assert width(row[: row.index("order-api")]) == header.index("components"), "columns line up"

    code, out, _ = await herald_cli(herald, "incident", "show", "1")
    assert code == 0
    assert "Incident #1: 受発注APIの応答遅延・エラー" in out
    kinds = [line.split()[2] for line in out.splitlines() if line[:1].isdigit()]
    assert kinds == ["initial", "progress"]

    report = tmp_path / "incident-1.html"
    code, out, err = await herald_cli(herald, "report", "1", "--html", str(report))
    assert code == 0, err
    html = report.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "受発注APIの応答遅延・エラー" in html


async def test_scripts_get_json_and_reliable_exit_codes(herald: str, tmp_path: Path) -> None:
    code, out, _ = await herald_cli(herald, "incident", "open", "--file", str(SAMPLE), "--next-update", "30", "--json")
    assert code == 0 and json.loads(out)["incident_id"] == 1

    code, _, err = await herald_cli(herald, "incident", "list", token="not-a-token")
    assert code == 4 and "401" in err and "HERALD_TOKEN" in err
    code, _, err = await herald_cli(herald, "incident", "list", token=None)
    assert code == 4

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(SAMPLE.read_text("utf-8")), "severity": "apocalyptic"}), "utf-8")
    code, _, err = await herald_cli(herald, "incident", "open", "--file", str(bad))
    assert code == 5 and "severity" in err and "422" in err

    code, _, err = await herald_cli(
        herald, "incident", "update", "1", "--status", "resolved", "--summary", "復旧しました。"
    )
    assert code == 5 and "--" not in err and "notice.fields.summary.en" in err, "Herald's field path is passed on"
    code, _, err = await herald_cli(
        herald,
        "incident",
        "update",
        "1",
        "--status",
        "resolved",
        "--summary",
        "ja=復旧しました。",
        "--summary",
        "en=Recovered.",
    )
    assert code == 0, err
    code, _, err = await herald_cli(herald, "incident", "update", "1", "--status", "recovering")
    assert code == 5 and "409" in err and "status" in err

    code, _, err = await herald_cli(herald, "incident", "show", "99")
    assert code == 5 and "404" in err

    code, _, err = await herald_cli("http://127.0.0.1:9", "incident", "list")
    assert code == 3 and "cannot reach Herald" in err

    code, _, err = await herald_cli(herald, "incident", "open", "--file", str(tmp_path / "absent.json"))
    assert code == 2 and "absent.json" in err


async def test_a_draft_is_published_and_a_maintenance_broadcast_goes_out(herald: str) -> None:
    code, out, err = await herald_cli(
        herald, "incident", "open", "--file", str(SAMPLE), "--next-update", "30", "--draft"
    )
    assert code == 0, err
    assert "Notice #1 (version 1) is draft." in out and "herald notice publish 1" in out
    code, out, _ = await herald_cli(herald, "notice", "drafts")
    assert out.splitlines()[1].split()[:3] == ["1", "1", "initial"]
    code, out, err = await herald_cli(herald, "notice", "publish", "1")
    assert code == 0, err
    assert "Notice #1 (version 1) is published." in out

    code, out, err = await herald_cli(
        herald,
        "broadcast",
        "--kind", "maintenance",
        "--summary", "ja=受発注システムの定期メンテナンスを実施します。",
        "--summary", "en=Scheduled maintenance of the order system.",
        "--impact", "ja=メンテナンス中は受発注システムをご利用いただけません。",
        "--impact", "en=The order system is unavailable during the window.",
        "--window-start", "2030-12-05T01:00:00+09:00",
        "--window-end", "2030-12-05T03:00:00+09:00",
        "--responsible", "ja=運用センター",
        "--responsible", "en=Operations Center",
        "--component", "order-api",
        "--tier", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "is published." in out and "tier 1" in out and "tier 2" not in out


async def test_watch_exits_1_when_deliveries_fail(aiohttp_server: Any, sqlite_url: str, smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(1000, code=550, text="5.1.1 no such user", on="RCPT")
    settings = make_settings(
        sqlite_url,
        directory={"import_on_start": True},
        smtp={"host": smtp_sink.host, "port": smtp_sink.port, "tls": "none"},
    )
    server = await aiohttp_server(create_app(settings))
    url = str(server.make_url("")).rstrip("/")
    code, _, err = await herald_cli(url, "incident", "open", "--file", str(SAMPLE), "--next-update", "30")
    assert code == 0, err
    code, out, _ = await herald_cli(url, "deliveries", "watch", "1", "--interval", "0.2", "--for", "30", "--json")
    assert code == 1
    last = json.loads(out.splitlines()[-1])
    assert last["settled"] is True and last["by_channel"]["email"].get("failed", 0) > 0


def test_tables_line_up_with_japanese_text() -> None:
    assert width("受発注API") == 9
    lines = table(["id", "title", "status"], [[1, "受発注APIの障害", "open"], [22, "EDI delay", "closed"]]).splitlines()
    starts = {width(line[: line.index(word)]) for line, word in zip(lines, ["status", "open", "closed"], strict=True)}
    assert len(starts) == 1, lines


def test_a_terminal_sees_the_progress_redrawn_in_place() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    summary: dict[str, Any] = {
        "total": 4,
        "by_status": {"pending": 2, "sent": 2},
        "by_tier_channel": {"1": {"sms": {"pending": 2, "sent": 2}}},
    }
    screen = LiveScreen(Terminal(), json_lines=False)
    screen.show(summary, progress_lines(summary), False)
    after = {**summary, "by_status": {"sent": 4}, "by_tier_channel": {"1": {"sms": {"sent": 4}}}}
    screen.show(after, progress_lines(after), True)
    written = screen.stream.getvalue()  # type: ignore[attr-defined]
    assert "2/4" in written and "4/4" in written
    assert "\x1b[2F\x1b[J" in written, "the two-line table is redrawn over itself"


async def test_an_operator_previews_a_draft_from_the_terminal_and_nothing_is_sent(herald: str) -> None:
    code, _, err = await herald_cli(
        herald, "incident", "open", "--file", str(SAMPLE), "--next-update", "30", "--draft"
    )  # fmt: skip
    assert code == 0, err

    code, out, err = await herald_cli(herald, "notice", "preview", "1")
    assert code == 0, err
    assert "[ja] email subject:" in out and "[en] email subject:" in out
    assert "UCS-2" in out and "segment(s)" in out, "the Japanese SMS is measured"
    assert "Nothing was sent or stored." in out
    code, out, _ = await herald_cli(herald, "notice", "preview", "1", "--json")
    preview = json.loads(out)
    assert preview["dry_run"] is True and preview["audience"]["deliveries"] > 0

    code, out, _ = await herald_cli(herald, "notice", "drafts")
    assert out.splitlines()[1].split()[:3] == ["1", "1", "initial"], "the draft is still a draft after previews"
