"""A night's run, planned: estimate each table's backup, boost the tables too long for the
window alone, and pack them all into as few pipelines as possible. Pure.

A pipeline is one worker that backs up its tables one after another after a start cost;
pipelines run side by side from the window's opening. The packer tries best-fit decreasing,
the original Hippolyte's ascending greedy, and a binary search for fewer pipelines (longest
table first onto the least loaded pipeline, then local search); it keeps the fewest pipelines,
then the earliest finish. Every decision carries a reason a human can read.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from hippolyte.core import packing
from hippolyte.core.formatting import duration, size
from hippolyte.core.model import TableInfo
from hippolyte.core.pacing import read_budget

DAY_S = 86_400
_EPS = 1e-6  # seconds: float slack when comparing loads with the window


@dataclass(frozen=True, kw_only=True)
class PlanSettings:
    read_percent: float = 0.5
    # 8192: our export scans eventually consistently, two 4 KB reads per RCU. 4096 is the
    # strongly consistent figure the original used, which made its estimates ~2x too long.
    bytes_per_rcu: int = 8192
    table_start_s: float = 60.0
    pipeline_start_s: float = 600.0
    max_tables_per_pipeline: int = 32  # a Data Pipeline holds 100 objects: 3 per table + 2
    window_start: dt.time = dt.time(0, 0)  # UTC
    window_end: dt.time = dt.time(7, 0)  # UTC; earlier than window_start: crosses midnight
    on_demand_read_units: float = 1000.0  # reads/s an on-demand table's backup may use
    table_max_rcu: int = 40_000  # DescribeLimits TableMaxReadCapacityUnits
    account_max_rcu: int = 80_000  # DescribeLimits AccountMaxReadCapacityUnits
    account_used_rcu: int = 0  # provisioned RCU the account already uses
    max_decreases_per_day: int = 27
    min_decreases_left: int = 1  # a boost needs a decrease left today to be reverted

    def __post_init__(self) -> None:
        if not 0 < self.read_percent <= 1:
            raise ValueError("read_percent must be in (0, 1]")
        if self.bytes_per_rcu <= 0 or self.on_demand_read_units <= 0:
            raise ValueError("bytes_per_rcu and on_demand_read_units must be positive")
        if self.max_tables_per_pipeline < 1:
            raise ValueError("max_tables_per_pipeline must be at least 1")
        if self.usable_s <= self.table_start_s:
            raise ValueError("the window is too short for one pipeline and one table")

    @property
    def window_s(self) -> float:
        """Seconds from window_start to window_end; equal times mean a whole day."""
        span = _clock_s(self.window_end) - _clock_s(self.window_start)
        return float(span % DAY_S or DAY_S)

    @property
    def usable_s(self) -> float:
        """What a pipeline's tables may take: the window less the pipeline's start."""
        return self.window_s - self.pipeline_start_s


def decreases_left(*, used_today: int, settings: PlanSettings) -> int:
    """Decreases a table has left today, from DescribeTable's NumberOfDecreasesToday."""
    return max(0, settings.max_decreases_per_day - used_today)


@dataclass(frozen=True, kw_only=True)
class TableEstimate:
    table: str
    size_bytes: int
    rcu: int
    on_demand: bool
    budget: float  # read units per second the backup may use
    bytes_per_s: float
    seconds: float  # the per-table start cost included
    why: str
    measured_throughput: bool = False


@dataclass(frozen=True, kw_only=True)
class Boost:
    table: str
    old_rcu: int
    new_rcu: int
    backup_share: float  # read percent of new_rcu for the backup; the application keeps old_rcu
    capped: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class PlannedTable:
    estimate: TableEstimate  # the boosted one when boosted
    boost: Boost | None
    start_offset_s: float  # from the window's opening
    end_offset_s: float
    overrun_s: float  # past the window's end; 0 when it fits
    reason: str


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    index: int  # from 1
    tables: tuple[PlannedTable, ...]
    start_s: float  # the pipeline's start cost
    total_s: float  # start cost + its tables, one after another

    @property
    def overruns(self) -> bool:
        return any(t.overrun_s > 0 for t in self.tables)


