"""An incident's timeline as an SVG picture, drawn by Herald from the evidence report's own data.

Four lanes share one time axis: the status periods, each published notice, each promised next
update (from the notice that promised it to when the next notice went out), and acknowledgements
over time by tier. The SVG is plain markup: no script, no external font or image, text in the
page's fonts, and every lane readable in black and white (tiers differ by dash pattern as well as
colour, promise results by shape as well as colour), so the report prints as it shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

WIDTH = 960
LEFT = 150  # lane labels sit left of the plot
RIGHT = 24
STATUS_Y, STATUS_H = 46, 26
NOTICE_Y = 118
PROMISE_Y = 160
ACK_TOP, ACK_H = 200, 110
HEIGHT = ACK_TOP + ACK_H + 44

STATUS_FILL = {
    "investigating": "#f6c9c4",
    "identified": "#f8dcaa",
    "recovering": "#fbeaa5",
    "monitoring": "#cfe3f7",
    "resolved": "#cdebd3",
    "recovery_failed": "#e9a5a9",
}
PROMISE_COLOUR = {"on_time": "#1a7f37", "late": "#a4161a", "overdue": "#a4161a", "open": "#9a6700"}
TIER_STYLE = {1: ("#1f4e79", ""), 2: ("#7a3e9d", "6 3"), 3: ("#5b6673", "2 3")}
TIER_LABEL = {1: "Tier 1 責任者", 2: "Tier 2 運用担当", 3: "Tier 3 情報共有"}
LANE_LABELS = (
    (STATUS_Y + 10, "Status", "状況"),
    (NOTICE_Y - 2, "Notices", "通知"),
    (PROMISE_Y - 2, "Promised updates", "次回連絡の約束"),
    (ACK_TOP + ACK_H // 2, "Acknowledged", "受領確認"),
)
LABEL_GAP = 24  # notice labels closer than this (px) are stacked
TICK_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
MAX_TICKS = 9


@dataclass(frozen=True)
class _Axis:
    start: float
    end: float

    def x(self, at: float) -> float:
        span = max(self.end - self.start, 1.0)
        return round(LEFT + (at - self.start) / span * (WIDTH - LEFT - RIGHT), 1)


def _seconds(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def draw_timeline(report: dict[str, Any], timezone: str) -> Markup:
    """The report's incident as an inline SVG (safe markup: every text in it is escaped)."""
    zone = ZoneInfo(timezone)
    incident = report["incident"]
    published = [n for n in report["notices"] if n["published_at"]]
    acks = acknowledgements_by_tier(report["notices"])
    now = _seconds(report["generated_at"]) or 0.0
    end_of_story = _seconds(incident["resolved_at"]) or now
    moments = [_seconds(incident["created_at"]) or now, end_of_story]
    moments += [_seconds(n["published_at"]) or now for n in published]
    moments += [t for n in published for t in (_seconds(n["promise"]["promised_at"]),) if t is not None]
    moments += [t for times in acks.values() for t in times]
    start, end = min(moments), max(moments)
    axis = _Axis(start, end + max((end - start) * 0.03, 60.0))
    parts = [
        _open_svg(incident),
        _axis(axis, zone),
        _status_lane(axis, incident["status_history"], start, end_of_story, zone),
        _notice_lane(axis, published, zone),
        _promise_lane(axis, published, now, zone),
        _ack_lane(axis, acks, max(end_of_story, *(t for times in acks.values() for t in times[-1:]), 0.0), zone),
        "" if incident["resolved_at"] else _now_marker(axis, now),
        "</svg>",
    ]
    return Markup("\n".join(parts))  # noqa: S704 - every text above went through escape()


def acknowledgements_by_tier(notices: Iterable[dict[str, Any]]) -> dict[int, list[float]]:
    """When each (notice, contact) was first acknowledged, by tier, in time order."""
    first: dict[tuple[int, int], tuple[int, float]] = {}
    for notice in notices:
        for partner in notice["partners"]:
            for recipient in partner["recipients"]:
                at = _seconds(recipient["acknowledged_at"])
                key = (notice["id"], recipient["contact_id"])
                if at is not None and (key not in first or at < first[key][1]):
                    first[key] = (recipient["tier"], at)
    by_tier: dict[int, list[float]] = {}
    for tier, at in first.values():
        by_tier.setdefault(tier, []).append(at)
    return {tier: sorted(times) for tier, times in sorted(by_tier.items())}


def _open_svg(incident: dict[str, Any]) -> str:
    label = f"Timeline of incident #{incident['id']} / 障害 #{incident['id']} の経過"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" font-family="inherit" font-size="11" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>'
        + "".join(
            f'<text x="8" y="{y}" font-weight="600">{escape(en)}'
            f'<tspan x="8" dy="13" font-weight="normal" fill="#5b6673">{escape(ja)}</tspan></text>'
            for y, en, ja in LANE_LABELS
        )
    )


