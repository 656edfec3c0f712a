"""An incident's timeline as an SVG picture, drawn by Herald from the evidence report's own data.

Four lanes share one time axis: the status periods, each published notice, each promised next
update (from the notice that promised it to when the next notice went out), and acknowledgements
over time by tier. The SVG is plain markup: no script, no external font or image, text in the
page's fonts, and every lane readable in black and white (tiers differ by dash pattern as well as
colour, promise results by shape as well as colour), so the report prints as it shows.

One drawing serves two readers: the evidence report (the whole incident, labels in both
languages, `WIDE`) and a partner's own page (a `Story` scoped to that partner, labels in the
contact's language, `PAGE` on a screen and `NARROW` on a phone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from service.render import STATUS_LABELS

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
# A white outline under a label: a line crossing it (a notice, "now") stays behind the words.
HALO = 'stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"'
TICK_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


@dataclass(frozen=True)
class Layout:
    """Where the lanes sit. Wide: lane labels in a column left of the plot; narrow (a phone): each
    label on its own line above its lane, so the plot keeps nearly the whole width."""

    width: int
    left: int  # where the plot starts
    right: int
    font_size: int
    status_y: int
    status_h: int
    notice_y: int
    promise_y: int
    ack_top: int
    ack_h: int
    labels_above: bool
    max_ticks: int
    label_gap: int  # notice labels closer than this (px) are stacked
    legend_step: int
    legend_rows: int

    @property
    def height(self) -> int:
        return self.ack_top + self.ack_h + 20 + 22 * self.legend_rows

    def lane_labels(self) -> tuple[int, int, int, int]:
        if self.labels_above:
            return (self.status_y - 7, self.notice_y - 46, self.promise_y - 18, self.ack_top - 8)
        return (self.status_y + 10, self.notice_y - 2, self.promise_y - 2, self.ack_top + self.ack_h // 2)


WIDE = Layout(960, 150, 24, 11, 46, 26, 118, 160, 200, 110, False, 9, 24, 150, 1)  # the evidence report
PAGE = Layout(840, 130, 20, 12, 46, 26, 118, 160, 200, 100, False, 8, 24, 150, 1)  # a partner page on a screen
NARROW = Layout(380, 26, 14, 12, 64, 24, 156, 200, 236, 90, True, 4, 26, 124, 2)  # a partner page on a phone


@dataclass(frozen=True)
class Words:
    """The drawing's words: both languages in the report, the contact's own on a partner page."""

    lanes: tuple[tuple[str, str | None], ...]  # status, notices, promises, acknowledgements
    tiers: dict[int, str]
    statuses: dict[str, str]
    title: str  # with {id}
    now: str
    promised: str
    on_time: str
    late: str
    promise_title: str  # with {version}, {at}, {state}
    states: dict[str, str]
    acknowledged: str  # with {tier}, {count}, {at}


BILINGUAL = Words(
    lanes=(
        ("Status", "状況"),
        ("Notices", "通知"),
        ("Promised updates", "次回連絡の約束"),
        ("Acknowledged", "受領確認"),
    ),
    tiers={1: "Tier 1 責任者", 2: "Tier 2 運用担当", 3: "Tier 3 情報共有"},
    statuses={},
    title="Timeline of incident #{id} / 障害 #{id} の経過",
    now="now 現在",
    promised="promised 予定",
    on_time="on time 期限内",
    late="late 遅延",
    promise_title="v{version} promised an update by {at}: {state}",
    states={},
    acknowledged="{tier}: {count} acknowledged, last {at}",
)
WORDS = {
    "ja": Words(
        lanes=(("状況", None), ("通知", None), ("次回連絡の予定", None), ("受領確認（件数）", None)),
        tiers={1: "責任者", 2: "運用担当", 3: "情報共有"},
        statuses=STATUS_LABELS["ja"],
        title="障害 #{id} の経過",
        now="現在",
        promised="予定",
        on_time="期限内",
        late="遅延",
        promise_title="第{version}報でお約束した次回連絡 {at}：{state}",
        states={"on_time": "期限内", "late": "遅延", "overdue": "期限超過", "open": "予定"},
        acknowledged="{tier}：{count}件 受領確認、最新 {at}",
    ),
    "en": Words(
        lanes=(("Status", None), ("Notices", None), ("Promised updates", None), ("Acknowledged", None)),
        tiers={1: "Responsible", 2: "Operations", 3: "Informed"},
        statuses=STATUS_LABELS["en"],
        title="Timeline of incident #{id}",
        now="now",
        promised="promised",
        on_time="on time",
        late="late",
        promise_title="v{version} promised an update by {at}: {state}",
        states={"on_time": "on time", "late": "late", "overdue": "overdue", "open": "open"},
        acknowledged="{tier}: {count} acknowledged, last {at}",
    ),
}


@dataclass(frozen=True)
class Story:
    """What a timeline draws, in the report's JSON shapes (ISO times): the incident (`id`,
    `created_at`, `resolved_at`, `status_history`), its published notices (`version`, `kind`,
    `published_at`, `promise`), first acknowledgements by tier, and when it was read."""

    incident: dict[str, Any]
    notices: Sequence[dict[str, Any]]
    acks: dict[int, list[float]]
    generated_at: str


@dataclass(frozen=True)
class _Axis:
    start: float
    end: float
    layout: Layout

    def x(self, at: float) -> float:
        span = max(self.end - self.start, 1.0)
        plot = self.layout.width - self.layout.left - self.layout.right
        return round(self.layout.left + (at - self.start) / span * plot, 1)


def _seconds(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def draw_timeline(report: dict[str, Any], timezone: str) -> Markup:
    """The evidence report's incident as an inline SVG, labelled in both languages."""
    return draw(story_of_report(report), timezone)


