"""Screenshots of every console page and of the partner page for docs/console.md, taken from a
running `herald demo`.

    .venv/bin/python -m bench.screenshots [--out docs/console]

Starts `herald demo` in a temporary directory on a free port, reads the console address and the
sign-in token it prints, adds what a quiet demo lacks (a draft waiting for an operator, an
update), then drives Debian's Chromium (Playwright) through each page in Japanese and English,
at desktop and phone widths. The partner pages are opened as a partner contact would, by the
signed link every notice carries (the demo runs with a link secret this script knows); the
contact asks a question on the page and an operator answers it through the API. Nothing is
mocked: the pages are the demo's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen
from zoneinfo import ZoneInfo

COMPANY_ZONE = ZoneInfo("Asia/Tokyo")  # the forms read times in the company's zone (the default)
ROOT = Path(__file__).resolve().parent.parent
DESKTOP: Any = {"width": 1280, "height": 900}  # playwright ViewportSize
PHONE: Any = {"width": 390, "height": 844}
LINK_SECRET = secrets.token_urlsafe(32)  # the demo's [ack] secret: this script signs partner-page links with it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(workdir: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {
        **os.environ,
        "HERALD_SERVER__PORT": str(free_port()),
        "HERALD_ACK__SECRET": LINK_SECRET,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    console = token = None
    deadline = time.monotonic() + 120
    assert demo.stdout is not None
    while time.monotonic() < deadline and token is None:
        line = demo.stdout.readline()
        if not line:
            break
        if found := re.search(r"Console: (\S+)", line):
            console = found.group(1)
        if found := re.search(r"admin token .*: (\S+)$", line.strip()):
            token = found.group(1)
    if console is None or token is None:
        demo.terminate()
        raise SystemExit("bench.screenshots: the demo did not print its console address and token")
    return demo, console.removesuffix("/console/"), token


def get(base: str, token: str, path: str) -> dict[str, Any]:
    request = Request(base + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (the demo)
    with urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def post(base: str, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = Request(  # noqa: S310 (the demo on 127.0.0.1)
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def seed(base: str, token: str) -> dict[str, int]:
    """A second incident waiting as a draft, and an update on the demo's incident."""
    sample = json.loads((ROOT / "config" / "sample-incident.json").read_text("utf-8"))
    soon = (datetime.now(UTC) + timedelta(minutes=40)).isoformat()
    draft = {
        **sample,
        "title": {"ja": "決済ゲートウェイの一部エラー", "en": "Some payment gateway errors"},
        "severity": "major",
        "components": ["payments"],
        "next_update_at": soon,
        "notice": {**sample["notice"], "publish": False},
    }
    drafted = post(base, token, "/v1/incidents", draft)
    update = {
        "status": "identified",
        "next_update_at": soon,
        "notice": {
            "kind": "progress",
            "fields": {
                "stage": "progress",
                "progress_percent": 40,
                "current_status": {
                    "ja": "データベース接続数の上限設定を見直し、段階的に反映しています。",
                    "en": "We are raising the database connection limit step by step.",
                },
            },
        },
    }
    post(base, token, "/v1/incidents/1/updates", update)
    return {"draft_notice": int(drafted["notice_id"])}


def shoot(page: Any, out: Path, name: str) -> None:
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"  {name}.png")


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/console/sign-in")
    page.fill("#token", token)
    page.click("form[action='/console/sign-in'] button[type=submit]")
    page.wait_for_url(base + "/console/")


