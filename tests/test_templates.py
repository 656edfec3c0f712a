import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.notices import KINDS, LANGUAGES
from service.render import PARTS, RenderedMessage, Renderer
from service.segments import sms_segments
from tests.helpers.notice_context import (
    ACK_URL,
    ETA,
    FIELDS,
    NEXT_UPDATE_SHOWN,
    STATUS_PAGE,
    WINDOW_END,
    WINDOW_START,
    notice_context,
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_there_is_a_template_for_every_kind_language_and_part():
    templates = Path(__file__).resolve().parent.parent / "templates"
    expected = {f"{lang}/{kind}.{part}.j2" for lang in LANGUAGES for kind in KINDS for part in PARTS}
    assert len(expected) == 72
    assert expected <= {str(path.relative_to(templates)) for path in templates.glob("*/*.j2")}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_both_languages_with_realistic_fields(renderer, kind, lang):
    fields = FIELDS[lang]
    operator_text = "<script>alert(1)</script>"
    key_text = "body" if kind == "custom" else "impact"
    operator_fields: dict[str, Any] = {key_text: f"{fields[key_text]} {operator_text}"}
    context = notice_context(lang, **operator_fields)

    message = renderer.render(kind, lang, context)

    assert isinstance(message, RenderedMessage)
    title = fields["subject"] if kind == "custom" else fields["title"]
    assert title in message.subject
    for body in (message.txt, message.html):
        assert title in body
        assert fields["responsible"]["name"] in body
        assert fields["responsible"]["email"] in body
        assert fields["responsible"]["phone"] in body
        assert NEXT_UPDATE_SHOWN[lang] in body
        assert fields[key_text] in body
        assert STATUS_PAGE in body
        assert "None" not in body
    assert operator_text in message.txt
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "<script>" not in message.html
    assert message.sms.endswith(ACK_URL)
    assert title in message.sms


@pytest.mark.parametrize("lang", LANGUAGES)
def test_html_part_is_a_complete_email_in_the_partners_language(renderer, lang):
    html = renderer.render_part("initial", lang, "html", notice_context(lang))
    assert html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{lang}">' in html
    assert '<meta charset="utf-8">' in html
    assert html.rstrip().endswith("</html>")
    assert 'style="' in html
    assert f'href="{ACK_URL}"' in html


def test_japanese_notice_reads_as_a_business_letter(renderer):
    context = notice_context("ja", version=2, recovery_eta=ETA)
    message = renderer.render("initial", "ja", context)
    assert message.subject == "【障害発生のお知らせ】受発注システムにログインできない障害（第2報）"
    assert message.txt.startswith("株式会社ABC商事\n山田 太郎 様\n")
    for phrase in (
        "平素より格別のご高配を賜り",
        "深くお詫び申し上げます",
        "■ 影響範囲",
        "■ 復旧見込み\n2026年11月25日 18:00 (JST)",
        "■ 次回のご報告予定\n2026年11月25日 15:30 (JST)頃",
        "■ 弊社担当窓口\n株式会社ヘラルド 情報システム部 佐藤 花子",
        "■ 重要度：重大",
        "■ 対応状況：調査中",
        "■ 発生日時：2026年11月25日 14:10 (JST)",
        "■ 対象サービス：受発注システム、EDI連携",
    ):
        assert phrase in message.txt
    assert "<h2" in message.html and "弊社担当窓口</h2>" in message.html


def test_english_notice_is_plain_business_english(renderer):
    message = renderer.render("initial", "en", notice_context("en", version=3))
    assert message.subject == "[Incident] Partners cannot log in to the order system (update #3)"
    assert message.txt.startswith("Dear Taro Yamada,\n")
    for phrase in (
        "- Severity: Critical",
        "- Status: Investigating",
        "- Started: 25 Nov 2026 14:10 JST",
        "- Affected services: Order system, EDI",
        "Your contact at Herald Inc.\nHanako Sato, IT Operations",
        "We will send our next update by 25 Nov 2026 15:30 JST.",
    ):
        assert phrase in message.txt


@pytest.mark.parametrize(
    ("kind", "lang", "stage", "label"),
    [
        ("initial", "ja", None, "【障害発生のお知らせ】"),
        ("progress", "ja", "started", "【復旧作業開始のお知らせ】"),
        ("progress", "ja", "progress", "【復旧作業進捗のご報告】"),
        ("progress", "ja", "completed", "【復旧作業完了のお知らせ】"),
        ("resolved", "ja", None, "【障害復旧のお知らせ】"),
        ("recovery_failed", "ja", None, "【復旧失敗のお知らせ】"),
        ("root_cause", "ja", None, "【原因と再発防止策のご報告】"),
        ("bcp_revision", "ja", None, "【BCP改訂のお知らせ】"),
        ("maintenance", "ja", None, "【メンテナンスのお知らせ】"),
        ("estimate", "ja", None, "【見込みのご連絡】"),
        ("custom", "ja", None, "【お知らせ】"),
        ("initial", "en", None, "[Incident] "),
        ("progress", "en", "started", "[Recovery started] "),
        ("progress", "en", "completed", "[Recovery completed] "),
        ("recovery_failed", "en", None, "[Recovery failed] "),
        ("root_cause", "en", None, "[Root cause and countermeasures] "),
        ("maintenance", "en", None, "[Maintenance] "),
        ("custom", "en", None, "[Notice] "),
    ],
)
def test_subject_names_the_kind_of_notice(renderer, kind, lang, stage, label):
    subject = renderer.render_part(kind, lang, "subject", notice_context(lang, stage=stage))
    assert subject.startswith(label)


def test_custom_notice_uses_the_operators_subject_and_body(renderer):
    message = renderer.render("custom", "ja", notice_context("ja", incident=False, title=None))
    assert message.subject == "【お知らせ】年末年始の営業日のお知らせ"
    assert "年末年始の弊社営業日は12月29日までとなります。" in message.txt
    assert "年末年始の弊社営業日は12月29日までとなります。" in message.sms


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_correction_says_which_notice_it_corrects(renderer, lang):
    message = renderer.render("progress", lang, notice_context(lang, version=3, corrects_version=2))
    expected = "※本報は、第2報の内容を訂正するものです。" if lang == "ja" else "This notice corrects update #2."
    assert expected in message.txt
    assert expected in message.html
    assert message.subject.startswith("【訂正】" if lang == "ja" else "[Correction] ")
    assert message.sms.startswith("【訂正】" if lang == "ja" else "[Correction] ")


def test_a_notice_that_is_not_a_correction_does_not_claim_to_be_one(renderer):
    message = renderer.render("progress", "ja", notice_context("ja"))
    assert "訂正" not in message.subject + message.txt + message.sms


@pytest.mark.parametrize("lang", LANGUAGES)
def test_recovery_failed_admits_the_failure_and_names_next_steps(renderer, lang):
    message = renderer.render("recovery_failed", lang, notice_context(lang))
    next_steps = FIELDS[lang]["next_steps"]
    admission = "予定どおりに復旧させることができませんでした" if lang == "ja" else "did not succeed"
    heading = "■ 今後の対応\n" if lang == "ja" else "Next steps\n"
    assert admission in message.txt and admission in message.html
    assert heading + next_steps in message.txt
    assert next_steps in message.html
    assert next_steps in message.sms


@pytest.mark.parametrize(
    ("lang", "window"),
    [
        ("ja", "2026年11月29日 01:00 (JST) 〜 2026年11月29日 05:00 (JST)"),
        ("en", "29 Nov 2026 01:00 JST to 29 Nov 2026 05:00 JST"),
    ],
)
def test_maintenance_notice_shows_the_window(renderer, lang, window):
    context = notice_context(lang, incident=False, window_start=WINDOW_START, window_end=WINDOW_END)
    message = renderer.render("maintenance", lang, context)
    assert window in message.txt
    assert window in message.html
    assert window in message.sms


@pytest.mark.parametrize("lang", LANGUAGES)
def test_estimate_shows_cost_time_and_recovery_eta(renderer, lang):
    message = renderer.render("estimate", lang, notice_context(lang, recovery_eta=ETA))
    eta = "2026年11月25日 18:00 (JST)" if lang == "ja" else "25 Nov 2026 18:00 JST"
    for text in (FIELDS[lang]["cost_estimate"], FIELDS[lang]["time_estimate"], eta):
        assert text in message.txt
        assert text in message.html
    assert ("11月25日 18:00 (JST)" if lang == "ja" else "25 Nov 18:00 JST") in message.sms


@pytest.mark.parametrize("lang", LANGUAGES)
def test_root_cause_and_bcp_revision_carry_their_content(renderer, lang):
    root_cause = renderer.render("root_cause", lang, notice_context(lang))
    assert FIELDS[lang]["cause"] in root_cause.txt
    assert FIELDS[lang]["countermeasures"] in root_cause.html
    bcp = renderer.render("bcp_revision", lang, notice_context(lang, incident=False))
    assert FIELDS[lang]["changes"] in bcp.txt
    assert FIELDS[lang]["changes"] in bcp.html


@pytest.mark.parametrize(
    ("lang", "shown"), [("ja", "復旧作業中（進捗 60%）"), ("en", "Recovery in progress (60% complete)")]
)
def test_progress_notice_shows_the_recovery_stage_and_percent(renderer, lang, shown):
    message = renderer.render("progress", lang, notice_context(lang, stage="progress", progress_percent=60))
    assert shown in message.txt
    assert shown in message.html


@pytest.mark.parametrize(
    ("timezone", "lang", "shown"),
    [
        ("Asia/Tokyo", "ja", "2026年11月25日 15:30 (JST)"),
        ("Asia/Tokyo", "en", "25 Nov 2026 15:30 JST"),
        ("UTC", "en", "25 Nov 2026 06:30 UTC"),
        ("America/New_York", "en", "25 Nov 2026 01:30 EST"),
    ],
)
def test_times_are_shown_in_the_display_timezone(timezone, lang, shown):
    txt = Renderer(timezone=timezone).render_part("initial", lang, "txt", notice_context(lang))
    assert shown in txt


@pytest.mark.parametrize(
    ("lang", "severity", "status", "shown"),
    [
        ("ja", "major", "recovery_failed", ("■ 重要度：重要", "■ 対応状況：復旧失敗")),
        ("ja", "minor", "monitoring", ("■ 重要度：軽微", "■ 対応状況：経過監視中")),
        ("en", "major", "recovery_failed", ("- Severity: Major", "- Status: Recovery failed")),
        ("en", "maintenance", "identified", ("- Severity: Maintenance", "- Status: Cause identified")),
    ],
)
def test_severity_and_status_are_shown_in_words(renderer, lang, severity, status, shown):
    context = notice_context(lang)
    context["incident"].update(severity=severity, status=status)
    txt = renderer.render_part("progress", lang, "txt", context)
    for text in shown:
        assert text in txt


@pytest.mark.parametrize("lang", LANGUAGES)
def test_missing_optional_values_render_as_nothing(renderer, lang):
    context = {
        "version": 1,
        "company": {"name": "Herald", "status_page_url": STATUS_PAGE},
        "incident": None,
        "notice": {"title": "Notice title", "summary": "Short summary."},
        "recipient": {"name": "Taro", "partner_name": "ABC", "tier": 3},
    }
    for kind in KINDS:
        message = renderer.render(kind, lang, context)
        for part in (message.subject, message.txt, message.html, message.sms):
            assert "None" not in part and "Undefined" not in part
        assert message.sms.endswith(STATUS_PAGE)
        if kind != "custom":
            assert "Short summary." in message.txt


@pytest.mark.parametrize("lang", LANGUAGES)
def test_operator_text_cannot_execute_template_code(renderer, lang):
    payloads = ["{{ 7*7 }}", "{% for x in range(3) %}loop{% endfor %}", "{{ ''.__class__.__mro__ }}"]
    context = notice_context(lang, title=payloads[0], summary=payloads[1], current_status=payloads[2])
    message = renderer.render("initial", lang, context)
    for payload in payloads:
        assert payload in message.txt
    assert "{{ 7*7 }}" in message.subject
    assert "{{ 7*7 }}" in message.sms
    assert "49" not in message.subject + message.txt + message.sms
    assert "looploop" not in message.txt


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", ["initial", "custom"])
def test_subject_is_one_line_even_when_the_title_has_newlines(renderer, kind, lang):
    injected = "Order system down\r\nBcc: everyone@example.com\n\u2028X-Priority: 1"
    context = notice_context(lang, title=injected, subject=injected)
    subject = renderer.render_part(kind, lang, "subject", context)
    assert "\r" not in subject and "\n" not in subject and "\u2028" not in subject
    assert "Order system down Bcc: everyone@example.com X-Priority: 1" in subject


def test_multiline_operator_text_keeps_its_lines_in_html(renderer):
    html = renderer.render_part("initial", "en", "html", notice_context("en", impact="Orders\n<b>EDI</b>"))
    assert "Orders<br>\n&lt;b&gt;EDI&lt;/b&gt;" in html


def test_japanese_sms_is_measured_in_ucs2_segments(renderer):
    sms = renderer.render_part("initial", "ja", "sms", notice_context("ja"))
    info = sms_segments(sms)
    assert info.encoding == "UCS-2"
    assert 1 <= info.segments <= 3
    assert "次回報告：11月25日 15:30 (JST)" in sms


def test_english_sms_stays_in_gsm7(renderer):
    sms = renderer.render_part("progress", "en", "sms", notice_context("en", stage="progress", progress_percent=40))
    assert sms_segments(sms).encoding == "GSM-7"
    assert "40% done." in sms
    assert "Next update: 25 Nov 15:30 JST" in sms


@pytest.mark.parametrize(("lang", "ellipsis"), [("ja", "…"), ("en", "...")])
def test_long_summary_is_shortened_to_fit_the_sms_limit_and_keeps_the_link(lang, ellipsis):
    long_status = FIELDS[lang]["current_status"] * 30
    context = notice_context(lang, current_status=long_status, summary=long_status)
    for budget in (1, 2, 3):
        sms = Renderer(max_sms_segments=budget).render_part("initial", lang, "sms", context)
        info = sms_segments(sms)
        assert info.segments <= budget
        assert sms.endswith(ACK_URL)
        assert FIELDS[lang]["title"] in sms
        assert ellipsis in sms
    assert FIELDS[lang]["current_status"][:10] in sms
    # The shortened text uses the room it has rather than collapsing to the ellipsis.
    assert sms_segments(sms).units > 0.9 * (201 if lang == "ja" else 459)


def test_sms_too_long_even_without_a_summary_is_truncated_keeping_the_link():
    context = notice_context("ja", title="受発注システム" * 60)
    sms = Renderer(max_sms_segments=2).render_part("initial", "ja", "sms", context)
    assert sms_segments(sms).segments <= 2
    assert sms.endswith("…\n" + ACK_URL)
    assert sms.startswith("【障害発生】受発注システム")


def test_sms_links_to_the_status_page_when_there_is_no_acknowledgement_link(renderer):
    sms = renderer.render_part("initial", "en", "sms", notice_context("en", ack_url=None))
    assert sms.endswith(STATUS_PAGE)


def test_templates_are_compiled_once_at_startup(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parent.parent / "templates", templates)
    renderer = Renderer(templates_dir=templates)
    shutil.rmtree(templates)
    message = renderer.render("initial", "en", notice_context("en"))
    assert FIELDS["en"]["title"] in message.txt


def test_a_missing_template_fails_at_startup_not_at_send_time(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parent.parent / "templates", templates)
    (templates / "ja" / "estimate.sms.j2").unlink()
    with pytest.raises(Exception, match=re.escape("estimate.sms.j2")):
        Renderer(templates_dir=templates)


def test_unknown_kind_or_language_is_rejected_with_the_choices(renderer):
    with pytest.raises(ValueError, match="kinds: initial"):
        renderer.render("outage", "ja", notice_context("ja"))
    with pytest.raises(ValueError, match="languages: ja, en"):
        renderer.render("initial", "fr", notice_context("en"))