def story_of_report(report: dict[str, Any]) -> Story:
    return Story(
        incident=report["incident"],
        notices=[n for n in report["notices"] if n["published_at"]],
        acks=acknowledgements_by_tier(report["notices"]),
        generated_at=report["generated_at"],
    )


def draw(story: Story, timezone: str, words: Words = BILINGUAL, layout: Layout = WIDE) -> Markup:
    """The story as an inline SVG (safe markup: every text in it is escaped)."""
    zone = ZoneInfo(timezone)
    incident, published, acks = story.incident, story.notices, story.acks
    now = _seconds(story.generated_at) or 0.0
    end_of_story = _seconds(incident["resolved_at"]) or now
    moments = [_seconds(incident["created_at"]) or now, end_of_story]
    moments += [_seconds(n["published_at"]) or now for n in published]
    moments += [t for n in published for t in (_seconds(n["promise"]["promised_at"]),) if t is not None]
    moments += [t for times in acks.values() for t in times]
    start, end = min(moments), max(moments)
    axis = _Axis(start, end + max((end - start) * 0.03, 60.0), layout)
    parts = [
        _open_svg(incident, words, layout),
        _axis(axis, zone),
        _status_lane(axis, incident["status_history"], start, end_of_story, zone, words),
        _notice_lane(axis, published, zone),
        _promise_lane(axis, published, now, zone, words),
        _ack_lane(axis, acks, max(end_of_story, *(t for times in acks.values() for t in times[-1:]), 0.0), zone, words),
        "" if incident["resolved_at"] else _now_marker(axis, now, words),
        _lane_labels(words, layout),
        "</svg>",
    ]
    return Markup("\n".join(parts))  # noqa: S704 - every text above went through escape()


def acknowledgements_by_tier(notices: Iterable[dict[str, Any]]) -> dict[int, list[float]]:
    """When each (notice, contact) was first acknowledged, by tier, in time order."""
    return first_acknowledgements(
        (notice["id"], recipient["contact_id"], recipient["tier"], _seconds(recipient["acknowledged_at"]))
        for notice in notices
        for partner in notice["partners"]
        for recipient in partner["recipients"]
    )