@dataclass(frozen=True, kw_only=True)
class Skipped:
    table: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    settings: PlanSettings
    pipelines: tuple[Pipeline, ...]
    skipped: tuple[Skipped, ...]
    lower_bound: int  # no packing of these estimates uses fewer pipelines
    lower_bound_reason: str
    greedy_pipelines: int  # what the original's ascending greedy uses on the same estimates
    finish_offset_s: float  # when the last pipeline ends, from the window's opening
    decisions: tuple[str, ...]
    exports: tuple[Skipped, ...] = ()  # tables DynamoDB exports itself (PITR), with why

    @property
    def tables(self) -> tuple[PlannedTable, ...]:
        return tuple(t for p in self.pipelines for t in p.tables)

    @property
    def boosts(self) -> tuple[Boost, ...]:
        return tuple(t.boost for t in self.tables if t.boost is not None)

    @property
    def overruns(self) -> tuple[PlannedTable, ...]:
        """Tables that cannot finish inside the window, even boosted: a pipeline each."""
        return tuple(t for t in self.tables if t.overrun_s > 0)


# --- estimates and boosts ---------------------------------------------------------------------


def estimate(
    table: TableInfo, *, settings: PlanSettings, history: Mapping[str, float] | None = None
) -> TableEstimate:
    """size / (RCU x read percent x bytes per RCU) + the table's start cost; or, where
    ``history`` has the table, the throughput (bytes/s) its earlier backups measured."""
    on_demand = table.on_demand or table.read_capacity <= 0
    budget = read_budget(
        on_demand=on_demand,
        read_capacity=table.read_capacity,
        read_percent=settings.read_percent,
        on_demand_units=settings.on_demand_read_units,
        max_read_request_units=table.max_read_request_units,
    )
    measured = (history or {}).get(table.name, 0.0)
    if measured > 0:
        rate, why = measured, f"{size(measured)}/s, measured by earlier backups"
    elif on_demand:  # no RCU: the configured budget, never a division by zero
        rate = budget * settings.bytes_per_rcu
        why = f"on-demand, a budget of {budget:g} read units/s x {settings.bytes_per_rcu} B"
    else:
        rate = budget * settings.bytes_per_rcu
        why = f"{table.read_capacity} RCU x {settings.read_percent:g} x {settings.bytes_per_rcu} B"
    return TableEstimate(
        table=table.name,
        size_bytes=table.size_bytes,
        rcu=table.read_capacity,
        on_demand=on_demand,
        budget=budget,
        bytes_per_s=rate,
        seconds=table.size_bytes / rate + settings.table_start_s,
        why=f"{size(table.size_bytes)} at {why}, + {settings.table_start_s:g} s to start",
        measured_throughput=measured > 0,
    )


def _boost_one(
    est: TableEstimate, *, settings: PlanSettings, headroom: int, left: int | None
) -> Boost | str:
    """The original's boost, fixed: new = rcu x (estimate / target + 1); the backup reads
    new - rcu (its share: 1 - rcu/new), so the application keeps its own rcu; capped by the
    table and account maxima. At read percent p the table then takes about p x target.
    Returns the boost, or why there is none."""
    if est.on_demand:
        return "on-demand: there is no read capacity to raise"
    if left is not None and left < settings.min_decreases_left:
        return f"not boosted: {left} capacity decreases left today, so no revert"
    target = settings.usable_s - settings.table_start_s
    read_s = est.seconds - settings.table_start_s
    wanted = math.ceil(est.rcu * (read_s / target + 1))
    new, caps = wanted, []
    if new > settings.table_max_rcu:
        new, caps = settings.table_max_rcu, [f"the table maximum of {settings.table_max_rcu}"]
    if new - est.rcu > headroom:
        new = est.rcu + headroom
        caps.append(f"the account's {headroom} RCU left under its maximum")
    capped = f", capped from {wanted} by {' and '.join(caps)}" if caps else ""
    if new - est.rcu <= est.budget:
        return f"not boosted: {new} RCU{capped} would read no faster than unboosted"
    share = 1 - est.rcu / new
    reason = (
        f"RCU {est.rcu} -> {new} = {est.rcu} x ({read_s:.0f} s / {target:.0f} s + 1){capped}; "
        f"the backup reads {share:.0%} of it, the application keeps its {est.rcu} RCU"
    )
    return Boost(
        table=est.table,
        old_rcu=est.rcu,
        new_rcu=new,
        backup_share=share,
        capped=bool(caps),
        reason=reason,
    )


def _boosted(est: TableEstimate, *, boost: Boost, settings: PlanSettings) -> TableEstimate:
    budget = float(boost.new_rcu - boost.old_rcu)
    rate = est.bytes_per_s * budget / est.budget  # a measured throughput scales the same way
    seconds = est.size_bytes / rate + settings.table_start_s
    why = f"boosted to {budget:g} read units/s for the backup; unboosted {est.seconds:.0f} s"
    return replace(
        est, rcu=boost.new_rcu, budget=budget, bytes_per_s=rate, seconds=seconds, why=why
    )


