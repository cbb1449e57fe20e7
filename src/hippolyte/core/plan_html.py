"""The plan as one self-contained HTML page: a Gantt chart of the pipelines across the backup
window (a row per pipeline, a bar per table, boosted and overrunning tables marked), the
planner's decisions, and every table with its estimate, boost and reason.

Pure: :func:`render` takes :func:`hippolyte.planning.to_json`'s plain data and returns the page.
Inline CSS and SVG only: no script, font, image or address of any kind, so the page opens
offline, from a file or an e-mail attachment. Every name and reason is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from hippolyte.core.formatting import duration, size

Json = Mapping[str, Any]

DAY_S = 86_400
LABEL_W = 64  # px left of the plot, for the pipeline labels
PLOT_W = 960  # px for the whole plotted span, however long: the chart never gets wider
CHART_W = LABEL_W + PLOT_W + 48  # room for the last tick's label
ROW_H = 16  # px per pipeline: 1,000 pipelines scroll inside a box, the page stays usable
BAR_H = 12
AXIS_H = 26
CHAR_W = 6.2  # px per character of a bar label, to leave out labels that would not fit
_TICK_STEPS_S = (600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, DAY_S)
_MAX_TICKS = 14
# A table days past the window would squash the window to a sliver: the chart shows at most
# twice the window and cuts longer bars at its edge (their tooltips and the listing say more).
MAX_SPAN_WINDOWS = 2.0

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.4em 0 .4em}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.6em 0}
.card{border:1px solid #ccc;border-radius:6px;padding:.4em .8em;min-width:8em}
.card b{display:block;font-size:1.4em}.card.warn{border-color:#c0392b;color:#c0392b}
ul.decisions{margin:.3em 0;padding-left:1.3em}
.legend span{display:inline-block;margin-right:1.2em}
.legend i{display:inline-block;width:1.6em;height:.9em;vertical-align:middle;margin-right:.3em}
i.sw-table{background:#4e79a7}i.sw-boosted{background:#f28e2b}
i.sw-over{background:#4e79a7;outline:2px solid #c0392b}
i.sw-start{background:repeating-linear-gradient(45deg,#ddd 0 3px,#999 3px 5px)}
i.sw-end{width:.2em;background:#c0392b}
.rows{max-height:75vh;overflow:auto;border:1px solid #eee}
svg text{font-size:10px;fill:#333}svg text.in{fill:#fff}
svg .grid{stroke:#e4e4e4}svg .band{fill:#f7f7f7}
svg .bar{fill:#4e79a7;stroke:#fff;stroke-width:.6}svg .boosted{fill:#f28e2b}
svg .overrun{stroke:#c0392b;stroke-width:2}svg .past{fill:#c0392b;opacity:.55}
svg .start{fill:url(#hatch)}svg .end{stroke:#c0392b;stroke-width:1.5;stroke-dasharray:4 3}
table.list{border-collapse:collapse;font-size:13px}
table.list th,table.list td{border-bottom:1px solid #e4e4e4;padding:.2em .5em;text-align:left;
vertical-align:top}
table.list td.n{text-align:right;white-space:nowrap}
tr.boosted td.cap{color:#b35c00;font-weight:600}tr.overrun td{background:#fdecea}
small{color:#666}
"""


@dataclass(frozen=True)
class _Axis:
    """The time axis: offsets from the window's opening to x, and to UTC clock labels."""

    opens_s: int  # the window's opening, seconds after midnight UTC
    window_s: float
    span_s: float  # what is plotted: the window, or longer when a table overruns it
    step_s: int
    cut: bool  # something ends past span_s, its bar cut at the chart's edge

    def x(self, offset_s: float) -> float:
        return LABEL_W + PLOT_W * min(max(0.0, offset_s), self.span_s) / self.span_s


def render(plan_json: Json) -> str:
    """The HTML page for a plan (the plain data of :func:`hippolyte.planning.to_json`)."""
    axis = _axis(plan_json)
    pipelines = plan_json.get("pipelines") or []
    settings = plan_json["settings"]
    window = f"{settings['window_start']}–{settings['window_end']} UTC"
    title = f"Hippolyte backup plan: {len(pipelines)} pipelines, window {window}"
    body = [
        f"<h1>{escape(title)}</h1>",
        _summary(plan_json),
        _decisions(plan_json),
        "<h2>Pipelines across the window</h2>",
        _chart(plan_json, axis) if pipelines else "<p>No pipelines: nothing to back up.</p>",
        _skipped(plan_json),
        _listing(plan_json),
        _settings(settings),
    ]
    return _page(title, "\n".join(body))


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


