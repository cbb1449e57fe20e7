"""forget's decision (core.retention): each keep rule against hand-computed expectations, the
change sets that follow the full backups, and the properties the issue asks for (newest
complete backup kept, idempotent, monotone, a kept range keeps its change sets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippolyte.core.chain import Window
from hippolyte.core.retention import NO_RULE, Backup, Decision, Duration, KeepPolicy, decide

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def us(text: str) -> int:
    return (at(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def backup(when: str, *, table: str = "t", complete: bool = True) -> Backup:
    return Backup(table, when, at(when), complete)


def daily(first: str, last: str, hour: int = 2) -> list[Backup]:
    day, end = at(first), at(last)
    out = []
    while day <= end:
        t = day.replace(hour=hour)
        out.append(Backup("t", t.date().isoformat(), t, True))
        day += timedelta(days=1)
    return out


def kept(backups: list[Backup], policy: KeepPolicy, **kw: object) -> set[str]:
    decision = decide(backups, None, policy, now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]
    return {e.id for e in decision.kept()}


# --- the rules, by hand -------------------------------------------------------------------

YEAR = daily("2025-12-01", "2026-11-29")  # 364 days; 2026-11-29 is a Sunday (ISO week 48)
LAST_OF_MONTH = {
    "2025-12-31", "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31",
    "2026-06-30", "2026-07-31", "2026-08-31", "2026-09-30", "2026-10-31", "2026-11-29",
}  # fmt: skip
LAST_7 = {f"2026-11-{d}" for d in range(23, 30)}
SUNDAYS_4 = {"2026-11-29", "2026-11-22", "2026-11-15", "2026-11-08"}

CASES = [
    ("last 3", YEAR, KeepPolicy(keep_last=3), {"2026-11-27", "2026-11-28", "2026-11-29"}),
    ("daily 7", YEAR, KeepPolicy(keep_daily=7), LAST_7),
    ("weekly 4", YEAR, KeepPolicy(keep_weekly=4), SUNDAYS_4),
    ("monthly 12", YEAR, KeepPolicy(keep_monthly=12), LAST_OF_MONTH),
    ("yearly 5: only two years", YEAR, KeepPolicy(keep_yearly=5), {"2025-12-31", "2026-11-29"}),
    (
        "GFS: daily 7, weekly 4, monthly 12",
        YEAR,
        KeepPolicy(keep_daily=7, keep_weekly=4, keep_monthly=12),
        LAST_7 | SUNDAYS_4 | LAST_OF_MONTH,
    ),
    (
        "within 3d of the newest backup (strictly younger)",
        YEAR,
        KeepPolicy(keep_within="3d"),
        {"2026-11-27", "2026-11-28", "2026-11-29"},
    ),
    (
        "within 1m: from October 29 02:00, exclusive",
        YEAR,
        KeepPolicy(keep_within="1m"),
        {f"2026-10-{d}" for d in (30, 31)} | {f"2026-11-{d:02d}" for d in range(1, 30)},
    ),
    (
        "hourly 3 over backups every 20 minutes: the newest of each hour",
        [backup(f"2026-11-29T{h:02d}:{m:02d}:00") for h in (9, 10, 11) for m in (0, 20, 40)],
        KeepPolicy(keep_hourly=3),
        {"2026-11-29T09:40:00", "2026-11-29T10:40:00", "2026-11-29T11:40:00"},
    ),
    (
        "daily buckets are UTC days: 23:30 and 00:30 are two days",
        [backup("2026-11-27T23:30:00"), backup("2026-11-28T00:30:00"), backup("2026-11-28T08:00")],
        KeepPolicy(keep_daily=2),
        {"2026-11-27T23:30:00", "2026-11-28T08:00"},
    ),
    (
        "ISO weeks: Sunday and the next Monday are two weeks; a year's end inside a week",
        [backup("2025-12-28T10:00"), backup("2025-12-29T10:00"), backup("2026-01-02T10:00")],
        KeepPolicy(keep_weekly=5),
        {"2025-12-28T10:00", "2026-01-02T10:00"},
    ),
    (
        "a bucket with a gap: weekly counts buckets, not calendar weeks",
        [backup("2026-09-01T10:00"), backup("2026-10-01T10:00"), backup("2026-11-01T10:00")],
        KeepPolicy(keep_weekly=2),
        {"2026-10-01T10:00", "2026-11-01T10:00"},
    ),
]


@pytest.mark.parametrize(("backups", "policy", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_rule_keeps_what_was_computed_by_hand(
    backups: list[Backup], policy: KeepPolicy, expected: set[str]
) -> None:
    assert kept(backups, policy) == expected


def test_reasons_name_every_rule_that_keeps_a_backup() -> None:
    policy = KeepPolicy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=12,
                        keep_yearly=2, keep_within="7d")  # fmt: skip
    decision = decide(YEAR, None, policy, now=NOW)
    why = {e.id: e.reasons for e in decision.entries}
    assert why["2026-11-29"] == (
        "newest complete backup",
        "last 3",
        "daily snapshot for 2026-11-29",
        "weekly snapshot for 2026-W48",
        "monthly snapshot for 2026-11",
        "yearly snapshot for 2026",
        "within 7d",
    )
    assert why["2026-11-22"] == ("weekly snapshot for 2026-W47",)
    assert why["2025-12-31"] == ("monthly snapshot for 2025-12", "yearly snapshot for 2025")
    assert why["2026-06-01"] == ("no keep rule keeps it",)
    assert [e.action for e in decision.entries if e.id == "2026-06-01"] == ["remove"]


def test_entries_are_in_a_stable_order_whatever_the_input_order() -> None:
    policy = KeepPolicy(keep_daily=3)
    mixed = [b._replace(table=f"t{i % 3}") for i, b in enumerate(YEAR[-30:])]
    one = decide(mixed, None, policy, now=NOW)
    other = decide(list(reversed(mixed)), None, policy, now=NOW)
    assert one == other
    assert [e.table for e in one.entries] == sorted(e.table for e in one.entries)
    t0 = [e.id for e in one.entries if e.table == "t0"]
    assert t0 == sorted(t0)  # oldest first


def test_newest_complete_backup_is_kept_whatever_the_rules() -> None:
    backups = [backup("2020-01-01T00:00"), backup("2026-11-29T11:00", complete=False)]
    decision = decide(backups, None, KeepPolicy(keep_within="1h"), now=NOW)
    assert {e.id: (e.action, e.reasons) for e in decision.entries} == {
        "2020-01-01T00:00": ("keep", ("newest complete backup", "within 1h")),
        "2026-11-29T11:00": ("keep", ("incomplete, may still be written",)),
    }


def test_tables_are_decided_apart() -> None:
    backups = [backup("2026-11-01T00:00", table="a"), backup("2026-11-02T00:00", table="a"),
               backup("2026-10-01T00:00", table="b")]  # fmt: skip
    decision = decide(backups, None, KeepPolicy(keep_last=1), now=NOW)
    assert [(e.table, e.id, e.action) for e in decision.entries] == [
        ("a", "2026-11-01T00:00", "remove"),
        ("a", "2026-11-02T00:00", "keep"),
        ("b", "2026-10-01T00:00", "keep"),
    ]


def test_incomplete_backups_go_after_incomplete_after() -> None:
    backups = [
        backup("2026-11-20T00:00"),
        backup("2026-11-27T11:59", complete=False),  # 48h01 before NOW
        backup("2026-11-27T12:00", complete=False),  # exactly 48h: not older than it
        backup("2026-11-29T11:00", complete=False),
    ]
    decision = decide(backups, None, KeepPolicy(keep_last=1), now=NOW)
    assert [(e.action, e.reasons) for e in decision.entries] == [
        ("keep", ("newest complete backup", "last 1")),
        ("remove", ("incomplete for more than 48h",)),
        ("keep", ("incomplete, may still be written",)),
        ("keep", ("incomplete, may still be written",)),
    ]
    later = decide(backups, None, KeepPolicy(keep_last=1), now=NOW,
                   incomplete_after=timedelta(hours=6))  # fmt: skip
    assert [e.action for e in later.entries] == ["keep", "remove", "remove", "keep"]
    assert later.entries[1].reasons == ("incomplete for more than 6h",)


def test_incomplete_backups_are_outside_the_rules() -> None:
    backups = [backup("2026-11-28T00:00"), backup("2026-11-29T00:00", complete=False)]
    decision = decide(backups, None, KeepPolicy(keep_last=1), now=NOW)
    assert decision.entries[0].reasons == ("newest complete backup", "last 1")


def test_to_json_has_the_issue_shape() -> None:
    decision = decide([backup("2026-11-28T00:00")], None, KeepPolicy(keep_last=1), now=NOW)
    assert decision.to_json() == {
        "entries": [
            {
                "table": "t",
                "kind": "backup",
                "id": "2026-11-28T00:00",
                "action": "keep",
                "reasons": ["newest complete backup", "last 1"],
            }
        ],
        "lost": [],
    }


# --- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [{}, {"keep_last": 0}, {"keep_daily": 0, "keep_within": "0d"}, {"keep_within": "0h0d"}],
)
def test_no_rule_is_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ValueError) as e:
        KeepPolicy(**policy)  # type: ignore[arg-type]
    assert str(e.value) == NO_RULE


@pytest.mark.parametrize(
    ("text", "named"),
    [("7x", "'x'"), ("3days", "'days'"), ("1y2q", "'q'"), ("5", "without a unit"),
     ("", "invalid duration"), ("d", "invalid duration"), ("-3d", "invalid duration")],
)  # fmt: skip
def test_bad_durations_are_named(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        KeepPolicy(keep_within=text)


@pytest.mark.parametrize(
    ("field", "value"), [("keep_last", -1), ("keep_daily", 1.5), ("keep_weekly", True)]
)
def test_bad_counts_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        KeepPolicy(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "start", "limit"),
    [
        ("7d", "2026-11-29T10:00", "2026-11-22T10:00"),
        ("36h", "2026-11-29T10:00", "2026-11-27T22:00"),
        ("2w", "2026-11-29T10:00", "2026-11-15T10:00"),
        ("1y2m", "2026-11-29T10:00", "2025-09-29T10:00"),
        ("1m", "2026-03-31T10:00", "2026-02-28T10:00"),  # the day clamped to February
        ("1y", "2028-02-29T10:00", "2027-02-28T10:00"),
        ("1m1d", "2026-01-15T00:00", "2025-12-14T00:00"),
    ],
)
def test_durations_count_on_the_calendar(text: str, start: str, limit: str) -> None:
    assert Duration.parse(text).before(at(start)) == at(limit)


# --- change sets --------------------------------------------------------------------------


def win(wid: str, start: str, end: str, gap: str | None = None) -> Window:
    return Window(id=wid, start=us(start), end=us(end), gap_before=gap)


def test_change_sets_follow_the_kept_backups_and_a_removed_backup_loses_its_range() -> None:
    backups = [backup("2026-10-31T00:00"), backup("2026-11-10T00:00"), backup("2026-11-20T00:00")]
    windows = {
        "t": [
            win("c1", "2026-10-31T00:00", "2026-11-05T00:00"),
            win("c2", "2026-11-05T00:00", "2026-11-11T00:00"),
            # the stream was trimmed: changes before the 11th are missing from c3 on
            win("c3", "2026-11-11T00:00", "2026-11-12T00:00", gap="stream trimmed"),
            win("c4", "2026-11-11T00:00", "2026-11-25T00:00"),
        ]
    }
    monthly = decide(backups, windows, KeepPolicy(keep_monthly=2), now=NOW)
    changes = {e.id: (e.action, e.reasons) for e in monthly.entries if e.kind == "changes"}
    assert changes == {
        "c1": ("keep", ("used by backup 2026-10-31T00:00's range",)),
        "c2": ("keep", ("used by backup 2026-10-31T00:00's range",)),
        # c4 starts where c2 ends: without c3 the two chains would join across the gap
        "c3": ("keep", ("marks the gap before change set c4",)),
        "c4": ("keep", ("used by backup 2026-11-20T00:00's range",)),
    }
    assert monthly.lost == []  # the 10th's range [10th, 11th) is inside the 31st's

    last = decide(backups, windows, KeepPolicy(keep_last=1), now=NOW)
    assert [e.action for e in last.entries if e.kind == "changes"] == [
        "remove", "remove", "remove", "keep",
    ]  # fmt: skip
    assert [r.to_json() for r in last.lost] == [
        {
            "table": "t",
            "backup": "2026-10-31T00:00",
            "from": "2026-10-31T00:00:00+00:00",
            "to": "2026-11-11T00:00:00+00:00",
        },
        {
            "table": "t",
            "backup": "2026-11-10T00:00",
            "from": "2026-11-10T00:00:00+00:00",
            "to": "2026-11-11T00:00:00+00:00",
        },
    ]


def test_a_range_covered_by_an_older_kept_backup_is_not_lost() -> None:
    backups = [backup("2026-11-01T00:00"), backup("2026-11-10T00:00"), backup("2026-11-20T00:00")]
    windows = {"t": [win("c1", "2026-11-01T00:00", "2026-11-25T00:00")]}
    policy = KeepPolicy(keep_monthly=1, keep_yearly=1)  # both keep the 20th
    decision = decide(backups, windows, policy, now=NOW)
    # the 1st and the 10th go: the 20th's range starts on the 20th, so [1st, 20th) is lost,
    # reported once per removed backup for what no kept range covers
    assert [(r.backup, r.start, r.end) for r in decision.lost] == [
        ("2026-11-01T00:00", at("2026-11-01T00:00"), at("2026-11-20T00:00")),
        ("2026-11-10T00:00", at("2026-11-10T00:00"), at("2026-11-20T00:00")),
    ]
    # an older kept backup whose chain runs on covers what a removed one could restore
    backups = [backup("2025-12-15T00:00"), backup("2026-06-01T00:00"), backup("2026-11-10T00:00")]
    windows = {"t": [win("c1", "2025-12-01T00:00", "2026-11-25T00:00")]}
    decision = decide(backups, windows, KeepPolicy(keep_yearly=2), now=NOW)
    assert [e.action for e in decision.entries] == ["keep", "remove", "keep", "keep"]
    assert decision.lost == []


def test_an_incomplete_backup_still_written_keeps_the_change_sets_after_its_start() -> None:
    backups = [backup("2026-11-01T00:00"), backup("2026-11-28T00:00", complete=False)]
    windows = {"t": [win("c1", "2026-11-20T00:00", "2026-11-29T00:00", gap="stream re-created")]}
    decision = decide(backups, windows, KeepPolicy(keep_last=1), now=NOW)
    assert decision.entries[-1].reasons == ("used by incomplete backup 2026-11-28T00:00's range",)


# --- properties ---------------------------------------------------------------------------

HOUR_US = 3_600_000_000
BASE = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Backup], dict[str, list[Window]]]:
    """Up to two tables of backups at random hours over ~2 years, a few incomplete, and for
    table "a" a chain of change sets with holes and recorded gaps."""
    backups = []
    for table in draw(st.sampled_from([["a"], ["a", "b"]])):
        hours = draw(st.lists(st.integers(0, 24 * 800), min_size=0, max_size=25, unique=True))
        for h in hours:
            t = BASE + timedelta(hours=h)
            complete = draw(st.booleans()) or draw(st.booleans())
            backups.append(Backup(table, f"{table}-{h}", t, complete))
    windows = []
    at_h = 0
    for i in range(draw(st.integers(0, 12))):
        at_h = max(0, at_h + draw(st.sampled_from([0, 0, 0, 5, -30])))  # a hole, an overlap
        length = draw(st.integers(1, 24 * 120))
        gap = draw(st.sampled_from([None, None, None, "trimmed"]))
        base_us = (BASE - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        start = base_us + at_h * HOUR_US
        images = draw(st.sampled_from([True, True, True, False]))
        windows.append(Window(id=f"c{i}", start=start, end=start + length * HOUR_US,
                              gap_before=gap, old_images=images))  # fmt: skip
        at_h += length
    return backups, {"a": windows}


policies = st.builds(
    KeepPolicy,
    keep_last=st.none() | st.integers(0, 5),
    keep_hourly=st.none() | st.integers(0, 5),
    keep_daily=st.none() | st.integers(0, 8),
    keep_weekly=st.none() | st.integers(0, 5),
    keep_monthly=st.none() | st.integers(0, 13),
    keep_yearly=st.none() | st.integers(0, 3),
    keep_within=st.sampled_from(["1d", "2w", "36h", "1m", "1y2m"]),  # never an empty policy
)
PROP_NOW = BASE + timedelta(days=795)  # some incomplete backups are still young


def _ids(decision: Decision, action: str, kind: str) -> set[tuple[str, str]]:
    return {(e.table, e.id) for e in decision.entries if e.kind == kind and e.action == action}


@settings(max_examples=200, deadline=None)
@given(histories(), policies)
def test_the_newest_complete_backup_of_each_table_is_kept(
    history: tuple[list[Backup], dict[str, list[Window]]], policy: KeepPolicy
) -> None:
    backups, windows = history
    kept_ids = _ids(decide(backups, windows, policy, now=PROP_NOW), "keep", "backup")
    for table in {b.table for b in backups}:
        done = [b for b in backups if b.table == table and b.complete]
        if done:
            newest = max(done, key=lambda b: b.start)
            assert (table, newest.id) in kept_ids


@settings(max_examples=200, deadline=None)
@given(histories(), policies)
def test_deciding_again_over_what_was_kept_removes_nothing(
    history: tuple[list[Backup], dict[str, list[Window]]], policy: KeepPolicy
) -> None:
    backups, windows = history
    first = decide(backups, windows, policy, now=PROP_NOW)
    kept_backups = _ids(first, "keep", "backup")
    kept_changes = {wid for _, wid in _ids(first, "keep", "changes")}
    left = [b for b in backups if (b.table, b.id) in kept_backups]
    left_windows = {t: [w for w in ws if w.id in kept_changes] for t, ws in windows.items()}
    again = decide(left, left_windows, policy, now=PROP_NOW)
    assert _ids(again, "remove", "backup") == set()
    assert _ids(again, "remove", "changes") == set()
    assert again.lost == []


@settings(max_examples=200, deadline=None)
@given(histories(), policies, st.sampled_from(["keep_last", "keep_hourly", "keep_daily",
       "keep_weekly", "keep_monthly", "keep_yearly"]), st.integers(1, 4))  # fmt: skip
def test_more_keep_rules_never_remove_more(
    history: tuple[list[Backup], dict[str, list[Window]]], policy: KeepPolicy, rule: str, more: int
) -> None:
    backups, windows = history
    before = _ids(decide(backups, windows, policy, now=PROP_NOW), "keep", "backup")
    raised = KeepPolicy(**{**policy.__dict__, rule: (getattr(policy, rule) or 0) + more})
    after = _ids(decide(backups, windows, raised, now=PROP_NOW), "keep", "backup")
    assert before <= after


@settings(max_examples=200, deadline=None)
@given(histories(), policies)
def test_every_kept_range_keeps_its_change_sets(
    history: tuple[list[Backup], dict[str, list[Window]]], policy: KeepPolicy
) -> None:
    from hippolyte.core.chain import FullBackup, ranges

    backups, windows = history
    decision = decide(backups, windows, policy, now=PROP_NOW)
    kept_backups = {wid for _, wid in _ids(decision, "keep", "backup")}
    kept_changes = {wid for _, wid in _ids(decision, "keep", "changes")}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    fulls = [
        FullBackup(id=b.id, start=(b.start - epoch) // timedelta(microseconds=1),
                   end=(b.start - epoch) // timedelta(microseconds=1))
        for b in backups if b.table == "a" and b.complete and b.id in kept_backups
    ]  # fmt: skip
    before = ranges(fulls, windows["a"])
    for r in before:
        assert set(r.windows) <= kept_changes
    # and the kept change sets alone give the kept backups the same ranges
    left = [w for w in windows["a"] if w.id in kept_changes]
    assert ranges(fulls, left) == before
