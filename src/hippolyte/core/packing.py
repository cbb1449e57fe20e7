"""Bin packing of backup durations into pipelines. Pure.

Durations are sorted longest first; a pipeline is a list of indices into them. Strategies:
best-fit decreasing, the original Hippolyte's ascending greedy, and a binary search for fewer
pipelines (longest first onto the least loaded pipeline, then local search moving or swapping
tables out of the longest pipeline). ``lower_bound`` gives a bound no packing can beat.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence

_EPS = 1e-6  # seconds: float slack when comparing loads with the window
_TARGETS = 8  # least loaded pipelines the local search looks at per step
_STEPS_PER_PIPELINE = 40  # local search steps allowed per pipeline

Bins = list[list[int]]


def best_fit(durs: Sequence[float], *, cap: float, slots: int) -> Bins:
    """Best-fit decreasing: each table, longest first, into the pipeline it fills fullest."""
    bins: Bins = []
    free: list[tuple[float, int]] = []  # (room left, pipeline) for those with a slot free
    for i, d in enumerate(durs):
        pos = bisect.bisect_left(free, (d - _EPS, -1))
        room, b = free.pop(pos) if pos < len(free) else (cap, len(bins))
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        if len(bins[b]) < slots:
            bisect.insort(free, (room - d, b))
    return bins


def ascending_greedy(durs: Sequence[float], *, cap: float, slots: int) -> Bins:
    """The original's: shortest first, a new pipeline when the next table would not fit."""
    bins: Bins = []
    load = math.inf
    for i in sorted(range(len(durs)), key=lambda i: (durs[i], i)):
        if load + durs[i] > cap + _EPS or len(bins[-1]) >= slots:
            bins.append([])
            load = 0.0
        bins[-1].append(i)
        load += durs[i]
    return bins


def _longest_first(durs: Sequence[float], *, k: int, slots: int) -> Bins:
    """Each table, longest first, onto the least loaded of k pipelines with a slot free."""
    bins: Bins = [[] for _ in range(k)]
    heap = [(0.0, b) for b in range(k)]
    for i, d in enumerate(durs):
        load, b = heapq.heappop(heap)
        bins[b].append(i)
        if len(bins[b]) < slots:
            heapq.heappush(heap, (load + d, b))
    return bins


def _improve(bins: Bins, durs: Sequence[float], *, slots: int, enough: float = 0.0) -> None:
    """Local search: move or swap a table out of the longest pipeline while that shortens it,
    until the longest is ``enough``. Each step lowers the sum of squared loads, so it ends."""
    loads = [sum(durs[i] for i in b) for b in bins]
    ranked = sorted((load, b) for b, load in enumerate(loads))  # shortest pipeline first
    for _ in range(_STEPS_PER_PIPELINE * len(bins)):
        if ranked[-1][0] <= enough + _EPS or not _step(bins, loads, ranked, durs, slots=slots):
            return


def _step(
    bins: Bins,
    loads: list[float],
    ranked: list[tuple[float, int]],
    durs: Sequence[float],
    *,
    slots: int,
) -> bool:
    top = ranked[-1][1]
    best, change = loads[top] - _EPS, (top, -1, -1)  # (to, table out, table back or -1)
    for t in [b for _, b in ranked[: _TARGETS + 1] if b != top][:_TARGETS]:
        gap = loads[top] - loads[t]
        back = [-durs[j] for j in bins[t]]  # ascending
        for a in bins[top]:
            if len(bins[t]) < slots and max(loads[top] - durs[a], loads[t] + durs[a]) < best:
                best, change = max(loads[top] - durs[a], loads[t] + durs[a]), (t, a, -1)
            pos = bisect.bisect_left(back, -(durs[a] - gap / 2))  # the ideal swap partner
            for p in (pos - 1, pos):
                delta = durs[a] + back[p] if 0 <= p < len(back) else 0.0
                if 0 < delta < gap and max(loads[top] - delta, loads[t] + delta) < best:
                    best, change = max(loads[top] - delta, loads[t] + delta), (t, a, bins[t][p])
    t, a, b = change
    if t == top:
        return False
    delta = durs[a] - (durs[b] if b >= 0 else 0.0)
    for pipeline, load in ((top, loads[top] - delta), (t, loads[t] + delta)):
        ranked.pop(bisect.bisect_left(ranked, (loads[pipeline], pipeline)))
        bisect.insort(ranked, (load, pipeline))
        loads[pipeline] = load
    for item, src, dst in ((a, top, t), (b, t, top)):
        if item >= 0:
            bins[src].remove(item)
            bisect.insort(bins[dst], item)
    return True


def makespan(bins: Bins, durs: Sequence[float]) -> float:
    return max((sum(durs[i] for i in b) for b in bins), default=0.0)


def search(durs: Sequence[float], *, cap: float, slots: int, lower: int) -> tuple[Bins, str]:
    """The fewest pipelines any candidate reaches, then the earliest finish with that many."""
    best, how = best_fit(durs, cap=cap, slots=slots), "best-fit decreasing"
    greedy = ascending_greedy(durs, cap=cap, slots=slots)
    if len(greedy) < len(best):
        best, how = greedy, "the original's ascending greedy"
    lo, hi = lower, len(best) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        bins = _longest_first(durs, k=mid, slots=slots)
        _improve(bins, durs, slots=slots, enough=cap)
        if makespan(bins, durs) <= cap + _EPS:
            best, how, hi = bins, "longest first onto the least loaded, then local search", mid - 1
        else:
            lo = mid + 1
    balanced = _longest_first(durs, k=len(best), slots=slots)
    for bins in (best, balanced):
        _improve(bins, durs, slots=slots)
    if makespan(balanced, durs) < makespan(best, durs) - _EPS:
        best, how = balanced, f"{how}; rebalanced longest first onto the least loaded"
    return [b for b in best if b], how


def lower_bound(durs: Sequence[float], *, cap: float, slots: int) -> tuple[int, str]:
    terms = {
        "total work / usable window": math.ceil(sum(durs) / cap - _EPS) if durs else 0,
        f"tables / {slots}": math.ceil(len(durs) / slots),
    }
    ascending = [-d for d in durs]
    for j in range(1, slots):  # j + 1 tables longer than cap / (j + 1) never share a pipeline
        longer = bisect.bisect_left(ascending, -cap / (j + 1) - _EPS)
        terms[f"tables longer than 1/{j + 1} of it, {j} a pipeline"] = math.ceil(longer / j)
    name = max(terms, key=lambda n: terms[n])
    return terms[name], name
