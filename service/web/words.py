"""Every word the console shows, in Japanese and English. Templates call `t("key")`."""

from __future__ import annotations

from typing import Any

from service.render import SEVERITY_LABELS, STAGE_LABELS, STATUS_LABELS

LANGUAGES = ("ja", "en")

WORDS: dict[str, tuple[str, str]] = {
    # frame
    "console": ("Herald 運用コンソール", "Herald console"),
    "board": ("ボード", "Board"),
    "new_incident": ("障害を登録", "New incident"),
    "broadcast": ("一斉通知", "Broadcast"),
    "directory": ("取引先名簿", "Directory"),
    "deliveries": ("配信ログ", "Delivery log"),
    "sign_in": ("サインイン", "Sign in"),
    "sign_out": ("サインアウト", "Sign out"),
    "signed_in_as": ("サインイン中: {name}（{scope}）", "Signed in as {name} ({scope})"),
    "language": ("表示言語", "Language"),
    "token": ("アクセストークン", "Access token"),
    "token_help": (
        "運用担当者または管理者のベアラートークンを入力してください。以後はセッションで認証されます。",
        "Enter your operator or admin bearer token once; the console keeps you signed in with a session.",
    ),
    "token_refused": (
        "トークンが正しくないか、コンソールを使う権限がありません。",
        "This token is not valid for the console.",
    ),
    "csrf_refused": (
        "フォームの有効期限が切れたか、正しくない送信です。ページを再読み込みしてやり直してください。",
        "This form is out of date or was not sent from the console. Reload the page and try again.",
    ),
    "signed_out": ("サインインしてください。", "Please sign in."),
    "admins_only": ("このページは管理者のみ閲覧できます。", "This page is for admins only."),
    "not_found": ("見つかりません。", "Not found."),
    "error": ("エラー", "Error"),
    "back_to_board": ("ボードへ戻る", "Back to the board"),
    # board
    "open_incidents": ("対応中の障害", "Open incidents"),
    "no_open_incidents": ("対応中の障害はありません。", "No open incidents."),
    "drafts": ("承認待ちの下書き", "Drafts waiting for an operator"),
    "no_drafts": ("承認待ちの下書きはありません。", "No drafts waiting."),
    "severity": ("重大度", "Severity"),
    "status": ("状況", "Status"),
    "components": ("影響コンポーネント", "Components"),
    "last_notice": ("最終通知", "Last notice"),
    "next_update": ("次回報告", "Next update"),
    "overdue": ("超過", "overdue"),
    "none_promised": ("約束なし", "none promised"),
    "never": ("未通知", "never"),
    "ago": ("{minutes}分前", "{minutes} min ago"),
    "in_minutes": ("あと{minutes}分", "in {minutes} min"),
    "publish": ("公開", "Publish"),
    "review_and_publish": ("確認して公開", "Review and publish"),
    "discard": ("破棄", "Discard"),
    "discard_confirm": ("この下書きを破棄しますか？", "Discard this draft?"),
    "discarded": ("下書きを破棄しました。", "The draft was discarded."),
    "incident": ("障害", "Incident"),
    "title": ("件名", "Title"),
    "kind": ("通知の種類", "Notice kind"),
    "created": ("作成", "Created"),
    "source": ("発生元", "Source"),
    # incident room
    "incident_room": ("対応ルーム", "Incident room"),
    "timeline": ("通知の履歴", "Timeline of notices"),
    "version": ("第{version}版", "Version {version}"),
    "corrects": ("第{version}版の訂正", "corrects version {version}"),
    "changed_fields": ("前版からの変更", "Changed since the previous version"),
    "no_changes": ("変更なし", "No field changed"),
    "before": ("変更前", "Before"),
    "after": ("変更後", "After"),
    "progress": ("配信状況", "Delivery progress"),
    "progress_of": ("第{version}版の配信状況", "Delivery of version {version}"),
    "tier": ("階層", "Tier"),
    "channel": ("経路", "Channel"),
    "planned": ("予定", "Planned"),
    "sent": ("送信済み", "Sent"),
    "delivered": ("到達", "Delivered"),
    "failed": ("失敗", "Failed"),
    "acknowledged": ("受領確認", "Acknowledged"),
    "total": ("合計", "Total"),
    "state_sending": ("送信中", "sending"),
    "state_sent": ("送信完了", "sent"),
    "state_none": ("配信なし", "nothing to send"),
    "unacknowledged": ("受領未確認の第1階層取引先", "Tier-1 partners that have not acknowledged"),
    "all_acknowledged": ("すべての第1階層取引先が受領を確認しました。", "Every tier-1 partner has acknowledged."),
    "partner": ("取引先", "Partner"),
    "failures": ("配信の失敗", "Failures"),
    "no_failures": ("失敗した配信はありません。", "No failed deliveries."),
    "reason": ("理由", "Reason"),
    "requeue": ("再送", "Re-queue"),
    "requeued": ("再送を予約しました。", "The delivery was re-queued."),
    "evidence_report": ("証跡レポート", "Evidence report"),
    "post_update": ("続報を作成", "Post an update"),
    "draft_state": ("下書き", "draft"),
    "published_state": ("公開済み", "published"),
    "discarded_state": ("破棄", "discarded"),
    "live": ("自動更新中", "updating live"),
    # compose
    "compose_incident": ("障害の登録と第一報", "New incident and its first notice"),
    "compose_update": ("続報の作成", "Post an update"),
    "compose_publish": ("下書きの確認と公開", "Review and publish a draft"),
    "ja": ("日本語", "Japanese"),
    "en": ("英語", "English"),
    "required": ("必須", "required"),
    "optional": ("任意", "optional"),
    "responsible": ("当社の責任者", "Our responsible contact"),
    "responsible.name": ("責任者名", "Name"),
    "responsible.department": ("部署", "Department"),
    "responsible.email": ("メール", "Email"),
    "responsible.phone": ("電話", "Phone"),
    "new_status": ("新しい状況", "New status"),
    "unchanged": ("変更しない", "unchanged"),
    "corrects_version": ("訂正する版", "Corrects version"),
    "current_promise": (
        "現在の約束: {when}（空欄ならこの時刻を引き継ぎます）",
        "Promised now: {when} (kept when left empty)",
    ),
    "timezone_note": ("時刻は {zone} で入力", "Times are in {zone}"),
    "components_help": ("カンマ区切り（例: order-api, payments）", "Comma-separated (e.g. order-api, payments)"),
    "preview": ("プレビュー", "Preview"),
    "preview_title": ("送信内容のプレビュー（まだ送信されていません）", "Preview (nothing has been sent)"),
    "preview_again": (
        "内容を変えたのでもう一度確認してください。",
        "The text changed since the preview: check it again.",
    ),
    "audience_changed": (
        "プレビュー後に宛先の数が変わりました（{before} → {after}名）。もう一度確認してください。",
        "The audience changed since the preview ({before} → {after} recipients): check it again.",
    ),
    "email": ("メール", "Email"),
    "sms": ("SMS", "SMS"),
    "subject": ("件名", "Subject"),
    "sms_facts": (
        "{length}文字・{encoding}・{segments}通分（上限{max_segments}）",
        "{length} characters · {encoding} · {segments} segment(s) (limit {max_segments})",
    ),
    "sms_cut_note": ("予算に収めるため短縮されています", "shortened to fit its budget"),
    "audience": ("宛先", "Audience"),
    "partners_count": ("取引先 {count}社", "{count} partners"),
    "contacts_count": ("担当者 {count}名", "{count} contacts"),
    "deliveries_count": ("配信 {count}件", "{count} deliveries"),
    "sms_segments_total": ("SMS 合計 {count}通分", "{count} SMS segments in all"),
    "languages_count": ("言語別: {detail}", "By language: {detail}"),
    "warnings": ("注意", "Warnings"),
    "send_to": ("{count}名に送信", "Send to {count} recipients"),
    "confirm_send": (
        "{count}名（{partners}社）に送信します。よろしいですか？",
        "Send this notice to {count} recipients at {partners} partners?",
    ),
    "published": ("公開しました。配信を開始しています。", "Published: delivery has started."),
    "fix_errors": ("入力内容を確認してください。", "Please correct the fields marked below."),
    # broadcast
    "compose_broadcast": ("一斉通知の作成", "New broadcast"),
    "audience_all": ("すべての取引先", "Every partner"),
    "audience_partners": ("指定した取引先", "These partners"),
    "audience_components": ("指定コンポーネントの購読者", "Subscribers of these components"),
    "audience_tiers": ("対象の階層（未選択はすべて）", "Tiers (none ticked: all)"),
    "partner_ids_help": ("取引先IDをカンマ区切りで", "Partner ids, comma-separated"),
    "reason_capped": ("SMS上限によりメールのみ", "SMS capped: email only"),
    "reason_merged": ("直前の通知とまとめて送信", "merged with the previous update"),
    "reason_held": ("夜間のため朝まで保留", "held for quiet hours"),
    "reason_suppressed": ("配信停止中", "suppressed"),
    # directory
    "search": ("検索", "Search"),
    "search_help": ("ID・社名で検索", "Search id or name"),
    "coverage_gaps": ("連絡不能な第1階層（要対応）", "Coverage gaps: no reachable tier-1 contact"),
    "no_gaps": ("すべての取引先に連絡可能な第1階層がいます。", "Every partner has a reachable tier-1 contact."),
    "contacts": ("担当者", "Contacts"),
    "tier1_reachable": ("連絡可能な第1階層", "Reachable tier 1"),
    "language_col": ("言語", "Language"),
    "name": ("氏名", "Name"),
    "address": ("宛先", "Address"),
    "channels": ("経路の優先順", "Channel order"),
    "next_page": ("次へ", "Next page"),
    "first_page": ("最初へ", "First page"),
    "no_results": ("該当なし", "Nothing found"),
    # delivery log
    "filter": ("絞り込み", "Filter"),
    "any": ("すべて", "any"),
    "download_csv": ("CSVをダウンロード", "Download CSV"),
    "delivery": ("配信", "Delivery"),
    "attempts": ("試行回数", "Attempts"),
    "receipts": ("受領記録", "Receipts"),
    "no_receipts": ("受領記録はありません。", "No receipts."),
    "notice": ("通知", "Notice"),
    "error_col": ("エラー", "Error"),
    "updated": ("更新", "Updated"),
    "received": ("受信", "Received"),
    # form errors
    "err_required": ("入力してください。", "This field is required."),
    "err_datetime": ("日時を正しく入力してください。", "Enter a valid date and time."),
    "err_number": ("0〜100の数値を入力してください。", "Enter a number from 0 to 100."),
    "err_choice": ("選択肢から選んでください。", "Pick one of the choices."),
    "err_too_long": ("長すぎます。", "This is too long."),
    "err_window": ("終了は開始より後にしてください。", "The end must be after the start."),
    "err_unknown_partner": ("登録されていない取引先です: {ids}", "No such partner: {ids}"),
    "err_transition": ("この状況には変更できません。", "The incident cannot move to this status."),
    "err_invalid": ("入力内容が正しくありません。", "This value is not valid."),
    # warnings of a preview (codes from service/preview.py)
    "warn_missing_language": (
        "{field} に{language}の文がありません（{contacts}名が{language}で読みます）。",
        "{field} has no {language} text ({contacts} contacts read {language}).",
    ),
    "warn_next_update_missing": (
        "障害は対応中ですが、次回報告の時刻がありません。",
        "The incident is open but no next update time is promised.",
    ),
    "warn_next_update_past": ("次回報告の時刻が過去です。", "The next update time is in the past."),
    "warn_sms_cut": ("{language}のSMSは上限に収めるため短縮されました。", "The {language} SMS was shortened to fit."),
    "warn_no_tier1_contact": (
        "{count}社は第1階層の担当者に届きません: {partners}",
        "{count} partners have no reachable tier-1 contact: {partners}",
    ),
    "warn_no_recipients": ("この通知を受け取る宛先がありません。", "Nobody would receive this notice."),
}

