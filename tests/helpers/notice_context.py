"""A render context as the dispatcher builds it, in both languages, for template tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STARTED = datetime(2026, 11, 25, 5, 10, tzinfo=UTC)  # 14:10 JST
NEXT_UPDATE = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)  # 15:30 JST
ETA = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 18:00 JST
WINDOW_START = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)  # 29 Nov 01:00 JST
WINDOW_END = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)  # 29 Nov 05:00 JST
ACK_URL = "https://herald.example.co.jp/ack/7f3a9c"
STATUS_PAGE = "https://status.example.co.jp"

NEXT_UPDATE_SHOWN = {"ja": "2026年11月25日 15:30 (JST)", "en": "25 Nov 2026 15:30 JST"}

FIELDS: dict[str, dict[str, Any]] = {
    "ja": {
        "title": "受発注システムにログインできない障害",
        "summary": "11月25日 14:10頃より、受発注システムにログインできない事象が発生しております。",
        "impact": "受発注システムをご利用の全てのお取引先様（EDI連携を含む）",
        "current_status": "認証サーバーの切り替え作業を実施しております。",
        "outlook": "本日18時頃の復旧を見込んでおります。",
        "next_steps": "予備系の認証サーバーへ切り替えたうえで、再度復旧を試みます。",
        "cause": "認証サーバーの証明書更新時の設定誤りによるものでした。",
        "countermeasures": "証明書更新手順に二重確認を追加いたします。",
        "changes": "障害時の第1報を発生から30分以内にお送りいたします。",
        "cost_estimate": "お取引先様へのご負担は発生しない見込みです。",
        "time_estimate": "復旧作業には約3時間を要する見込みです。",
        "subject": "年末年始の営業日のお知らせ",
        "body": "年末年始の弊社営業日は12月29日までとなります。",
        "responsible": {
            "name": "佐藤 花子",
            "department": "情報システム部",
            "email": "sato@herald.example.co.jp",
            "phone": "03-1234-5678",
        },
        "components": ["受発注システム", "EDI連携"],
    },
    "en": {
        "title": "Partners cannot log in to the order system",
        "summary": "Since 14:10 JST on 25 Nov, partners have been unable to log in to the order system.",
        "impact": "All partners using the order system, including EDI connections",
        "current_status": "We are switching over to the standby authentication server.",
        "outlook": "We expect to recover by 18:00 JST today.",
        "next_steps": "We will move to the standby authentication server and try again.",
        "cause": "A configuration error during the certificate renewal on the authentication server.",
        "countermeasures": "We are adding a second review to the certificate renewal procedure.",
        "changes": "We will send the first notice of an incident within 30 minutes.",
        "cost_estimate": "We do not expect any cost to fall on partners.",
        "time_estimate": "About three hours of recovery work.",
        "subject": "Office hours over the New Year holidays",
        "body": "Our last business day this year is 29 December.",
        "responsible": {
            "name": "Hanako Sato",
            "department": "IT Operations",
            "email": "sato@herald.example.com",
            "phone": "+81 3 1234 5678",
        },
        "components": ["Order system", "EDI"],
    },
}

NOTICE_KEYS = [
    "title",
    "summary",
    "impact",
    "current_status",
    "outlook",
    "stage",
    "progress_percent",
    "next_steps",
    "cause",
    "countermeasures",
    "changes",
    "window_start",
    "window_end",
    "recovery_eta",
    "cost_estimate",
    "time_estimate",
    "subject",
    "body",
    "responsible",
    "next_update_at",
    "components",
]


def notice_context(
    lang: str,
    *,
    version: int = 2,
    corrects_version: int | None = None,
    ack_url: str | None = ACK_URL,
    incident: bool = True,
    **notice: Any,
) -> dict[str, Any]:
    """A render context as the dispatcher builds it: every notice key present, None when not given."""
    fields = dict.fromkeys(NOTICE_KEYS)
    fields.update(FIELDS[lang], next_update_at=NEXT_UPDATE)
    fields.update(notice)
    return {
        "version": version,
        "corrects_version": corrects_version,
        "company": {"name": "株式会社ヘラルド" if lang == "ja" else "Herald Inc.", "status_page_url": STATUS_PAGE},
        "incident": {
            "id": 42,
            "title": fields["title"],
            "severity": "critical",
            "status": "investigating",
            "components": fields["components"],
            "started_at": STARTED,
        }
        if incident
        else None,
        "notice": fields,
        "services": fields["components"],  # compose names them for partners; here they are already names
        "recipient": {
            "name": "山田 太郎" if lang == "ja" else "Taro Yamada",
            "partner_name": "株式会社ABC商事" if lang == "ja" else "ABC Trading Co., Ltd.",
            "tier": 1,
        },
        "ack_url": ack_url,
    }