def _now_marker(axis: _Axis, now: float) -> str:
    x = axis.x(now)
    return (
        f'<g class="now"><line x1="{x}" y1="30" x2="{x}" y2="{ACK_TOP + ACK_H}" stroke="#9a6700" '
        f'stroke-width="1.2"/><text x="{x + 3}" y="40" fill="#9a6700">now 現在</text></g>'
    )


def _ticks(axis: _Axis) -> list[float]:
    span = axis.end - axis.start
    step = next((s for s in TICK_STEPS if span / s <= MAX_TICKS), TICK_STEPS[-1])
    first = (int(axis.start) // step + 1) * step
    return [float(t) for t in range(first, int(axis.end) + 1, step)]


def _clock(at: float, zone: ZoneInfo, with_day: bool) -> str:
    local = datetime.fromtimestamp(at, zone)
    return local.strftime("%m-%d %H:%M") if with_day else local.strftime("%H:%M")


def _axis(axis: _Axis, zone: ZoneInfo) -> str:
    parts = [f'<g class="axis" stroke="#d5dae0"><line x1="{LEFT}" y1="30" x2="{WIDTH - RIGHT}" y2="30"/></g>']
    day = None
    for at in _ticks(axis):
        x = axis.x(at)
        today = datetime.fromtimestamp(at, zone).date()
        label = _clock(at, zone, with_day=today != day)
        day = today
        parts.append(
            f'<line x1="{x}" y1="26" x2="{x}" y2="{ACK_TOP + ACK_H}" stroke="#eceff2"/>'
            f'<text x="{x}" y="22" text-anchor="middle" fill="#5b6673">{escape(label)}</text>'
        )
    zone_name = datetime.fromtimestamp(axis.start, zone).strftime("%Z")
    parts.append(f'<text x="{WIDTH - RIGHT}" y="10" text-anchor="end" fill="#5b6673">{escape(zone_name)}</text>')
    return "\n".join(parts)


def _status_lane(axis: _Axis, history: Sequence[dict[str, Any]], opened: float, end: float, zone: ZoneInfo) -> str:
    """The first status holds from the moment the incident was opened, not from its first notice."""
    parts = ['<g class="status-lane">']
    for index, step in enumerate(history):
        since = opened if index == 0 else (_seconds(step["at"]) or opened)
        until = _seconds(history[index + 1]["at"]) if index + 1 < len(history) else end
        x1, x2 = axis.x(since), axis.x(max(until or end, since))
        width = max(x2 - x1, 2.0)
        status = step["status"]
        title = f"{status}: {_clock(since, zone, True)}"
        parts.append(
            f'<g class="status" data-status="{escape(status)}"><title>{escape(title)}</title>'
            f'<rect x="{x1}" y="{STATUS_Y}" width="{round(width, 1)}" height="{STATUS_H}" '
            f'fill="{STATUS_FILL.get(status, "#eeeeee")}" stroke="#1d232b" stroke-width="0.6"/>'
            + (
                f'<text x="{x1 + 4}" y="{STATUS_Y + 17}">{escape(status.replace("_", " "))}</text>'
                if width > 7 * len(status)
                else ""
            )
            + "</g>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def _notice_lane(axis: _Axis, published: Sequence[dict[str, Any]], zone: ZoneInfo) -> str:
    parts = [f'<g class="notice-lane"><line x1="{LEFT}" y1="{NOTICE_Y}" x2="{WIDTH - RIGHT}" y2="{NOTICE_Y}" '
             'stroke="#d5dae0"/>']  # fmt: skip
    last_x, level = float(-LABEL_GAP), 0
    for notice in published:
        at = _seconds(notice["published_at"]) or axis.start
        x = axis.x(at)
        level = (level + 1) % 3 if x - last_x < LABEL_GAP else 0
        last_x = x
        title = f"v{notice['version']} {notice['kind']} · {_clock(at, zone, True)}"
        parts.append(
            f'<g class="notice" data-version="{notice["version"]}" data-kind="{escape(notice["kind"])}">'
            f"<title>{escape(title)}</title>"
            f'<line x1="{x}" y1="{STATUS_Y + STATUS_H}" x2="{x}" y2="{ACK_TOP + ACK_H}" stroke="#1d232b" '
            'stroke-width="0.5" stroke-dasharray="2 3"/>'
            f'<circle cx="{x}" cy="{NOTICE_Y}" r="6" fill="#1d232b"/>'
            f'<text x="{x}" y="{NOTICE_Y - 10 - 11 * level}" text-anchor="middle" font-weight="600">'
            f"v{notice['version']}</text>"
            "</g>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def _promise_lane(axis: _Axis, published: Sequence[dict[str, Any]], now: float, zone: ZoneInfo) -> str:
    """A promise runs from the notice that made it to the promised time (a hollow diamond); a solid
    mark shows when the next notice went out: a circle on time, a cross when late or overdue."""
    parts = ['<g class="promise-lane">']
    for notice in published:
        promise = notice["promise"]
        promised_at = _seconds(promise["promised_at"])
        if promised_at is None:
            continue
        made_x, due_x = axis.x(_seconds(notice["published_at"]) or axis.start), axis.x(promised_at)
        state = promise["state"]
        colour = PROMISE_COLOUR.get(state, "#5b6673")
        kept_at = _seconds(promise["next_published_at"])
        title = f"v{notice['version']} promised an update by {_clock(promised_at, zone, True)}: {state}"
        if promise["minutes_late"]:
            title += f" ({promise['minutes_late']} min)"
        mark = [
            f'<g class="promise" data-version="{notice["version"]}" data-state="{escape(state)}">'
            f"<title>{escape(title)}</title>",
            f'<line x1="{made_x}" y1="{PROMISE_Y}" x2="{due_x}" y2="{PROMISE_Y}" stroke="#5b6673" stroke-width="1.5"/>',
            _diamond(due_x, PROMISE_Y, "#ffffff", "#1d232b"),
        ]
        outcome_at = kept_at if kept_at is not None else (now if state == "overdue" else None)
        if outcome_at is not None:
            x = axis.x(outcome_at)
            if state in ("late", "overdue"):
                mark.append(
                    f'<line x1="{due_x}" y1="{PROMISE_Y}" x2="{x}" y2="{PROMISE_Y}" stroke="{colour}" '
                    'stroke-width="3"/>'
                )
            mark.append(_cross(x, PROMISE_Y, colour) if state in ("late", "overdue") else _dot(x, PROMISE_Y, colour))
        mark.append("</g>")
        parts.append("".join(mark))
    parts.append("</g>")
    return "\n".join(parts)


def _diamond(x: float, y: float, fill: str, stroke: str) -> str:
    points = f"{x},{y - 6} {x + 6},{y} {x},{y + 6} {x - 6},{y}"
    return f'<polygon class="promised" points="{points}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'


def _dot(x: float, y: float, colour: str) -> str:
    return f'<circle class="kept" cx="{x}" cy="{y}" r="4.5" fill="{colour}"/>'


def _cross(x: float, y: float, colour: str) -> str:
    return (
        f'<path class="kept-late" d="M{x - 5},{y - 5} L{x + 5},{y + 5} M{x - 5},{y + 5} L{x + 5},{y - 5}" '
        f'stroke="{colour}" stroke-width="2.5"/>'
    )


def _ack_lane(axis: _Axis, acks: dict[int, list[float]], until: float, zone: ZoneInfo) -> str:
    top, bottom = ACK_TOP, ACK_TOP + ACK_H
    most = max((len(times) for times in acks.values()), default=0)
    scale = max(most, 1)
    parts = [
        '<g class="ack-lane">',
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#1d232b" stroke-width="0.6"/>',
        f'<text x="{LEFT - 6}" y="{bottom}" text-anchor="end" fill="#5b6673">0</text>',
        f'<text x="{LEFT - 6}" y="{top + 8}" text-anchor="end" fill="#5b6673">{scale}</text>',
    ]
    for tier, times in acks.items():
        colour, dash = TIER_STYLE.get(tier, ("#1d232b", ""))
        points: list[tuple[float, float]] = [(axis.x(axis.start), float(bottom))]
        for count, at in enumerate(times, start=1):
            x = axis.x(at)
            points += [(x, points[-1][1]), (x, round(bottom - count / scale * (ACK_H - 8), 1))]
        points.append((axis.x(until), points[-1][1]))
        path = " ".join(f"{x},{y}" for x, y in points)
        title = f"{TIER_LABEL.get(tier, tier)}: {len(times)} acknowledged, last {_clock(times[-1], zone, True)}"
        parts.append(
            f'<g class="acks" data-tier="{tier}" data-count="{len(times)}"><title>{escape(title)}</title>'
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/></g>'
        )
    parts.append(_legend(acks))
    parts.append("</g>")
    return "\n".join(parts)


def _legend(acks: dict[int, list[float]]) -> str:
    y = ACK_TOP + ACK_H + 24
    items = []
    x = LEFT
    for tier in (1, 2, 3):
        colour, dash = TIER_STYLE[tier]
        count = len(acks.get(tier, []))
        items.append(
            f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/><text x="{x + 30}" y="{y}">{escape(TIER_LABEL[tier])} ({count})</text>'
        )
        x += 150
    items.append(
        _diamond(x + 6, y - 4, "#ffffff", "#1d232b") + f'<text x="{x + 16}" y="{y}">promised 予定</text>'
        + _dot(x + 110, y - 4, PROMISE_COLOUR["on_time"]) + f'<text x="{x + 120}" y="{y}">on time 期限内</text>'
        + _cross(x + 230, y - 4, PROMISE_COLOUR["late"]) + f'<text x="{x + 240}" y="{y}">late 遅延</text>'
    )  # fmt: skip
    return f'<g class="legend">{"".join(items)}</g>'