def fill_new_incident(page: Any) -> None:
    page.fill("[name='title.ja']", "EDI受信処理の遅延")
    page.fill("[name='title.en']", "EDI inbound processing delayed")
    page.select_option("#f-severity", "major")
    page.fill("#f-components", "edi-gateway")
    page.fill("[name='impact.ja']", "EDIの受信データの取り込みが最大20分遅れています。")
    page.fill("[name='impact.en']", "EDI inbound data is imported up to 20 minutes late.")
    page.fill("#f-next_update_at", (datetime.now(COMPANY_ZONE) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("[name='summary.ja']", "本日16時頃よりEDI受信処理に遅延が発生しております。")
    page.fill("[name='summary.en']", "Since about 16:00 JST EDI inbound processing has been delayed.")
    page.fill("[name='current_status.ja']", "キューの滞留を解消する作業を進めております。")
    page.fill("[name='current_status.en']", "We are draining the backlog in the queue.")
    page.fill("[name='outlook.ja']", "1時間以内の解消を見込んでおります。")
    page.fill("[name='outlook.en']", "We expect to clear the backlog within the hour.")


def take_all(base: str, token: str, out: Path, ids: dict[str, int], pages: set[str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium_path is None:
        raise SystemExit("bench.screenshots: needs Debian's chromium (apt-get install chromium fonts-ipafont)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        if "console" in pages:
            console_pages(browser, base, token, out, ids)
        if "partner" in pages:
            partner_pages(browser, base, token, out)
        browser.close()


def console_pages(browser: Any, base: str, token: str, out: Path, ids: dict[str, int]) -> None:
    for lang, locale in (("ja", "ja-JP"), ("en", "en-US")):
        context = browser.new_context(locale=locale, viewport=DESKTOP)
        page = context.new_page()
        page.goto(base + "/console/sign-in")
        shoot(page, out, f"sign-in-{lang}")
        sign_in(page, base, token)
        shoot(page, out, f"board-{lang}")
        page.goto(base + "/console/incidents/1")
        page.locator("[data-state]").wait_for()
        shoot(page, out, f"room-{lang}")
        page.goto(base + "/console/compose")
        fill_new_incident(page)
        page.click("button[value=preview]")
        page.locator("section.preview").wait_for()
        shoot(page, out, f"compose-preview-{lang}")
        page.goto(base + "/console/incidents/1/update?kind=progress")
        shoot(page, out, f"update-{lang}")
        page.goto(base + f"/console/notices/{ids['draft_notice']}/publish")
        shoot(page, out, f"draft-{lang}")
        page.goto(base + "/console/broadcast?kind=maintenance")
        page.fill("[name='summary.ja']", "定期メンテナンスを実施いたします。")
        page.fill("[name='summary.en']", "We will carry out scheduled maintenance.")
        page.fill("[name='impact.ja']", "作業中は受発注APIをご利用いただけません。")
        page.fill("[name='impact.en']", "The Order API is unavailable during the work.")
        start = datetime.now(COMPANY_ZONE) + timedelta(days=7)
        page.fill("#f-window_start", start.strftime("%Y-%m-%dT02:00"))
        page.fill("#f-window_end", start.strftime("%Y-%m-%dT04:00"))
        page.fill("[name='title.ja']", "定期メンテナンス")
        page.fill("[name='title.en']", "Scheduled maintenance")
        page.click("button[value=preview]")
        page.locator("section.preview").wait_for()
        shoot(page, out, f"broadcast-preview-{lang}")
        page.goto(base + "/console/directory")
        shoot(page, out, f"directory-{lang}")
        page.goto(base + "/console/directory/tokai-logistics")
        shoot(page, out, f"partner-{lang}")
        page.goto(base + "/console/deliveries?incident=1")
        shoot(page, out, f"deliveries-{lang}")
        page.locator("table a").first.click()
        shoot(page, out, f"delivery-{lang}")
        context.close()
    phone = browser.new_context(locale="ja-JP", viewport=PHONE).new_page()
    sign_in(phone, base, token)
    shoot(phone, out, "board-ja-phone")
    phone.goto(base + "/console/incidents/1")
    shoot(phone, out, "room-ja-phone")


PARTNER_CONTACTS = {  # (partner, contact's email, the question the contact asks, our answer or None)
    "ja": (
        "tokai-logistics",
        "hanako.sato@tokai-logistics.example.jp",
        "月末のバッチ処理（30日 23時）は予定どおり実行できますか？",
        {
            "ja": "月末バッチへの影響はございません。予定どおり実行いただけます。",
            "en": "The month-end batch is not affected.",
        },
    ),
    "en": (
        "pacific-freight",
        "james.wong@pacificfreight.example.com",
        "Are EDI orders sent during the outage kept?",
        None,
    ),
}


def page_link(base: str, token: str, partner: str, address: str) -> str:
    """The partner-page link the contact's notices carry (signed as the demo signs it)."""
    from service.partner_page import page_signer
    from service.settings import Settings

    found = get(base, token, f"/v1/deliveries?partner_id={partner}&limit=100")["items"]
    contact_id = next(d["contact_id"] for d in found if d["address"] == address)
    signer = page_signer(Settings(ack={"secret": LINK_SECRET}))  # type: ignore[arg-type]  # a table, as in the TOML
    return f"{base}/p/{signer.token(contact_id, time.time() + 86400)}"


def partner_pages(browser: Any, base: str, token: str, out: Path) -> None:
    """The partner page with its timeline and questions, as a contact reads it on a screen and a phone."""
    for lang, (partner, address, question, answer) in PARTNER_CONTACTS.items():
        link = page_link(base, token, partner, address)
        page = browser.new_context(locale="ja-JP" if lang == "ja" else "en-US", viewport=DESKTOP).new_page()
        page.goto(link)
        incident = page.locator("section.card").first
        incident.locator("textarea[name=question]").fill(question)
        incident.locator("details.ask button[type=submit]").click()
        page.wait_for_url("**?done=asked")
        if answer is not None:
            [asked] = [q for q in get(base, token, "/v1/incidents/1/questions")["items"] if q["body"] == question]
            post(base, token, f"/v1/questions/{asked['id']}/answer", {"answer": answer})
            incident.locator("form[action*='/ack/'] button").first.click()
            page.wait_for_url("**?done=acknowledged")
        page.goto(link)
        shoot(page, out, f"partner-page-{lang}")
        page.set_viewport_size(PHONE)
        page.reload()
        shoot(page, out, f"partner-page-{lang}-phone")
        page.context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "console"), help="folder for the PNG files")
    parser.add_argument("--pages", default="console,partner", help="which: console, partner or both (default)")
    args = parser.parse_args(argv)
    pages = set(args.pages.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="herald-screenshots-") as workdir:
        demo, base, token = start_demo(Path(workdir))
        try:
            print(f"demo at {base}; screenshots into {out}")
            ids = seed(base, token)
            take_all(base, token, out, ids, pages)
        finally:
            demo.terminate()
            demo.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
