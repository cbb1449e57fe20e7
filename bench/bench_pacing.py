"""3. Pacing on DynamoDB Local: does a backup at ``--read-percent 0.5`` of a 40 RCU table use
20 RCU/s, minute after minute? Measured from the CLI's own progress events (cumulative consumed
capacity as DynamoDB Local reports it, with each line's arrival time)."""

from __future__ import annotations

import bisect
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import items
import load
import servers as testing
from common import MB, Report, hippolyte_backup, metric

NAME = "pacing"
TITLE = "Pacing on DynamoDB Local"
TABLE = "paced"
READ_CAPACITY = 40
READ_PERCENT = 0.5
SEGMENTS = 4
TOLERANCE = 0.05  # every full minute within 5% of the budget


@dataclass(frozen=True, kw_only=True)
class Sizes:
    items: int

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        # 34,000 items of ~1 KB: ~36 MB, ~3.6 minutes at 20 RCU/s (eventually consistent)
        return cls(items=1_500 if quick else 34_000)


@dataclass(frozen=True, kw_only=True)
class Window:
    start_s: float  # since the table started
    seconds: float
    consumed: float
    budget: float

    @property
    def ratio(self) -> float:
        return self.consumed / self.budget


class Curve:
    """Cumulative consumed capacity over time, linear between the reported points."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.times = [t for t, _ in points]
        self.values = [c for _, c in points]

    @property
    def end(self) -> float:
        return self.times[-1]

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.values[0]
        if i == len(self.times):
            return self.values[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        c0, c1 = self.values[i - 1], self.values[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1

    def windows(self, seconds: float, *, rate: float) -> list[Window]:
        """Every whole window of ``seconds`` from the start to the last page."""
        found, start = [], 0.0
        while start + seconds <= self.end + 1e-9:
            used = self.at(start + seconds) - self.at(start)
            found.append(Window(start_s=start, seconds=seconds, consumed=used,
                                budget=rate * seconds))
            start += seconds
        return found


def curve_of(events: list[tuple[float, dict[str, Any]]]) -> tuple[Curve, float]:
    """The consumption curve (time 0 = the table_started line) and the table's budget."""
    started = [(t, e) for t, e in events if e.get("event") == "table_started"]
    if not started:
        raise RuntimeError("the backup printed no table_started event on stderr")
    t0, budget = started[0][0], float(started[0][1]["read_budget"])
    points = [(0.0, 0.0)]
    for t, e in events:
        if e.get("event") == "progress":
            points.append((t - t0, float(e["consumed"])))
        elif e.get("event") == "table_done":
            points.append((t - t0, float(e["consumed_read_units"])))
    return Curve(points), budget


def run(*, quick: bool) -> Report:
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    with testing.start_dynamodb_local() as server, \
            tempfile.TemporaryDirectory(prefix="bench-pacing-") as tmp:
        load.create_table(server.endpoint_url, TABLE, read_capacity=READ_CAPACITY)
        load.fill(server.endpoint_url, TABLE, count=sizes.items)
        backup = hippolyte_backup(TABLE, repo=Path(tmp), endpoint_url=server.endpoint_url,
                                  segments=SEGMENTS, workers=SEGMENTS, read_percent=READ_PERCENT)
    if backup.result["item_count"] != sizes.items:
        raise RuntimeError(f"backed up {backup.result['item_count']} of {sizes.items} items")
    curve, budget = curve_of(backup.events)
    _summarize(report, curve, budget, sizes, backup.result)
    return report


def _summarize(report: Report, curve: Curve, budget: float, sizes: Sizes,
               result: dict[str, Any]) -> None:
    minutes = curve.windows(60, rate=budget)
    tens = curve.windows(10, rate=budget)
    total = curve.values[-1]
    report.raw.update({
        "items": sizes.items, "ddb_mb": items.table_size(sizes.items) / MB, "budget": budget,
        "consumed": total, "seconds": curve.end, "result": result,
        "curve": list(zip(curve.times, curve.values, strict=True)),
        "minutes": [w.__dict__ for w in minutes], "ten_seconds": [w.__dict__ for w in tens]})
    report.metrics.append(metric(
        "budget_rcu_s", f"budget: {READ_PERCENT:g} x {READ_CAPACITY} RCU", budget, "RCU/s"))
    report.metrics.append(metric(
        "mean_ratio", f"whole run: {total:,.0f} RCU in {curve.end:,.0f} s, over budget x time",
        total / (budget * curve.end), "", digits=3))
    if minutes:
        ratios = [w.ratio for w in minutes]
        report.metrics += [
            metric("minute_min", f"lowest full minute ({len(minutes)} full minutes)",
                   min(ratios), "of budget", at_least=1 - TOLERANCE, digits=3),
            metric("minute_max", "highest full minute", max(ratios), "of budget",
                   at_most=1 + TOLERANCE, digits=3),
            metric("minute_mean", "mean of full minutes", statistics.fmean(ratios), "of budget",
                   digits=3),
        ]
        report.notes.append("Per minute (consumed / budget): " + ", ".join(
            f"minute {i + 1}: {w.consumed:,.0f} RCU ({w.ratio:.1%})"
            for i, w in enumerate(minutes)) + ".")
    else:
        report.notes.append("No full minute in a quick run: only 10 s windows are shown.")
    if tens:
        ratios = [w.ratio for w in tens]
        report.metrics += [
            metric("ten_s_min", f"lowest 10 s window ({len(tens)} windows)", min(ratios),
                   "of budget", digits=3),
            metric("ten_s_max", "highest 10 s window", max(ratios), "of budget", digits=3),
            metric("ten_s_mean", "mean of 10 s windows", statistics.fmean(ratios), "of budget",
                   digits=3),
        ]