def first_acknowledgements(
    deliveries: Iterable[tuple[int, int, int, float | None]],
) -> dict[int, list[float]]:
    """From (notice id, contact id, tier, acknowledged at) of each delivery: the first
    acknowledgement per contact and notice (one person confirming by SMS and email counts once)."""
    first: dict[tuple[int, int], tuple[int, float]] = {}
    for notice_id, contact_id, tier, at in deliveries:
        key = (notice_id, contact_id)
        if at is not None and (key not in first or at < first[key][1]):
            first[key] = (tier, at)
    by_tier: dict[int, list[float]] = {}
    for tier, at in first.values():
        by_tier.setdefault(tier, []).append(at)
    return {tier: sorted(times) for tier, times in sorted(by_tier.items())}


def _open_svg(incident: dict[str, Any], words: Words, layout: Layout) -> str:
    label = words.title.format(id=incident["id"])
    width, height = layout.width, layout.height
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" font-family="inherit" font-size="{layout.font_size}" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
    )


def _lane_labels(words: Words, layout: Layout) -> str:
    """Drawn last, over the lines that cross them (on a phone the labels sit inside the plot)."""
    labels = []
    for y, (first, second) in zip(layout.lane_labels(), words.lanes, strict=True):
        below = f'<tspan x="8" dy="13" font-weight="normal" fill="#5b6673">{escape(second)}</tspan>' if second else ""
        labels.append(f'<text x="8" y="{y}" font-weight="600" {HALO}>{escape(first)}{below}</text>')
    return f'<g class="lane-labels">{"".join(labels)}</g>'


def _now_marker(axis: _Axis, now: float, words: Words) -> str:
    x, bottom = axis.x(now), axis.layout.ack_top + axis.layout.ack_h
    anchor = ' text-anchor="end"' if x > axis.layout.width - 60 else ""
    dx = -3 if anchor else 3
    return (
        f'<g class="now"><line x1="{x}" y1="30" x2="{x}" y2="{bottom}" stroke="#9a6700" '
        f'stroke-width="1.2"/><text x="{x + dx}" y="40" fill="#9a6700"{anchor}>{escape(words.now)}</text></g>'
    )