FIELD_LABELS: dict[str, tuple[str, str]] = {
    "title": ("件名", "Title"),
    "severity": ("重大度", "Severity"),
    "status": ("状況", "Status"),
    "components": ("影響コンポーネント", "Components"),
    "summary": ("概要", "Summary"),
    "impact": ("影響範囲", "Impact"),
    "current_status": ("現在の状況", "Current status"),
    "outlook": ("今後の見通し", "Outlook"),
    "stage": ("復旧作業の段階", "Recovery stage"),
    "progress_percent": ("進捗（%）", "Progress (%)"),
    "next_steps": ("今後の対応", "Next steps"),
    "cause": ("発生原因", "Cause"),
    "countermeasures": ("再発防止策", "Countermeasures"),
    "changes": ("改訂内容", "Changes"),
    "window_start": ("作業開始", "Window start"),
    "window_end": ("作業終了", "Window end"),
    "recovery_eta": ("復旧見込み", "Recovery ETA"),
    "time_estimate": ("所要期間の見込み", "Time estimate"),
    "cost_estimate": ("費用の見込み", "Cost estimate"),
    "assumptions": ("前提条件", "Assumptions"),
    "risks": ("リスク", "Risks"),
    "change_reason": ("見込み変更の理由", "Why the estimate changed"),
    "subject": ("件名", "Subject"),
    "body": ("本文", "Body"),
    "next_update_at": ("次回報告予定", "Next update at"),
    "responsible": ("当社の責任者", "Our responsible contact"),
    "audience": ("宛先", "Audience"),
    "kind": ("通知の種類", "Notice kind"),
}

