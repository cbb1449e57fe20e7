"""diff's comparison: the two spills, partition by partition, one partition of the first side
held in a dict; the differences in a stable order (by partition, then key)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from hippolyte.core.diff import (
    Key,
    Kind,
    Summary,
    difference_line,
    differing,
    key_json,
    summary_line,
)
from hippolyte.core.errors import BackupCorrupt
from hippolyte.core.model import Json
from hippolyte.ops import diff_spill
from hippolyte.ops.diff_read import DiffParams, stopped
from hippolyte.ops.diff_spill import Spill

Check = Callable[[bytes], None]  # raises BackupCorrupt naming the item's file and line
SPLIT_AT = 2  # a partition over SPLIT_AT x PARTITION_BYTES is split again before comparing
MAX_DIVISOR = 1 << 20  # no split beyond: the 32-bit hash has no digits left to spread keys


@dataclass(frozen=True, kw_only=True)
class Difference:
    kind: Kind
    key: bytes  # DynamoDB JSON of the key attributes
    before: bytes | None
    after: bytes | None
    attributes: list[str]


@dataclass(kw_only=True)
class DiffResult:
    summary: Summary
    first: list[Difference] = field(default_factory=list)  # the first ``limit``, for people

    @property
    def identical(self) -> bool:
        return self.summary.differences == 0


def compare(
    first: Spill,
    second: Spill,
    summary: Summary,
    *,
    spec: Key,
    params: DiffParams,
    out: BinaryIO | None,
    stop: threading.Event | None,
    check: tuple[Check | None, Check | None] = (None, None),
) -> DiffResult:
    """``check``: for each side read from a backup, what checks an item's every value (and,
    when one is bad, names its file and line). Only the items a difference reports are
    checked this deeply here: an identical pair is compared, not validated (restore and
    ``verify`` check every value)."""
    result = DiffResult(summary=summary)
    if out is not None:
        out.write(b"")  # a sink that cannot be written fails before the comparison
    for before, after, p in _partitions(first, second, stop=stop):
        for d in _partition_differences(before, after, p, spec=spec, summary=summary, check=check):
            _checked(d.before, check[0])
            _checked(d.after, check[1])
            summary.count(d.kind, d.attributes)
            if len(result.first) < params.limit:
                result.first.append(d)
            if out is not None:
                out.write(
                    difference_line(
                        d.kind,
                        key=d.key,
                        before=d.before,
                        after=d.after,
                        attributes=d.attributes,
                        keys_only=params.keys_only,
                    )
                )
    if out is not None:
        out.write(summary_line(summary))
        out.flush()
    return result


def _partitions(
    first: Spill, second: Spill, *, stop: threading.Event | None, parent: int = 0
) -> Iterator[tuple[Spill, Spill, int]]:
    """Every partition, as (before side, after side, index), each small enough to hold in
    memory: one over SPLIT_AT x PARTITION_BYTES on either side (its size was underestimated) is
    split again first, unless splitting cannot help (one key, or no hash digits left)."""
    for p in range(len(first.paths)):
        stopped(stop)
        size = max(first.size(p), second.size(p))
        if (
            size <= SPLIT_AT * diff_spill.PARTITION_BYTES
            or size == parent  # the split above left it whole: one key, or one hash
            or first.divisor * len(first.paths) > MAX_DIVISOR
        ):
            yield first, second, p
            continue
        n = min(diff_spill.MAX_PARTITIONS, math.ceil(size / diff_spill.PARTITION_BYTES))
        yield from _partitions(first.split(p, n), second.split(p, n), stop=stop, parent=size)


def _checked(item: bytes | None, check: Check | None) -> None:
    if item is not None and check is not None:
        check(item)


def _partition_differences(
    first: Spill,
    second: Spill,
    p: int,
    *,
    spec: Key,
    summary: Summary,
    check: tuple[Check | None, Check | None],
) -> list[Difference]:
    """The differences of one partition, sorted by key (the output does not depend on the
    order in which pages or files came)."""
    before = dict(first.read(p))
    found: list[tuple[bytes, Difference]] = []
    for key, after in second.read(p):
        old = before.pop(key, None)
        if old is None:
            found.append((key, _difference(Kind.ADDED, spec, None, after, [])))
            continue
        if old == after:  # differing's first test, without the call: most items
            summary.identical += 1
            continue
        try:
            attributes = differing(old, after)
        except ValueError as exc:
            _checked(old, check[0])  # a bad value, named by its file and line where it can be
            _checked(after, check[1])
            where = key_json(orjson.loads(after), spec).decode()
            raise BackupCorrupt(f"item {where}: {exc}") from exc
        if attributes is None:
            summary.identical += 1
        else:
            found.append((key, _difference(Kind.CHANGED, spec, old, after, attributes)))
    for key, old in before.items():
        found.append((key, _difference(Kind.DELETED, spec, old, None, [])))
    found.sort(key=lambda pair: pair[0])
    return [d for _, d in found]


def _difference(
    kind: Kind, spec: Key, before: bytes | None, after: bytes | None, attributes: list[str]
) -> Difference:
    item: Json = orjson.loads(before if before is not None else after or b"{}")
    return Difference(
        kind=kind, key=key_json(item, spec), before=before, after=after, attributes=attributes
    )