# --- header -----------------------------------------------------------------------------------


def _summary(plan: Json) -> str:
    pipelines = plan.get("pipelines") or []
    tables = [t for p in pipelines for t in p["tables"]]
    boosted = sum(1 for t in tables if t.get("boost"))
    overruns = sum(1 for t in tables if t["overrun_s"] > 0)
    late = plan["finish_offset_s"] > plan["settings"]["window_s"]
    opens = _opens_s(plan["settings"])
    cards = [
        _card("pipelines", len(pipelines)),
        _card("lower bound", plan["lower_bound"]),
        _card("the original's greedy", plan["greedy_pipelines"]),
        _card("tables planned", len(tables)),
        _card("boosted", boosted),
        _card("past the window", overruns, warn=overruns > 0),
        _card("skipped", len(plan.get("skipped") or [])),
        _card("finishes at (UTC)", _clock(opens, plan["finish_offset_s"], seconds=True), warn=late),
    ]
    bound = f"Lower bound: {plan['lower_bound_reason']}."
    return f'<div class="cards">{"".join(cards)}</div>\n<p><small>{escape(bound)}</small></p>'


def _card(label: str, value: object, *, warn: bool = False) -> str:
    cls = "card warn" if warn else "card"
    return f'<div class="{cls}"><b>{escape(str(value))}</b>{escape(label)}</div>'


def _decisions(plan: Json) -> str:
    items = "".join(f"<li>{escape(str(d))}</li>" for d in plan.get("decisions") or [])
    return f'<h2>Decisions</h2>\n<ul class="decisions">{items}</ul>'


# --- the chart --------------------------------------------------------------------------------


def _opens_s(settings: Json) -> int:
    """The window's opening, in seconds after midnight UTC ("HH:MM" in to_json's settings)."""
    hours, minutes = (int(v) for v in str(settings["window_start"]).split(":")[:2])
    return hours * 3600 + minutes * 60


def _axis(plan: Json) -> _Axis:
    settings = plan["settings"]
    ends = [t["end_offset_s"] for p in plan.get("pipelines") or [] for t in p["tables"]]
    window_s = float(settings["window_s"])
    last = max([window_s, float(plan.get("finish_offset_s") or 0.0), *ends])
    raw = min(last, MAX_SPAN_WINDOWS * window_s)
    step = next((s for s in _TICK_STEPS_S if raw / s <= _MAX_TICKS), _TICK_STEPS_S[-1])
    span = max(step, math.ceil(raw / step) * step)
    opens = _opens_s(settings)
    return _Axis(opens_s=opens, window_s=window_s, span_s=span, step_s=step, cut=last > span)


def _chart(plan: Json, axis: _Axis) -> str:
    """The axis in its own SVG above the rows, so it stays in view while 1,000 rows scroll."""
    parts = [
        _legend(),
        _axis_svg(axis),
        f'<div class="rows">{_rows_svg(plan["pipelines"], axis)}</div>',
    ]
    if axis.cut:
        edge = _clock(axis.opens_s, axis.span_s)
        parts.append(
            f"<p><small>Bars past {edge} are cut at the chart's edge; their tooltips and "
            "the listing below give their ends.</small></p>"
        )
    return "\n".join(parts)


def _legend() -> str:
    items = [
        ("sw-table", "table backup"),
        ("sw-boosted", "boosted: read capacity raised for the backup"),
        ("sw-over", "cannot finish inside the window (red: the part past it)"),
        ("sw-start", "pipeline start (cluster bootstrap)"),
        ("sw-end", "window end"),
    ]
    spans = "".join(f'<span><i class="{c}"></i>{escape(label)}</span>' for c, label in items)
    return f'<p class="legend">{spans}<small>Hover a bar for details.</small></p>'