KIND_LABELS: dict[str, tuple[str, str]] = {
    "initial": ("第一報", "Initial notice"),
    "progress": ("続報", "Progress"),
    "resolved": ("復旧", "Resolved"),
    "recovery_failed": ("復旧失敗", "Recovery failed"),
    "root_cause": ("原因と再発防止策", "Root cause"),
    "bcp_revision": ("BCP改訂", "BCP revision"),
    "maintenance": ("メンテナンス", "Maintenance"),
    "estimate": ("見込み", "Estimate"),
    "custom": ("お知らせ", "Custom notice"),
}

DELIVERY_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "pending": ("待機", "pending"),
    "sending": ("送信中", "sending"),
    "sent": ("送信済み", "sent"),
    "delivered": ("到達", "delivered"),
    "failed": ("失敗", "failed"),
    "undelivered": ("不達", "undelivered"),
    "bounced": ("不達（バウンス）", "bounced"),
    "acknowledged": ("受領確認", "acknowledged"),
    "dead": ("断念", "dead"),
}


def _pick(pair: tuple[str, str] | None, lang: str, fallback: str) -> str:
    if pair is None:
        return fallback
    return pair[0] if lang == "ja" else pair[1]


def say(lang: str, key: str, **values: Any) -> str:
    text = _pick(WORDS.get(key), lang, key)
    return text.format(**values) if values else text