def _ticks(axis: _Axis) -> list[float]:
    span = axis.end - axis.start
    step = next((s for s in TICK_STEPS if span / s <= axis.layout.max_ticks), TICK_STEPS[-1])
    first = (int(axis.start) // step + 1) * step
    return [float(t) for t in range(first, int(axis.end) + 1, step)]


def _clock(at: float, zone: ZoneInfo, with_day: bool) -> str:
    local = datetime.fromtimestamp(at, zone)
    return local.strftime("%m-%d %H:%M") if with_day else local.strftime("%H:%M")


def _axis(axis: _Axis, zone: ZoneInfo) -> str:
    layout = axis.layout
    right, bottom = layout.width - layout.right, layout.ack_top + layout.ack_h
    parts = [f'<g class="axis" stroke="#d5dae0"><line x1="{layout.left}" y1="30" x2="{right}" y2="30"/></g>']
    day = None
    for at in _ticks(axis):
        x = axis.x(at)
        today = datetime.fromtimestamp(at, zone).date()
        label = _clock(at, zone, with_day=today != day)
        day = today
        anchor = "start" if x - len(label) * 3.5 < 0 else "end" if x + len(label) * 3.5 > layout.width else "middle"
        parts.append(
            f'<line x1="{x}" y1="26" x2="{x}" y2="{bottom}" stroke="#eceff2"/>'
            f'<text x="{x}" y="22" text-anchor="{anchor}" fill="#5b6673">{escape(label)}</text>'
        )
    zone_name = datetime.fromtimestamp(axis.start, zone).strftime("%Z")
    parts.append(f'<text x="{right}" y="10" text-anchor="end" fill="#5b6673">{escape(zone_name)}</text>')
    return "\n".join(parts)


def _text_width(text: str, font_size: int) -> float:
    """Roughly: CJK characters are square, Latin ones a little over half as wide."""
    return sum(font_size if ord(c) > 0x2E7F else font_size * 0.6 for c in text)


def _status_lane(
    axis: _Axis, history: Sequence[dict[str, Any]], opened: float, end: float, zone: ZoneInfo, words: Words
) -> str:
    """The first status holds from the moment the incident was opened, not from its first notice."""
    layout = axis.layout
    parts = ['<g class="status-lane">']
    for index, step in enumerate(history):
        since = opened if index == 0 else (_seconds(step["at"]) or opened)
        until = _seconds(history[index + 1]["at"]) if index + 1 < len(history) else end
        x1, x2 = axis.x(since), axis.x(max(until or end, since))
        width = max(x2 - x1, 2.0)
        status = step["status"]
        label = words.statuses.get(status) or status.replace("_", " ")
        title = f"{label}: {_clock(since, zone, True)}"
        fits = width > _text_width(label, layout.font_size) + 8
        text_y = layout.status_y + layout.status_h // 2 + 4
        parts.append(
            f'<g class="status" data-status="{escape(status)}"><title>{escape(title)}</title>'
            f'<rect x="{x1}" y="{layout.status_y}" width="{round(width, 1)}" height="{layout.status_h}" '
            f'fill="{STATUS_FILL.get(status, "#eeeeee")}" stroke="#1d232b" stroke-width="0.6"/>'
            + (f'<text x="{x1 + 4}" y="{text_y}">{escape(label)}</text>' if fits else "")
            + "</g>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def _notice_lane(axis: _Axis, published: Sequence[dict[str, Any]], zone: ZoneInfo) -> str:
    layout = axis.layout
    y, right, bottom = layout.notice_y, layout.width - layout.right, layout.ack_top + layout.ack_h
    parts = [f'<g class="notice-lane"><line x1="{layout.left}" y1="{y}" x2="{right}" y2="{y}" stroke="#d5dae0"/>']
    last_x, level = float(-layout.label_gap), 0
    for notice in published:
        at = _seconds(notice["published_at"]) or axis.start
        x = axis.x(at)
        level = (level + 1) % 3 if x - last_x < layout.label_gap else 0
        last_x = x
        title = f"v{notice['version']} {notice['kind']} · {_clock(at, zone, True)}"
        parts.append(
            f'<g class="notice" data-version="{notice["version"]}" data-kind="{escape(notice["kind"])}">'
            f"<title>{escape(title)}</title>"
            f'<line x1="{x}" y1="{layout.status_y + layout.status_h}" x2="{x}" y2="{bottom}" stroke="#1d232b" '
            'stroke-width="0.5" stroke-dasharray="2 3"/>'
            f'<circle cx="{x}" cy="{y}" r="6" fill="#1d232b"/>'
            f'<text x="{x}" y="{y - 10 - (layout.font_size + 1) * level}" text-anchor="middle" font-weight="600">'
            f"v{notice['version']}</text>"
            "</g>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def _promise_lane(axis: _Axis, published: Sequence[dict[str, Any]], now: float, zone: ZoneInfo, words: Words) -> str:
    """A promise runs from the notice that made it to the promised time (a hollow diamond); a solid
    mark shows when the next notice went out: a circle on time, a cross when late or overdue."""
    y = axis.layout.promise_y
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
        title = words.promise_title.format(
            version=notice["version"], at=_clock(promised_at, zone, True), state=words.states.get(state, state)
        )
        if promise["minutes_late"]:
            title += f" ({promise['minutes_late']} min)"
        mark = [
            f'<g class="promise" data-version="{notice["version"]}" data-state="{escape(state)}">'
            f"<title>{escape(title)}</title>",
            f'<line x1="{made_x}" y1="{y}" x2="{due_x}" y2="{y}" stroke="#5b6673" stroke-width="1.5"/>',
            _diamond(due_x, y, "#ffffff", "#1d232b"),
        ]
        outcome_at = kept_at if kept_at is not None else (now if state == "overdue" else None)
        if outcome_at is not None:
            x = axis.x(outcome_at)
            if state in ("late", "overdue"):
                mark.append(f'<line x1="{due_x}" y1="{y}" x2="{x}" y2="{y}" stroke="{colour}" stroke-width="3"/>')
            mark.append(_cross(x, y, colour) if state in ("late", "overdue") else _dot(x, y, colour))
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


def _ack_lane(axis: _Axis, acks: dict[int, list[float]], until: float, zone: ZoneInfo, words: Words) -> str:
    layout = axis.layout
    top, height, left = layout.ack_top, layout.ack_h, layout.left
    bottom = top + height
    most = max((len(times) for times in acks.values()), default=0)
    scale = max(most, 1)
    parts = [
        '<g class="ack-lane">',
        f'<line x1="{left}" y1="{bottom}" x2="{layout.width - layout.right}" y2="{bottom}" stroke="#1d232b" '
        'stroke-width="0.6"/>',
        f'<text x="{left - 6}" y="{bottom}" text-anchor="end" fill="#5b6673">0</text>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" fill="#5b6673">{scale}</text>',
    ]
    for tier, times in acks.items():
        colour, dash = TIER_STYLE.get(tier, ("#1d232b", ""))
        points: list[tuple[float, float]] = [(axis.x(axis.start), float(bottom))]
        for count, at in enumerate(times, start=1):
            x = axis.x(at)
            points += [(x, points[-1][1]), (x, round(bottom - count / scale * (height - 8), 1))]
        points.append((axis.x(until), points[-1][1]))
        path = " ".join(f"{x},{y}" for x, y in points)
        title = words.acknowledged.format(
            tier=words.tiers.get(tier, str(tier)), count=len(times), at=_clock(times[-1], zone, True)
        )
        parts.append(
            f'<g class="acks" data-tier="{tier}" data-count="{len(times)}"><title>{escape(title)}</title>'
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/></g>'
        )
    parts.append(_legend(acks, words, layout))
    parts.append("</g>")
    return "\n".join(parts)


def _legend(acks: dict[int, list[float]], words: Words, layout: Layout) -> str:
    """Tiers, then promise marks: in one row when wide, the marks in a second row when narrow."""
    y = layout.ack_top + layout.ack_h + 24
    x = 8 if layout.labels_above else layout.left
    items = []
    for tier in (1, 2, 3):
        colour, dash = TIER_STYLE[tier]
        count = len(acks.get(tier, []))
        items.append(
            f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/><text x="{x + 30}" y="{y}">{escape(words.tiers[tier])} ({count})</text>'
        )
        x += layout.legend_step
    if layout.legend_rows > 1:
        x, y = 8, y + 22
    step = max(_text_width(w, layout.font_size) for w in (words.promised, words.on_time)) + 34
    items.append(
        _diamond(x + 6, y - 4, "#ffffff", "#1d232b") + f'<text x="{x + 16}" y="{y}">{escape(words.promised)}</text>'
        + _dot(x + step + 6, y - 4, PROMISE_COLOUR["on_time"])
        + f'<text x="{x + step + 16}" y="{y}">{escape(words.on_time)}</text>'
        + _cross(x + 2 * step + 6, y - 4, PROMISE_COLOUR["late"])
        + f'<text x="{x + 2 * step + 16}" y="{y}">{escape(words.late)}</text>'
    )  # fmt: skip
    return f'<g class="legend">{"".join(items)}</g>'