def _boost_all(
    estimates: Sequence[TableEstimate], *, settings: PlanSettings, decreases: Mapping[str, int]
) -> tuple[list[TableEstimate], dict[str, Boost], dict[str, str]]:
    """Boost every non-empty table too long for the window alone, longest first (they share
    the account's headroom): the estimates to pack, the boosts, and why others were not."""
    headroom = max(0, settings.account_max_rcu - settings.account_used_rcu)
    final = {e.table: e for e in estimates}
    boosts: dict[str, Boost] = {}
    refusals: dict[str, str] = {}
    too_long = [e for e in estimates if e.size_bytes > 0 and e.seconds > settings.usable_s]
    for est in sorted(too_long, key=lambda e: (-e.seconds, e.table)):
        left = decreases.get(est.table)
        boost = _boost_one(est, settings=settings, headroom=headroom, left=left)
        if isinstance(boost, str):
            refusals[est.table] = boost
            continue
        headroom -= boost.new_rcu - boost.old_rcu
        boosts[est.table] = boost
        final[est.table] = _boosted(est, boost=boost, settings=settings)
    return [final[e.table] for e in estimates], boosts, refusals


def pack(
    estimates: Sequence[TableEstimate],
    *,
    settings: PlanSettings,
    boosts: Mapping[str, Boost] | None = None,
    notes: Mapping[str, str] | None = None,
) -> Plan:
    """Pack estimated tables into pipelines that finish inside the window. Empty tables are
    skipped; a table too long for the window alone gets a pipeline of its own, flagged."""
    ests = sorted(estimates, key=lambda e: (-e.seconds, e.table))
    skipped = tuple(
        Skipped(table=e.table, reason="empty: nothing to back up")
        for e in ests
        if e.size_bytes <= 0
    )
    cap, slots = settings.usable_s, settings.max_tables_per_pipeline
    long = [e for e in ests if e.size_bytes > 0 and e.seconds > cap + _EPS]
    fits = [e for e in ests if e.size_bytes > 0 and e.seconds <= cap + _EPS]
    durs = [e.seconds for e in fits]
    bound, bound_why = packing.lower_bound(durs, cap=cap, slots=slots)
    bins, how = packing.search(durs, cap=cap, slots=slots, lower=bound)
    groups = [[e] for e in long] + [[fits[i] for i in sorted(b)] for b in bins]
    pipelines = tuple(
        _pipeline(g, index=n, settings=settings, boosts=boosts or {}, notes=notes or {})
        for n, g in enumerate(groups, start=1)
    )
    greedy = len(original_greedy(ests, settings=settings))
    finish = max((p.total_s for p in pipelines), default=0.0)
    bound_why = f"{len(long)} too long for the window + {bound} from {bound_why}"
    counts = f"{len(ests)} tables: {len(skipped)} empty (skipped), {len(boosts or {})} boosted"
    decisions = (
        f"window {settings.window_start:%H:%M}-{settings.window_end:%H:%M} UTC: "
        f"{duration(settings.window_s)}, {duration(cap)} for tables after a pipeline's start",
        f"{counts}, {len(long)} cannot finish inside the window (a pipeline each)",
        f"{len(pipelines)} pipelines ({how}); lower bound {len(long) + bound} ({bound_why}); "
        f"the original's greedy: {greedy}",
        f"the last pipeline ends {duration(finish)} after the window opens",
    )
    return Plan(
        settings=settings,
        pipelines=pipelines,
        skipped=skipped,
        lower_bound=len(long) + bound,
        lower_bound_reason=bound_why,
        greedy_pipelines=greedy,
        finish_offset_s=finish,
        decisions=decisions,
    )


def _pipeline(
    group: Sequence[TableEstimate],
    *,
    index: int,
    settings: PlanSettings,
    boosts: Mapping[str, Boost],
    notes: Mapping[str, str],
) -> Pipeline:
    clock, planned = settings.pipeline_start_s, []
    for pos, est in enumerate(group, start=1):
        end = clock + est.seconds
        over = max(0.0, end - settings.window_s) if est.seconds > settings.usable_s + _EPS else 0.0
        reason = f"pipeline {index}, {pos} of {len(group)}: {duration(clock)} to {duration(end)}"
        if over:
            why = notes.get(est.table) or "even boosted"
            reason = (
                f"cannot finish inside the window, {duration(over)} over ({why}); {reason} alone"
            )
        boost = boosts.get(est.table)
        reason = f"{reason}; boosted: {boost.reason}" if boost else reason
        planned.append(
            PlannedTable(
                estimate=est,
                boost=boost,
                start_offset_s=clock,
                end_offset_s=end,
                overrun_s=over,
                reason=reason,
            )
        )
        clock = end
    return Pipeline(
        index=index, tables=tuple(planned), start_s=settings.pipeline_start_s, total_s=clock
    )