def field_label(lang: str, name: str) -> str:
    return _pick(FIELD_LABELS.get(name) or WORDS.get(name), lang, name)


def kind_label(lang: str, kind: str) -> str:
    return _pick(KIND_LABELS.get(kind), lang, kind)


def severity_label(lang: str, severity: str) -> str:
    return SEVERITY_LABELS[lang].get(severity, severity)


def status_label(lang: str, status: str | None) -> str:
    return STATUS_LABELS[lang].get(status or "", status or "")


def stage_label(lang: str, stage: str) -> str:
    return STAGE_LABELS[lang].get(stage, stage)


def delivery_status_label(lang: str, status: str) -> str:
    return _pick(DELIVERY_STATUS_LABELS.get(status), lang, status)


def warning_text(lang: str, warning: dict[str, Any]) -> str:
    """A preview warning (service/preview.py) in the operator's language."""
    path = str(warning.get("field") or "").removeprefix("fields.")
    listed = [p["name"] for p in warning.get("partners", [])]
    shown = ", ".join(listed[:10]) + (" …" if int(warning.get("count", 0)) > 10 else "")
    values = {
        "field": field_label(lang, path) if path in FIELD_LABELS or path in WORDS else path,
        "language": say(lang, str(warning.get("language") or "")),
        "contacts": warning.get("contacts", 0),
        "count": warning.get("count", 0),
        "partners": shown,
    }
    key = f"warn_{warning.get('code')}"
    return say(lang, key, **values) if key in WORDS else str(warning.get("detail", ""))
