"""What `hippolyte forget` keeps and removes, and why. Pure: a decision over a listing.

restic's `forget` is the model. Each bucket rule (hourly, daily, weekly, monthly, yearly)
walks a table's complete backups newest first and keeps the newest backup of each distinct
bucket until N buckets are used; ``keep_last N`` keeps the N newest; ``keep_within D`` keeps
every backup that started less than D before the table's newest complete backup (restic's
reference point: the newest snapshot, not the clock, so a table whose backups stopped is not
emptied by time passing). A backup is kept when any rule keeps it, and says every reason.
Buckets are UTC calendar units of the backup's start: the hour, the day, the ISO week
(Monday to Sunday), the month, the year.

Whatever the rules say, the newest complete backup of each table is kept. Incomplete backups
(no ``_SUCCESS``) are outside the rules: removed once older than ``incomplete_after`` before
``now``, else left to the run that may still be writing them.

Change sets follow the full backups (core.chain): a change set is kept when the restorable
range of a kept full backup uses it (or the range an incomplete, still written backup will
have); a removed full backup's range is reported as lost, minus what kept ranges cover.
"""

from __future__ import annotations

import gc
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import compress, groupby
from operator import attrgetter, not_
from typing import Any, NamedTuple

from hippolyte.core.chain import FullBackup, Window, ranges

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

NO_RULE = "no keep rule: forget would remove everything; give at least one --keep-* option"
NEWEST = "newest complete backup"
NOT_KEPT = "no keep rule keeps it"
YOUNG = "incomplete, may still be written"
UNUSED = "no kept backup's range uses it"


# ---------------------------------------------------------------------------------------
# The policy


@dataclass(frozen=True, kw_only=True)
class Duration:
    """A calendar duration as restic writes it: ``1y2m``, ``2w``, ``7d``, ``36h``."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Duration:
        spec = text.strip()
        parts = re.findall(r"(\d+)([A-Za-z]*)", spec)
        if not spec or "".join(n + u for n, u in parts) != spec:
            raise ValueError(f"invalid duration {text!r}: expected e.g. 7d, 36h, 2w, 1y2m")
        units = {"y": "years", "m": "months", "w": "weeks", "d": "days", "h": "hours"}
        values: dict[str, int] = {}
        for number, unit in parts:
            if unit not in units:
                what = f"unknown unit {unit!r}" if unit else "a number without a unit"
                raise ValueError(f"invalid duration {text!r}: {what}; use y, m, w, d or h")
            name = units[unit]
            values[name] = values.get(name, 0) + int(number)
        return cls(text=spec, **values)

    @property
    def zero(self) -> bool:
        return not (self.years or self.months or self.weeks or self.days or self.hours)

    def before(self, t: datetime) -> datetime:
        """T minus this duration; years and months on the calendar (the day clamped to the
        month's length: one month before March 31 is February 28 or 29)."""
        month0 = t.year * 12 + t.month - 1 - self.years * 12 - self.months
        year, month = divmod(month0, 12)
        last = _month_days(year, month + 1)
        moved = t.replace(year=year, month=month + 1, day=min(t.day, last))
        return moved - timedelta(weeks=self.weeks, days=self.days, hours=self.hours)

    def __str__(self) -> str:
        return self.text


def _month_days(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def _count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class KeepPolicy:
    """restic's keep rules. ``keep_within`` accepts a duration's text (``"7d"``)."""

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: Duration | str | None = None

    def __post_init__(self) -> None:
        for name in RULES:
            _count(name, getattr(self, name))
        if isinstance(self.keep_within, str):
            object.__setattr__(self, "keep_within", Duration.parse(self.keep_within))
        counts = [getattr(self, name) for name in RULES]
        if not any(counts) and (self.within is None or self.within.zero):
            raise ValueError(NO_RULE)

    @property
    def within(self) -> Duration | None:
        """``keep_within`` as parsed (a text is parsed on construction)."""
        w = self.keep_within
        return w if isinstance(w, Duration) else None


RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


# ---------------------------------------------------------------------------------------
# Inputs and the decision


class Backup(NamedTuple):
    """One backup of the listing. ``start``: timezone-aware (its id's time); ``end``: when
    its scan ended, needed only for change sets without old images (default: ``start``)."""

    table: str
    id: str
    start: datetime
    complete: bool
    end: datetime | None = None


class Entry(NamedTuple):
    table: str
    kind: str  # "backup" | "changes"
    id: str
    action: str  # "keep" | "remove"
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "kind": self.kind,
            "id": self.id,
            "action": self.action,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, kw_only=True)
class LostRange:
    """Instants ``[start, end)`` no longer restorable once ``backup`` is removed."""

    table: str
    backup: str
    start: datetime
    end: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "backup": self.backup,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class Decision:
    """Every backup and change set considered, per table (tables by name; within a table,
    backups oldest first, then change sets oldest first), and the ranges lost."""

    entries: list[Entry] = field(default_factory=list)
    lost: list[LostRange] = field(default_factory=list)

    def kept(self, kind: str = "backup") -> list[Entry]:
        return [e for e in self.entries if e.kind == kind and e.action == "keep"]

    def removed(self, kind: str = "backup") -> list[Entry]:
        return [e for e in self.entries if e.kind == kind and e.action == "remove"]

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": [e.to_json() for e in self.entries],
            "lost": [r.to_json() for r in self.lost],
        }