def original_greedy(
    estimates: Sequence[TableEstimate], *, settings: PlanSettings
) -> list[list[str]]:
    """The original Hippolyte's packing, for comparison: empty tables skipped, shortest first,
    a new pipeline when the next table would end past the window or 32 tables are in it."""
    ests = sorted((e for e in estimates if e.size_bytes > 0), key=lambda e: (-e.seconds, e.table))
    durs = [e.seconds for e in ests]
    bins = packing.ascending_greedy(
        durs, cap=settings.usable_s, slots=settings.max_tables_per_pipeline
    )
    return [[ests[i].table for i in b] for b in bins]


def plan(
    tables: Sequence[TableInfo],
    *,
    settings: PlanSettings,
    history: Mapping[str, float] | None = None,
    decreases_left: Mapping[str, int] | None = None,
    exports: Mapping[str, str] | None = None,
) -> Plan:
    """Estimate every table, boost those too long for the window alone, pack them all.
    ``history``: table -> bytes/s measured by earlier backups; ``decreases_left``: table ->
    capacity decreases it has left today (see :func:`decreases_left`); ``exports``: table ->
    why DynamoDB's own export backs it up instead (no capacity, no pipeline slot)."""
    exports = exports or {}
    scanned = [t for t in tables if t.name not in exports]
    ests = [estimate(t, settings=settings, history=history) for t in scanned]
    final, boosts, refusals = _boost_all(ests, settings=settings, decreases=decreases_left or {})
    packed = pack(final, settings=settings, boosts=boosts, notes=refusals)
    if not exports:
        return packed
    chosen = tuple(Skipped(table=n, reason=r) for n, r in sorted(exports.items()))
    note = f"{len(chosen)} tables by DynamoDB's point-in-time export (no read capacity used)"
    return replace(packed, exports=chosen, decisions=(*packed.decisions, note))


def to_json(plan: Plan) -> dict[str, Any]:
    """Plain data for the CLI's json output: every pipeline, table, estimate, boost and reason,
    with clock times (UTC) beside the offsets from the window's opening."""
    data = asdict(plan)
    opens = _clock_s(plan.settings.window_start)
    data["settings"].update(
        window_start=f"{plan.settings.window_start:%H:%M}",
        window_end=f"{plan.settings.window_end:%H:%M}",
        window_s=plan.settings.window_s,
        usable_s=plan.settings.usable_s,
    )
    data["finishes_at"] = _clock(opens + plan.finish_offset_s)
    for pipeline in data["pipelines"]:
        pipeline["overruns"] = any(t["overrun_s"] > 0 for t in pipeline["tables"])
        for t in pipeline["tables"]:
            t["table"] = t["estimate"]["table"]
            t["starts_at"] = _clock(opens + t["start_offset_s"])
            t["ends_at"] = _clock(opens + t["end_offset_s"])
    return data


# --- formatting -------------------------------------------------------------------------------


def _clock_s(t: dt.time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _clock(seconds: float) -> str:
    s = int(round(seconds)) % DAY_S
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def without_boost(t: PlannedTable, settings: PlanSettings) -> str:
    """What a boost that could not happen costs ``t``: its time at its own capacity, and
    whether it then ends outside the window (for the run's warning and the monitor)."""
    if t.boost is None or t.estimate.budget <= 0:
        return "it was not to be boosted"
    own_budget = t.boost.old_rcu * settings.read_percent
    if own_budget <= 0:
        return "at its own capacity it has no read budget"
    scan = max(0.0, t.estimate.seconds - settings.table_start_s)
    seconds = settings.table_start_s + scan * t.estimate.budget / own_budget
    over = t.start_offset_s + seconds - settings.window_s
    where = (
        f"ends about {duration(over)} after the window closes"
        if over > 0
        else "still ends inside the window"
    )
    return (
        f"at its own {t.boost.old_rcu} RCU it takes about {duration(seconds)} instead of "
        f"{duration(t.estimate.seconds)}, and {where}"
    )