def _axis_svg(axis: _Axis) -> str:
    parts = [f'<svg width="{CHART_W}" height="{AXIS_H}" role="img" aria-label="time axis">']
    for offset in range(0, int(axis.span_s) + 1, axis.step_s):
        x = axis.x(offset)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="16" x2="{x:.1f}" y2="{AXIS_H}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="12" text-anchor="middle">{_clock(axis.opens_s, offset)}</text>'
        )
    end = axis.x(axis.window_s)
    parts.append(f'<line class="end" x1="{end:.1f}" y1="14" x2="{end:.1f}" y2="{AXIS_H}"/>')
    return "".join([*parts, '<text x="4" y="12">UTC</text></svg>'])


def _rows_svg(pipelines: Sequence[Json], axis: _Axis) -> str:
    height = len(pipelines) * ROW_H + 2
    parts = [
        f'<svg width="{CHART_W}" height="{height}" role="img" '
        'aria-label="a row per pipeline, a bar per table">',
        '<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="5" height="5" '
        'patternTransform="rotate(45)"><rect width="5" height="5" fill="#ddd"/>'
        '<line x1="0" y1="0" x2="0" y2="5" stroke="#999" stroke-width="2"/></pattern></defs>',
    ]
    parts.extend(  # bands, then the grid, then the bars: each drawn over the one before
        f'<rect class="band" x="0" y="{row * ROW_H}" width="{CHART_W}" height="{ROW_H}"/>'
        for row in range(1, len(pipelines), 2)
    )
    parts.extend(_gridlines(axis, height=height))
    for row, pipeline in enumerate(pipelines):
        parts.extend(_row(pipeline, y=row * ROW_H, axis=axis))
    end = axis.x(axis.window_s)
    parts.append(f'<line class="end" x1="{end:.1f}" y1="0" x2="{end:.1f}" y2="{height}"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _gridlines(axis: _Axis, *, height: int) -> list[str]:
    return [
        f'<line class="grid" x1="{axis.x(o):.1f}" y1="0" x2="{axis.x(o):.1f}" y2="{height}"/>'
        for o in range(0, int(axis.span_s) + 1, axis.step_s)
    ]


def _row(pipeline: Json, *, y: int, axis: _Axis) -> list[str]:
    index, tables = pipeline["index"], pipeline["tables"]
    ends = _clock(axis.opens_s, pipeline["total_s"], seconds=True)
    count = f"{len(tables)} table{'' if len(tables) == 1 else 's'}"
    about = f"pipeline {index}: {count}, ends {ends} UTC"
    top = y + (ROW_H - BAR_H) / 2
    parts = [
        f'<text x="{LABEL_W - 6}" y="{y + ROW_H - 4}" text-anchor="end">'
        f"<title>{escape(about)}</title>P{escape(str(index))}</text>"
    ]
    start_w = axis.x(pipeline["start_s"]) - axis.x(0)
    parts.append(
        f'<rect class="start" x="{axis.x(0):.1f}" y="{top:.1f}" width="{start_w:.1f}" '
        f'height="{BAR_H}"><title>{escape(about)}; start (cluster bootstrap): '
        f"{duration(pipeline['start_s'])}</title></rect>"
    )
    parts.extend(_bar(t, top=top, axis=axis) for t in tables)
    return parts


def _bar(table: Json, *, top: float, axis: _Axis) -> str:
    x0, x1 = axis.x(table["start_offset_s"]), axis.x(table["end_offset_s"])
    width = max(1.0, x1 - x0)
    classes = "bar" + (" boosted" if table.get("boost") else "")
    classes += " overrun" if table["overrun_s"] > 0 else ""
    tip = escape(_tooltip(table, opens_s=axis.opens_s))
    parts = [
        f'<g><title>{tip}</title><rect class="{classes}" x="{x0:.1f}" y="{top:.1f}" '
        f'width="{width:.1f}" height="{BAR_H}"/>'
    ]
    if table["overrun_s"] > 0:
        past = axis.x(axis.window_s)
        parts.append(
            f'<rect class="past" x="{past:.1f}" y="{top:.1f}" width="{max(1.0, x1 - past):.1f}" '
            f'height="{BAR_H}"/>'
        )
    name = str(table["table"])
    if width >= CHAR_W * len(name) + 8:
        parts.append(
            f'<text class="in" x="{x0 + 4:.1f}" y="{top + BAR_H - 2.5:.1f}">{escape(name)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _tooltip(table: Json, *, opens_s: int) -> str:
    est = table["estimate"]
    start, end = (
        _clock(opens_s, table[k], seconds=True) for k in ("start_offset_s", "end_offset_s")
    )
    lines = [
        f"{table['table']}: {start} to {end} UTC "
        f"({duration(table['end_offset_s'] - table['start_offset_s'])}), "
        f"{size(est['size_bytes'])}",
        f"estimate: {est['why']}",
    ]
    boost = table.get("boost")
    if boost:
        capped = ", capped" if boost.get("capped") else ""
        lines.append(
            f"boosted: RCU {boost['old_rcu']} -> {boost['new_rcu']}{capped}, "
            f"the backup reads {boost['backup_share']:.0%}"
        )
    if table["overrun_s"] > 0:
        lines.append(f"past the window by {duration(table['overrun_s'])}")
    return "\n".join(lines)


# --- the lists --------------------------------------------------------------------------------


def _skipped(plan: Json) -> str:
    skipped = plan.get("skipped") or []
    if not skipped:
        return "<h2>Skipped tables</h2>\n<p>None.</p>"
    rows = "".join(
        f"<tr><td>{escape(str(s['table']))}</td><td>{escape(str(s['reason']))}</td></tr>"
        for s in skipped
    )
    return (
        f"<h2>Skipped tables ({len(skipped)})</h2>\n"
        f'<table class="list"><tr><th>Table</th><th>Reason</th></tr>{rows}</table>'
    )


def _listing(plan: Json) -> str:
    pipelines = plan.get("pipelines") or []
    if not pipelines:
        return ""
    columns = ("Pipeline", "#", "Table", "Size", "Start", "End", "Estimate", "Read capacity")
    head = "".join(f"<th>{h}</th>" for h in (*columns, "Reason"))
    rows = [
        _listing_row(p["index"], pos, t, settings=plan["settings"])
        for p in pipelines
        for pos, t in enumerate(p["tables"], start=1)
    ]
    return (
        f"<h2>Every table ({len(rows)})</h2>\n"
        f'<table class="list"><tr>{head}</tr>\n' + "\n".join(rows) + "</table>"
    )


def _listing_row(index: int, pos: int, table: Json, *, settings: Json) -> str:
    opens = _opens_s(settings)
    est = table["estimate"]
    marks = (("boosted", bool(table.get("boost"))), ("overrun", table["overrun_s"] > 0))
    classes = " ".join(name for name, on in marks if on)
    cells = [
        _td(index, numeric=True),
        _td(pos, numeric=True),
        _td(table["table"]),
        _td(size(est["size_bytes"]), numeric=True),
        _td(_clock(opens, table["start_offset_s"], seconds=True), numeric=True),
        _td(_clock(opens, table["end_offset_s"], seconds=True), numeric=True),
        f'<td class="n">{escape(duration(est["seconds"]))}<br><small>'
        f"{escape(str(est['why']))}</small></td>",
        f'<td class="cap">{escape(_capacity(table, settings))}</td>',
        _td(table["reason"]),
    ]
    return f'<tr class="{classes}">{"".join(cells)}</tr>'


def _td(value: object, *, numeric: bool = False) -> str:
    cls = ' class="n"' if numeric else ""
    return f"<td{cls}>{escape(str(value))}</td>"


def _capacity(table: Json, settings: Json) -> str:
    est, boost = table["estimate"], table.get("boost")
    if boost:
        capped = " (capped)" if boost.get("capped") else ""
        return (
            f"boosted {boost['old_rcu']} -> {boost['new_rcu']} RCU{capped}, "
            f"backup share {boost['backup_share']:.0%}"
        )
    if est.get("on_demand"):
        return f"on-demand, {est['budget']:g} read units/s"
    return f"{est['rcu']} RCU x {settings['read_percent']:g}"


def _settings(settings: Json) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in settings.items()
    )
    return f'<details><summary>Settings</summary><table class="list">{rows}</table></details>'


# --- formatting -------------------------------------------------------------------------------


def _clock(opens_s: int, offset_s: float, *, seconds: bool = False) -> str:
    """UTC clock time of an offset from the window's opening; "+1d" past midnight's turn."""
    total = int(round(opens_s + offset_s))
    days, s = divmod(total, DAY_S)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}" + (f":{s % 60:02d}" if seconds else "")
    return f"{text} +{days}d" if days else text
