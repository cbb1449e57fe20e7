"""The planner: estimates, boosts and the packer. Pure and fast."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippolyte.core.model import TableInfo
from hippolyte.core.planning import (
    Plan,
    PlanSettings,
    TableEstimate,
    decreases_left,
    estimate,
    original_greedy,
    pack,
    plan,
    to_json,
)

DEFAULT = PlanSettings()
USABLE = DEFAULT.usable_s  # 7 h - 600 s
TARGET = USABLE - DEFAULT.table_start_s  # the reading time a boost aims for
PER_RCU = DEFAULT.read_percent * DEFAULT.bytes_per_rcu  # bytes/s per RCU, unboosted


def table(name: str, *, read_s: float, rcu: int = 100) -> TableInfo:
    """A provisioned table that takes ``read_s`` seconds to read, unboosted."""
    return TableInfo(name=name, read_capacity=rcu, size_bytes=int(read_s * rcu * PER_RCU))


def on_demand(name: str, *, size: int, max_reads: int | None = None) -> TableInfo:
    return TableInfo(
        name=name, billing_mode="PAY_PER_REQUEST", size_bytes=size, max_read_request_units=max_reads
    )


def est(name: str, seconds: float) -> TableEstimate:
    return TableEstimate(
        table=name,
        size_bytes=1,
        rcu=10,
        on_demand=False,
        budget=5.0,
        bytes_per_s=1.0,
        seconds=seconds,
        why="given",
    )


# --- properties of the packer ----------------------------------------------------------------

windows = st.sampled_from(
    [(dt.time(0), dt.time(7)), (dt.time(22), dt.time(5)), (dt.time(1), dt.time(2, 30))]
)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[TableInfo], PlanSettings]:
    start, end = draw(windows)
    s = PlanSettings(
        window_start=start,
        window_end=end,
        max_tables_per_pipeline=draw(st.sampled_from([2, 5, 32])),
        account_max_rcu=draw(st.sampled_from([80_000, 2_000])),
        bytes_per_rcu=draw(st.sampled_from([4096, 8192])),
    )
    tables = []
    for i in range(draw(st.integers(min_value=0, max_value=60))):
        size = draw(st.one_of(st.just(0), st.integers(min_value=1, max_value=10**12)))
        rcu = draw(st.sampled_from([0, 5, 100, 1000, 39_000]))
        mode = "PAY_PER_REQUEST" if rcu == 0 else "PROVISIONED"
        tables.append(
            TableInfo(name=f"t{i:03d}", billing_mode=mode, read_capacity=rcu, size_bytes=size)
        )
    return tables, s


@settings(max_examples=150, deadline=None)
@given(fleet=fleets(), data=st.data())
def test_packer_properties(
    fleet: tuple[list[TableInfo], PlanSettings], data: st.DataObject
) -> None:
    tables, s = fleet
    result = plan(tables, settings=s)
    placed = [t.estimate.table for t in result.tables]
    # every non-empty table in exactly one pipeline; the empty ones skipped with a reason
    assert sorted(placed) == sorted(t.name for t in tables if t.size_bytes > 0)
    assert sorted(k.table for k in result.skipped) == sorted(
        t.name for t in tables if t.size_bytes == 0
    )
    for p in result.pipelines:
        assert 1 <= len(p.tables) <= s.max_tables_per_pipeline
        assert p.total_s == pytest.approx(
            s.pipeline_start_s + sum(t.estimate.seconds for t in p.tables)
        )
        if p.overruns:  # flagged: a table too long for the window, alone in its pipeline
            assert len(p.tables) == 1 and p.tables[0].overrun_s > 0
            assert "cannot finish inside the window" in p.tables[0].reason
        else:
            assert p.total_s <= s.window_s + 1e-6
        ends = [t.end_offset_s for t in p.tables]
        starts = [s.pipeline_start_s, *ends[:-1]]
        assert [t.start_offset_s for t in p.tables] == pytest.approx(starts)
    # fewest pipelines: never more than the original's greedy, never fewer than the bound
    greedy = original_greedy([t.estimate for t in result.tables], settings=s)
    assert result.greedy_pipelines == len(greedy)
    assert result.lower_bound <= len(result.pipelines) <= len(greedy)
    # deterministic for the same input, in any order
    shuffled = data.draw(st.permutations(tables))
    assert to_json(plan(shuffled, settings=s)) == to_json(result)


@settings(max_examples=200, deadline=None)
@given(
    durations=st.lists(st.floats(min_value=1, max_value=USABLE), min_size=0, max_size=120),
    slots=st.sampled_from([1, 3, 32]),
)
def test_pack_on_raw_durations(durations: list[float], slots: int) -> None:
    s = PlanSettings(max_tables_per_pipeline=slots)
    ests = [est(f"t{i:03d}", d) for i, d in enumerate(durations)]
    result = pack(ests, settings=s)
    assert sorted(t.estimate.table for t in result.tables) == sorted(e.table for e in ests)
    assert all(len(p.tables) <= slots and p.total_s <= s.window_s + 1e-6 for p in result.pipelines)
    assert result.lower_bound <= len(result.pipelines) <= len(original_greedy(ests, settings=s))
    assert result.lower_bound >= math.ceil(len(ests) / slots)
    assert pack(list(reversed(ests)), settings=s) == result


def test_pack_beats_the_greedy_where_it_is_poor() -> None:
    # ascending greedy: [0.4, 0.4] [0.6] [0.6] -> 3 pipelines; ours pairs 0.6 with 0.4 -> 2
    ests = [est("a", 0.6 * USABLE), est("b", 0.6 * USABLE), est("c", 0.4 * USABLE)]
    ests.append(est("d", 0.4 * USABLE))
    assert original_greedy(ests, settings=DEFAULT) == [["c", "d"], ["a"], ["b"]]
    result = pack(ests, settings=DEFAULT)
    assert len(result.pipelines) == 2 == result.lower_bound
    assert result.greedy_pipelines == 3
    assert [len(p.tables) for p in result.pipelines] == [2, 2]


def test_at_most_32_tables_per_pipeline_and_balanced() -> None:
    ests = [est(f"t{i:02d}", 60) for i in range(40)]
    result = pack(ests, settings=DEFAULT)
    assert sorted(len(p.tables) for p in result.pipelines) == [20, 20]  # balanced, not 32 + 8
    assert result.lower_bound == 2 and "tables / 32" in result.lower_bound_reason


def test_rebalancing_lowers_the_finish() -> None:
    ests = [est(f"t{i}", d) for i, d in enumerate([9000, 8000, 7000, 6000, 5000, 4000, 3000])]
    result = pack(ests, settings=DEFAULT)
    assert len(result.pipelines) == 2  # 42,000 s of work in 24,600 s pipelines
    assert [p.total_s - 600 for p in result.pipelines] == [21_000, 21_000]
    assert result.finish_offset_s == 21_600


# --- estimates -------------------------------------------------------------------------------


def test_on_demand_never_divides_by_zero() -> None:
    e = estimate(on_demand("od", size=8192 * 1000 * 100), settings=DEFAULT)
    assert e.on_demand and e.budget == 1000 and e.seconds == pytest.approx(160)
    assert "on-demand" in e.why
    capped = estimate(on_demand("od", size=8192 * 100, max_reads=200), settings=DEFAULT)
    assert capped.budget == 100  # the table's own maximum x read percent
    zero_rcu = TableInfo(name="z", read_capacity=0, size_bytes=10**9)
    assert math.isfinite(estimate(zero_rcu, settings=DEFAULT).seconds)


def test_bytes_per_rcu_4096_is_the_originals_figure_twice_as_long() -> None:
    t = TableInfo(name="t", read_capacity=100, size_bytes=100 * 8192 * 3600)
    ours = estimate(t, settings=DEFAULT)
    original = estimate(t, settings=PlanSettings(bytes_per_rcu=4096))
    assert ours.seconds == pytest.approx(2 * 3600 + 60)  # 100 RCU x 0.5 x 8 KB
    assert original.seconds == pytest.approx(4 * 3600 + 60)


def test_history_corrects_the_estimate() -> None:
    t = TableInfo(name="t", read_capacity=100, size_bytes=10**9)
    measured = estimate(t, settings=DEFAULT, history={"t": 10**6, "other": 1.0})
    assert measured.measured_throughput and measured.seconds == pytest.approx(1060)
    assert "measured by earlier backups" in measured.why
    assert not estimate(t, settings=DEFAULT, history={"other": 1.0}).measured_throughput


def test_empty_tables_are_skipped() -> None:
    result = plan(
        [TableInfo(name="empty", read_capacity=5), table("full", read_s=60)], settings=DEFAULT
    )
    assert [(s.table, s.reason) for s in result.skipped] == [("empty", "empty: nothing to back up")]
    assert [t.estimate.table for t in result.tables] == ["full"]


# --- boosts ----------------------------------------------------------------------------------


def test_boost_formula_keeps_the_applications_capacity() -> None:
    result = plan([table("big", read_s=2 * TARGET, rcu=100)], settings=DEFAULT)
    (boost,) = result.boosts
    assert (boost.old_rcu, boost.new_rcu) == (100, 300)  # 100 x (2 + 1)
    assert boost.backup_share == pytest.approx(2 / 3) and not boost.capped
    assert "the application keeps its 100 RCU" in boost.reason
    (planned,) = result.tables
    assert planned.estimate.budget == 200  # new - old: the backup's share
    assert planned.estimate.seconds == pytest.approx(2 * TARGET * 50 / 200 + 60)
    assert planned.overrun_s == 0 and "boosted" in planned.reason


def test_boost_capped_by_the_table_maximum() -> None:
    s = PlanSettings(table_max_rcu=250)
    (boost,) = plan([table("big", read_s=2 * TARGET)], settings=s).boosts
    assert boost.new_rcu == 250 and boost.capped and "table maximum of 250" in boost.reason


def test_boost_capped_by_the_account_maximum_shared_between_tables() -> None:
    s = PlanSettings(account_max_rcu=1_000, account_used_rcu=600)  # 400 RCU of headroom
    tables = [table("a", read_s=2.5 * TARGET), table("b", read_s=2 * TARGET)]
    boosts = {b.table: b for b in plan(tables, settings=s).boosts}
    assert boosts["a"].new_rcu == 350 and not boosts["a"].capped  # longest first: 100 x 3.5
    assert boosts["b"].new_rcu == 250 and boosts["b"].capped  # wants 300; 150 RCU were left
    assert "capped from 300 by the account's 150 RCU left" in boosts["b"].reason
    squeezed = PlanSettings(account_max_rcu=1_000, account_used_rcu=700)  # b: 50 left
    result = plan(tables, settings=squeezed)
    assert [b.table for b in result.boosts] == ["a"]  # 150 RCU would read no faster than 50
    assert "no faster" in next(t.reason for t in result.tables if t.estimate.table == "b")


def test_a_capped_boost_that_still_cannot_fit_says_by_how_much() -> None:
    s = PlanSettings(table_max_rcu=200)
    result = plan([table("huge", read_s=10 * TARGET)], settings=s)
    (planned,) = result.overruns
    assert planned.boost is not None and planned.boost.new_rcu == 200  # still boosted: shorter
    read_s = 10 * TARGET * 50 / 100
    assert planned.overrun_s == pytest.approx(read_s + 60 - USABLE)
    assert "cannot finish inside the window" in planned.reason and "over" in planned.reason


def test_on_demand_tables_cannot_be_boosted() -> None:
    result = plan([on_demand("od", size=8192 * 1000 * 30_000)], settings=DEFAULT)
    (planned,) = result.overruns
    assert planned.boost is None and "on-demand" in planned.reason


def test_no_boost_without_a_decrease_left_to_revert_it() -> None:
    assert decreases_left(used_today=27, settings=DEFAULT) == 0
    assert decreases_left(used_today=3, settings=DEFAULT) == 24
    big = table("big", read_s=2 * TARGET)
    refused = plan([big], settings=DEFAULT, decreases_left={"big": 0})
    assert not refused.boosts and "0 capacity decreases left today" in refused.tables[0].reason
    assert plan([big], settings=DEFAULT, decreases_left={"big": 1}).boosts


def test_a_boost_that_would_not_read_faster_is_refused() -> None:
    s = PlanSettings(table_max_rcu=40_000)
    result = plan([table("t", read_s=2 * TARGET, rcu=39_000)], settings=s)
    assert not result.boosts and "no faster" in result.tables[0].reason


# --- the window and the output ---------------------------------------------------------------


def test_a_window_crossing_midnight() -> None:
    s = PlanSettings(window_start=dt.time(22), window_end=dt.time(5))
    assert s.window_s == 7 * 3600
    data = to_json(plan([table("t", read_s=3600)], settings=s))
    (p,) = data["pipelines"]
    assert p["tables"][0]["starts_at"] == "22:10:00" and p["tables"][0]["ends_at"] == "23:11:00"
    late = to_json(plan([table("t", read_s=6 * 3600)], settings=s))
    assert late["finishes_at"] == "04:11:00"
    assert PlanSettings(window_start=dt.time(3), window_end=dt.time(3)).window_s == 86_400
    with pytest.raises(ValueError, match="too short"):
        PlanSettings(window_start=dt.time(1), window_end=dt.time(1, 10))


def test_to_json_is_plain_data_with_every_reason() -> None:
    tables = [table("a", read_s=60), table("big", read_s=2 * TARGET), on_demand("e", size=0)]
    result: Plan = plan(tables, settings=DEFAULT)
    data = json.loads(json.dumps(to_json(result)))
    assert data["settings"]["window_start"] == "00:00" and data["settings"]["bytes_per_rcu"] == 8192
    rows = {t["table"]: t for p in data["pipelines"] for t in p["tables"]}
    assert rows["big"]["boost"]["new_rcu"] == 300 and rows["a"]["boost"] is None
    assert all(r["reason"] and r["estimate"]["why"] for r in rows.values())
    assert data["skipped"] == [{"table": "e", "reason": "empty: nothing to back up"}]
    assert data["lower_bound"] == 1 and data["decisions"]
