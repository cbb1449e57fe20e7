"""Fleet planning: pipelines used by the packer versus the lower bound and versus the original
Hippolyte's ascending greedy, and the planning time, on synthetic fleets of 100, 1,000 and
10,000 tables generated with a fixed seed. Pure: no servers, no AWS.

    .venv/bin/python bench/bench_planning.py [--json] [--seed N] [--sizes 100,1000,10000]

Fleets: table sizes log-normal between 1 KB and 5 TB (median ~70 MB, clipped), RCU drawn from
{5, 10, 25, 50, 100, 500, 1000, 5000, 10000}, 20% of tables on demand. The account's read
quota is raised to 1.25x what the fleet already provisions (at least the default 80,000): a
fleet this large would not fit the default quota at all. Default plan settings otherwise
(00:00-07:00 UTC, read percent 0.5, 8192 bytes per RCU).

Targets: never more pipelines than the original's algorithm; within 5% of the lower bound on
the 1,000- and 10,000-table fleets; 10,000 tables planned in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from hippolyte.core.model import TableInfo
from hippolyte.core.planning import Plan, PlanSettings, estimate, original_greedy, plan

RCUS = (5, 10, 25, 50, 100, 500, 1000, 5000, 10000)
ON_DEMAND_SHARE = 0.2
MIN_SIZE, MAX_SIZE = 1e3, 5e12
MU = (math.log(MIN_SIZE) + math.log(MAX_SIZE)) / 2  # the range spans about +-3 sigma
SIGMA = (math.log(MAX_SIZE) - math.log(MIN_SIZE)) / 6
GAP_TARGET = 0.05
TIME_TARGET_S = 2.0
REPEATS = 3
DEFAULT_SEED = 20170301


def fleet(*, n: int, seed: int) -> list[TableInfo]:
    rng = random.Random(f"{seed}-{n}")
    tables = []
    for i in range(n):
        size = int(min(MAX_SIZE, max(MIN_SIZE, rng.lognormvariate(MU, SIGMA))))
        on_demand = rng.random() < ON_DEMAND_SHARE
        tables.append(
            TableInfo(
                name=f"t{i:05d}",
                billing_mode="PAY_PER_REQUEST" if on_demand else "PROVISIONED",
                read_capacity=0 if on_demand else rng.choice(RCUS),
                size_bytes=size,
                item_count=size // 1000,
            )
        )
    return tables


def settings_for(tables: list[TableInfo]) -> PlanSettings:
    used = sum(t.read_capacity for t in tables)
    return PlanSettings(account_used_rcu=used, account_max_rcu=max(80_000, math.ceil(used * 1.25)))


@dataclass(frozen=True, kw_only=True)
class Row:
    tables: int
    boosted: int
    too_long: int
    pipelines: int
    lower_bound: int
    greedy: int
    greedy_unboosted: int
    finish_h: float  # every pipeline, the too-long tables' included
    in_window_h: float  # the pipelines that fit the window
    plan_s: float  # the best of REPEATS runs
    lower_bound_reason: str

    @property
    def gap(self) -> float:
        return self.pipelines / self.lower_bound - 1 if self.lower_bound else 0.0

    def misses(self) -> list[str]:
        missed = []
        if self.pipelines > self.greedy:
            missed.append("more pipelines than the original's greedy")
        if self.tables >= 1000 and self.gap > GAP_TARGET:
            missed.append(f"{self.gap:.1%} above the lower bound")
        if self.tables >= 10_000 and self.plan_s > TIME_TARGET_S:
            missed.append(f"planning took {self.plan_s:.2f} s")
        return missed


def measure(*, n: int, seed: int) -> Row:
    tables = fleet(n=n, seed=seed)
    settings = settings_for(tables)
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result: Plan = plan(tables, settings=settings)
        timings.append(time.perf_counter() - started)
    fitting = [p.total_s for p in result.pipelines if not p.overruns]
    unboosted = [estimate(t, settings=settings) for t in tables]
    return Row(
        tables=n,
        boosted=len(result.boosts),
        too_long=len(result.overruns),
        pipelines=len(result.pipelines),
        lower_bound=result.lower_bound,
        greedy=result.greedy_pipelines,
        greedy_unboosted=len(original_greedy(unboosted, settings=settings)),
        finish_h=result.finish_offset_s / 3600,
        in_window_h=max(fitting, default=0.0) / 3600,
        plan_s=min(timings),
        lower_bound_reason=result.lower_bound_reason,
    )


def render(rows: list[Row]) -> str:
    head = (
        f"{'tables':>7} {'boosted':>7} {'too long':>8} {'pipelines':>9} {'lower bd':>8} "
        f"{'gap':>6} {'greedy':>6} {'greedy*':>7} {'finish':>7} {'in win':>7} {'plan s':>7}"
        "  targets"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.tables:>7} {r.boosted:>7} {r.too_long:>8} {r.pipelines:>9} {r.lower_bound:>8} "
            f"{r.gap:>6.1%} {r.greedy:>6} {r.greedy_unboosted:>7} {r.finish_h:>6.1f}h "
            f"{r.in_window_h:>6.2f}h {r.plan_s:>7.3f}  {'; '.join(r.misses()) or 'met'}"
        )
    lines.append(
        "greedy: the original's ascending greedy on the same (boosted) estimates; greedy*: on "
        "unboosted ones, as the original packed. too long: cannot finish in the window even "
        "boosted (a pipeline each, counted in the lower bound too). finish: the last pipeline's "
        "end, too-long tables included; in win: the last end of the pipelines that fit. "
        "plan s: best of 3."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args(argv)
    rows = [measure(n=int(n), seed=args.seed) for n in args.sizes.split(",")]
    if args.json:
        out: list[dict[str, Any]] = [
            {**r.__dict__, "gap": r.gap, "misses": r.misses()} for r in rows
        ]
        print(json.dumps({"seed": args.seed, "fleets": out}, indent=2))
    else:
        print(render(rows))
    return 1 if any(r.misses() for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())


NAME = "planning"
TITLE = "Fleet planning: pipelines versus the lower bound and the original's greedy"


def run(*, quick: bool) -> Any:
    """For bench/run.py: the same fleets as ``main`` (quick: 100 and 1,000 tables)."""
    from common import Report, metric

    report = Report(name=NAME, title=TITLE, quick=quick)
    for n in (100, 1_000) if quick else (100, 1_000, 10_000):
        row = measure(n=n, seed=DEFAULT_SEED)
        report.metrics += [
            metric(f"pipelines_{n}", f"{n:,} tables: pipelines (lower bound {row.lower_bound}, "
                   f"original's greedy {row.greedy})", row.pipelines, "",
                   at_most=row.greedy + 1, digits=0),
            metric(f"gap_{n}", f"{n:,} tables: above the lower bound", 100 * row.gap, "%",
                   **({"at_most": 100 * GAP_TARGET + 1e-9} if n >= 1000 else {}), digits=1),
            metric(f"plan_s_{n}", f"{n:,} tables: planning time", row.plan_s, "s",
                   **({"at_most": TIME_TARGET_S} if n >= 10_000 else {}), digits=3),
        ]
    report.notes.append(f"Fleets: log-normal sizes 1 KB-5 TB, mixed RCU, 20% on-demand, "
                        f"seed {DEFAULT_SEED}.")
    return report
