"""A table's history: which instants can be restored, from which full backup, and the gaps.
Pure.

A state at time T is the newest full backup that started at or before T plus every change
up to T, so T is restorable when a backup started at or before T and the change sets cover
``[that backup's start, T]`` without a hole. Change sets are windows ``[start, end)``; the
sets of a chain follow each other, one's end being the next one's start (an overlap is
harmless: every change carries the item's whole image). A hole between two sets, or a set
that says its source lost changes before it (``gap_before``: a trimmed stream, a stream
re-created, a failed export window), breaks the chain: the next full backup starts a new
one. Times are integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class FullBackup:
    id: str
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class Window:
    """A committed change set's window; ``gap_before``: why changes before it are missing."""

    id: str
    start: int
    end: int
    gap_before: str | None = None
    gap_detail: str | None = None  # what the source said about it (a shard, an error)
    old_images: bool = True  # NEW_AND_OLD_IMAGES: each change says what the item was before


@dataclass(frozen=True, kw_only=True)
class Gap:
    start: int
    end: int
    cause: str
    detail: str | None = None


@dataclass(frozen=True, kw_only=True)
class Range:
    """Instants ``[start, end)`` restorable from ``backup`` plus ``windows``."""

    backup: str
    start: int
    end: int
    windows: tuple[str, ...]


def covered(windows: Sequence[Window]) -> tuple[list[tuple[int, int, list[Window]]], list[Gap]]:
    """The runs of windows with no hole between them, as (start, end, windows), and the gaps
    between runs with their cause."""
    runs: list[tuple[int, int, list[Window]]] = []
    gaps: list[Gap] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if runs and w.gap_before is None and w.start <= runs[-1][1]:
            start, end, members = runs[-1]
            runs[-1] = (start, max(end, w.end), [*members, w])
            continue
        if runs:
            before = runs[-1][1]
            if w.gap_before is not None:
                gaps.append(
                    Gap(
                        start=min(before, w.start),
                        end=w.start,
                        cause=w.gap_before,
                        detail=w.gap_detail,
                    )
                )
            else:
                gaps.append(Gap(start=before, end=w.start, cause="no change set covers this time"))
        elif w.gap_before is not None:
            gaps.append(Gap(start=w.start, end=w.start, cause=w.gap_before, detail=w.gap_detail))
        runs.append((w.start, w.end, [w]))
    return runs, gaps


def ranges(backups: Sequence[FullBackup], windows: Sequence[Window]) -> list[Range]:
    """For each full backup, the instants it can be brought to: from its start (or, when a
    window lacks old images, from its end: an instant inside a scan needs to know what an
    item was before a change the scan may have seen) to the end of the run of windows that
    covers its start; none when no run does."""
    runs, _ = covered(windows)
    out = []
    for b in sorted(backups, key=lambda b: b.start):
        for start, end, members in runs:
            if start <= b.start < end:
                used = [w for w in members if w.end > b.start]
                first = b.start if all(w.old_images for w in used) else b.end
                if first < end:
                    ids = tuple(w.id for w in used)
                    out.append(Range(backup=b.id, start=first, end=end, windows=ids))
    return out


def plan_for(t: int, backups: Sequence[FullBackup], windows: Sequence[Window]) -> Range | None:
    """The range T is restored from: the newest full backup started at or before T whose
    chain reaches past T; None when T is restorable from none."""
    found = [r for r in ranges(backups, windows) if r.start <= t < r.end]
    return max(found, key=lambda r: r.start) if found else None


def nearest(t: int, backups: Sequence[FullBackup], windows: Sequence[Window]) -> list[int]:
    """The restorable instants nearest to T (the ends of the ranges around it), for a
    message refusing T."""
    spans = ranges(backups, windows)
    before = [r.end - 1 for r in spans if r.end <= t]
    after = [r.start for r in spans if r.start > t]
    return ([max(before)] if before else []) + ([min(after)] if after else [])