# ---------------------------------------------------------------------------------------
# Buckets: the first instant of the bucket holding T, and its name in a reason


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _week(t: datetime) -> datetime:
    return _day(t) - timedelta(days=t.weekday())


def _month(t: datetime) -> datetime:
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _year(t: datetime) -> datetime:
    return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _iso_week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


Bucket = tuple[str, str, Callable[[datetime], datetime], Callable[[datetime], str]]
BUCKETS: tuple[Bucket, ...] = (
    (
        "keep_hourly",
        "hourly",
        _hour,
        lambda t: f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:00",
    ),
    ("keep_daily", "daily", _day, lambda t: f"{t.year:04d}-{t.month:02d}-{t.day:02d}"),
    ("keep_weekly", "weekly", _week, _iso_week),
    ("keep_monthly", "monthly", _month, lambda t: f"{t.year:04d}-{t.month:02d}"),
    ("keep_yearly", "yearly", _year, lambda t: str(t.year)),
)


# ---------------------------------------------------------------------------------------
# The decision


def decide(
    backups: Iterable[Backup],
    windows: Mapping[str, Sequence[Window]] | None,
    policy: KeepPolicy,
    *,
    now: datetime,
    incomplete_after: timedelta = timedelta(hours=48),
) -> Decision:
    """Apply ``policy`` to each table of ``backups`` (grouped by table) and its change
    ``windows`` (by table). Pure; the same listing gives the same decision."""
    now = _utc(now)
    windows = windows or {}
    decision = Decision()
    with _collector_paused():
        by_table = {
            table: list(group) for table, group in groupby(sorted(backups, key=_TABLE), key=_TABLE)
        }
        for table in sorted(by_table.keys() | windows.keys()):
            _decide_table(
                table,
                by_table.get(table, []),
                windows.get(table, ()),
                policy,
                stale=now - incomplete_after,
                stale_reason=f"incomplete for more than {_hours(incomplete_after)}",
                out=decision,
            )
    return decision


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The decision allocates an entry per backup (millions) and no cycle: left on, the
    cyclic collector would rescan the growing heap again and again (4x the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_ORDER = attrgetter("start", "id")
_TABLE = attrgetter("table")
_ID = attrgetter("id")
_ZONE = attrgetter("start.tzinfo")
_COMPLETE = attrgetter("complete")
_NOT_KEPT = (NOT_KEPT,)
_new = tuple.__new__


def _decide_table(
    table: str,
    group: list[Backup],
    windows: Sequence[Window],
    policy: KeepPolicy,
    *,
    stale: datetime,
    stale_reason: str,
    out: Decision,
) -> None:
    """Every backup starts as removed (one shared reason); the few kept ones and the
    incomplete ones are then written over it: the cost per backup is one tuple."""
    if set(map(_ZONE, group)) - {UTC}:
        group = [b._replace(start=_utc(b.start)) for b in group]
    group.sort(key=_ORDER)
    flags = list(map(_COMPLETE, group))
    complete = list(compress(group, flags))
    why = _keep_complete(complete, policy)
    entries = [_new(Entry, (table, "backup", b, "remove", _NOT_KEPT)) for b in map(_ID, group)]
    young = []
    kept = (YOUNG,)
    stale_reasons = (stale_reason,)
    for i in compress(range(len(group)), map(not_, flags)):
        b = group[i]
        if b.start >= stale:
            young.append(b)
            entries[i] = Entry(table, "backup", b.id, "keep", kept)
        else:
            entries[i] = Entry(table, "backup", b.id, "remove", stale_reasons)
    if why:
        position = dict(zip(map(_ID, group), range(len(group)), strict=True))
        for key, reasons in why.items():
            entries[position[key]] = Entry(table, "backup", key, "keep", tuple(reasons))
    out.entries.extend(entries)
    if windows:
        _decide_changes(table, complete, young, why, windows, out)


def _keep_complete(complete: list[Backup], policy: KeepPolicy) -> dict[str, list[str]]:
    """The reasons each kept complete backup (oldest first) is kept, by id. A bucket rule
    jumps from a kept backup to the newest one before its bucket's first instant (a binary
    search), so its cost is the number of buckets kept, not of backups."""
    why: dict[str, list[str]] = {}
    if not complete:
        return why
    n = len(complete)

    def keep(i: int, reason: str) -> None:
        key = complete[i].id
        reasons = why.get(key)
        if reasons is None:
            why[key] = [reason]
        else:
            reasons.append(reason)

    keep(n - 1, NEWEST)
    if policy.keep_last:
        reason = f"last {policy.keep_last}"
        for i in range(n - 1, max(n - 1 - policy.keep_last, -1), -1):
            keep(i, reason)
    starts = [b.start for b in complete]
    for name, label, floor, show in BUCKETS:
        count = getattr(policy, name)
        i = n - 1
        while count and i >= 0:
            t = starts[i]
            keep(i, f"{label} snapshot for {show(t)}")
            count -= 1
            i = bisect_left(starts, floor(t), 0, i) - 1
    within = policy.within
    if within is not None and not within.zero:
        reason = f"within {within}"
        limit = within.before(starts[-1])
        for i in range(bisect_left(starts, limit), n):
            if starts[i] > limit:
                keep(i, reason)
    return why


def _decide_changes(
    table: str,
    complete: list[Backup],
    young: list[Backup],
    why: dict[str, list[str]],
    windows: Sequence[Window],
    out: Decision,
) -> None:
    fulls = [_full(b) for b in complete]
    kept = [f for f in fulls if f.id in why]
    kept_ranges = ranges(kept, windows)
    used: dict[str, list[str]] = {}
    for r in kept_ranges:
        for wid in r.windows:
            used.setdefault(wid, []).append(f"used by backup {r.backup}'s range")
    for r in ranges([_full(b) for b in young], windows):
        for wid in r.windows:
            used.setdefault(wid, []).append(f"used by incomplete backup {r.backup}'s range")
    _keep_gap_marks(windows, used)
    for w in sorted(windows, key=lambda w: (w.start, w.end, w.id)):
        reasons = used.get(w.id)
        if reasons:
            out.entries.append(Entry(table, "changes", w.id, "keep", tuple(reasons)))
        else:
            out.entries.append(Entry(table, "changes", w.id, "remove", (UNUSED,)))
    spans = sorted((r.start, r.end) for r in kept_ranges)
    removed = [f for f in fulls if f.id not in why]
    for r in ranges(removed, windows):
        for start, end in _minus(r.start, r.end, spans):
            out.lost.append(LostRange(table=table, backup=r.backup, start=_dt(start), end=_dt(end)))


def _keep_gap_marks(windows: Sequence[Window], used: dict[str, list[str]]) -> None:
    """A change set that records a gap (``gap_before``) is kept when, without it, the kept
    sets on either side would touch and so join into one chain across the gap."""
    reach: int | None = None  # the end of the kept sets so far
    mark: Window | None = None  # the last gap recorded since the last kept set
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if w.id not in used:
            if w.gap_before is not None:
                mark = w
            continue
        if mark is not None and reach is not None and w.start <= reach:
            used[mark.id] = [f"marks the gap before change set {w.id}"]
        mark = None
        reach = w.end if reach is None else max(reach, w.end)


def _minus(start: int, end: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` minus the union of ``spans`` (sorted)."""
    out = []
    at = start
    for s, e in spans:
        if e <= at or s >= end:
            continue
        if s > at:
            out.append((at, s))
        at = max(at, e)
        if at >= end:
            break
    if at < end:
        out.append((at, end))
    return out


def _full(b: Backup) -> FullBackup:
    start = _us(b.start)
    return FullBackup(id=b.id, start=start, end=_us(b.end) if b.end is not None else start)


def _us(t: datetime) -> int:
    return (_utc(t) - EPOCH) // ONE_US


def _dt(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"a naive time {t.isoformat()}: give times with their zone (UTC)")
    return t if t.tzinfo is UTC else t.astimezone(UTC)


def _hours(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min" if seconds % 60 == 0 else f"{seconds}s"
