"""The dashboard's fleet table: a row per table with its state against the RPO (in words and
colour), its newest backup, the trend of its last backups as two inline SVG sparklines
(duration, throughput), its engine, change capture, restorable range, last run and last
drill. Pure: plain data in (:func:`hippolyte.ops.dashboard.gather`'s ``tables``), HTML out.

Every cell that sorts by number carries its value in ``data-v``; the row's class is its
state, which the filter and the colours read. The table reads fully without JavaScript."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from hippolyte.core.formatting import duration, size

Json = Mapping[str, Any]

SPARK_W, SPARK_H = 60, 16
STATES = {  # state -> what the page says, worst first (the default order)
    "missing": "no backup",
    "late": "late",
    "unreadable": "unreadable",
    "ok": "ok",
    "empty": "empty",
    "excluded": "excluded",
}
_ORDER = {state: i for i, state in enumerate(STATES)}


def fleet_table(tables: Sequence[Json], *, rpo_hours: float) -> str:
    """The fleet, worst first (no backup, late, then the oldest backups first)."""
    targets = {t["target"] for t in tables}
    with_target = len(targets) > 1
    rows = sorted(tables, key=lambda t: (_ORDER[t["state"]], -(t["ageHours"] or 0), t["table"]))
    head = [
        ("Table", "text"),
        *([("Target", "text")] if with_target else []),
        ("State", "text"),
        ("Age", "num"),
        ("Items", "num"),
        ("Size", "num"),
        ("Duration, last backups", "num"),
        ("Throughput, last backups", "num"),
        ("Engine", "text"),
        ("Capture lag", "num"),
        ("Restorable (UTC)", "text"),
        ("Backups", "num"),
        ("Last run", "text"),
        ("Last drill", "text"),
    ]
    ths = "".join(f'<th data-sort="{kind}" scope="col">{label}</th>' for label, kind in head)
    body = "\n".join(_row(t, rpo_hours=rpo_hours, with_target=with_target) for t in rows)
    return (
        f'<table id="fleet-table" class="list"><thead><tr>{ths}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody></table>"
    )


def _row(t: Json, *, rpo_hours: float, with_target: bool) -> str:
    age = t["ageHours"]
    items, raw, took = t["items"], t["bytes"], t["durationS"]
    cells = [
        f"<td>{escape(t['table'])}</td>",
        f"<td>{escape(t['target'])}</td>" if with_target else "",
        f"<td>{_state(t, rpo_hours=rpo_hours)}</td>",
        _num(age, "-" if age is None else _hours(age), missing="Infinity"),
        _num(items, "-" if items is None else f"{items:,}"),
        _num(raw, size(raw)),
        _num(took, "-" if took is None else _took(took), extra=_spark(t, "duration")),
        _num(_rate(raw, took), _rate_text(raw, took), extra=_spark(t, "throughput")),
        f"<td>{escape(t['engine'] or '-')}</td>",
        _lag(t.get("changes")),
        f"<td>{_restorable(t)}</td>",
        _num(t["backups"], _backups(t)),
        _last_run(t.get("lastRun")),
        _drill(t.get("lastDrill")),
    ]
    return f'<tr class="{t["state"]}">{"".join(cells)}</tr>'


def _state(t: Json, *, rpo_hours: float) -> str:
    state = t["state"]
    label = f'<b class="st">{STATES[state]}</b>'
    age = t["ageHours"]
    if state == "ok":
        return f"{label} {_hours(age)} of {_hours(rpo_hours)}"
    if state == "late":
        return f"{label} by {_hours(age - rpo_hours)} (RPO {_hours(rpo_hours)})"
    if state == "excluded":
        return f"{label} <small>{escape(t.get('reason') or '')}</small>"
    if state == "empty":
        return f"{label} <small>nothing to back up</small>"
    if state == "unreadable":
        return f"{label} <small>{escape(t.get('unreadable') or '')}</small>"
    return f"{label} <small>RPO {_hours(rpo_hours)}</small>"


def _num(value: float | None, text: str, *, missing: str = "", extra: str = "") -> str:
    """A number's cell: right-aligned by its data-v (CSS), sorted by it (the script)."""
    if value is None and not missing:
        return f"<td>{escape(text)}{extra}</td>"
    v = missing if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f'<td data-v="{v}">{escape(text)}{extra}</td>'


def _hours(h: float) -> str:
    if h >= 48:
        return f"{h / 24:.1f} d"
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def _took(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else duration(seconds)


def _rate(raw: int | None, took: float | None) -> float | None:
    if raw is None or not took:
        return None
    return round(raw / took, 1)


def _rate_text(raw: int | None, took: float | None) -> str:
    rate = _rate(raw, took)
    return "-" if rate is None else f"{size(rate)}/s"


def _spark(t: Json, kind: str) -> str:
    """The trend of the last backups, oldest to newest, as a polyline; nothing under two
    known points."""
    values = []
    for took, raw in t.get("trend") or []:
        values.append(took if kind == "duration" else _rate(raw, took))
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = SPARK_W / (len(values) - 1)
    points = " ".join(
        f"{i * step:.0f},{SPARK_H - 1 - (v - low) / span * (SPARK_H - 2):.0f}"
        for i, v in enumerate(values)
        if v is not None
    )
    first, last = known[0], known[-1]
    fmt = _took if kind == "duration" else (lambda r: f"{size(r)}/s")
    title = f"last {len(values)}: {fmt(first)} to {fmt(last)}"
    return (
        f'<svg viewBox="0 0 {SPARK_W} {SPARK_H}"><title>{escape(title)}</title>'
        f'<polyline points="{points}"/></svg>'
    )


def _lag(changes: Json | None) -> str:
    if changes is None:
        return "<td>-</td>"
    lag = changes["lagSeconds"]
    cls = "" if changes["ok"] else ' class="bad"'
    gaps = changes["gaps"]
    note = f", {gaps} gap{'s' if gaps != 1 else ''}" if gaps else ""
    text = f"{duration(lag)}{note}"
    return f'<td{cls} data-v="{lag:g}">{escape(text)}</td>'


def _restorable(t: Json) -> str:
    first, until = t.get("oldestRestorable"), t.get("restorableUntil")
    if not first or not until:
        return "-"
    return f"{_when(first)} to {_when(until)}"


def _when(iso: str) -> str:
    return escape(iso[:16].replace("T", " "))


def _backups(t: Json) -> str:
    kept = t.get("kept")
    return f"{t['backups']}" if kept is None else f"{t['backups']} ({kept} kept)"


def _last_run(text: str | None) -> str:
    if not text:
        return "<td>-</td>"
    run_id, _, outcome = text.partition(": ")
    word = outcome.split(":", 1)[0]
    if word == "ok":
        return f"<td>ok <small>{escape(run_id)}</small></td>"
    title = escape(text)
    return f'<td class="bad" title="{title}">{escape(word)} <small>{escape(run_id)}</small></td>'


def _drill(drill: Json | None) -> str:
    """Issue 17's drills: ``{"at", "ok", "secondsPerGb"}``; ``-`` until a drill exists."""
    if not drill:
        return "<td>-</td>"
    word = "ok" if drill.get("ok") else "failed"
    rto = drill.get("secondsPerGb")
    note = f", {duration(rto)}/GB" if rto is not None else ""
    cls = "" if drill.get("ok") else ' class="bad"'
    return f"<td{cls}>{word} {_when(str(drill.get('at', '')))}{escape(note)}</td>"
