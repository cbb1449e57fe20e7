"""A table as it was at any instant its history covers: a full backup plus its change sets,
computed into a backup of our format (a temporary folder) that restore, diff and recover
read like any other (``TABLE@2026-11-28T14:03:07Z``).

Each key's state at T (docs/design.md, "Any point in time"): the last change at or before T
(its new image, or absent for a delete); else, when a later change says what the item was
before it (NEW_AND_OLD_IMAGES), that old image (absent for an insert) — which is what makes an
instant in the middle of a scan exact, the scan having read some items after T; else the full
backup's item. Changes are taken in the order they happened (their position in the chain:
stamps may tie, DynamoDB Local's are per minute). Memory does not grow with the table: the
backup and the changes are spilled by a hash of the key (``ops.diff_spill``), then settled one
partition at a time.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import struct
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.chain import FullBackup, Range, Window, covered, nearest, plan_for, ranges
from hippolyte.core.diff import Key
from hippolyte.core.errors import BackupNotFound, ConfigError
from hippolyte.core.events import Emit, Step, discard
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.engines.segment import FILE_MAX_RAW_BYTES, DataFileWriter
from hippolyte.formats.base import KeySchema, Source
from hippolyte.formats.open import open_source
from hippolyte.ops.diff_read import Keys, backup_bytes, checked_batches
from hippolyte.ops.diff_spill import MAX_PARTITIONS, PARTITION_BYTES, Spill
from hippolyte.repo import catalog, changes, manifest, writer

_CHANGE = struct.Struct(">cqI")  # b"C", stamp, length of the new image (0: none)
_BACKUP = b"B"
_NONE = 0xFFFFFFFF
_UNSET = object()


@dataclass(frozen=True, kw_only=True)
class PointInTime:
    table: str
    at: dt.datetime
    backup: str | None = None  # a given full backup id to start from


def parse_at(text: str) -> dt.datetime:
    """An instant as the user gives it: ISO 8601, with a zone (Z or +hh:mm)."""
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: give ISO 8601 with its zone, e.g. 2026-11-28T14:03:07Z"
        ) from None
    if at.tzinfo is None:
        raise ConfigError(f"{text!r} has no time zone: add Z for UTC (2026-11-28T14:03:07Z)")
    return at.astimezone(dt.UTC)


def split_ref(ref: str) -> tuple[str, dt.datetime] | None:
    """``TABLE@TIME`` or ``TABLE/BACKUP_ID@TIME`` -> (the part before, TIME); else None."""
    head, sep, tail = ref.rpartition("@")
    if not sep or not head or not tail[:1].isdigit():
        return None
    return head, parse_at(tail)


def history(
    storage: Storage, table: str, *, complete: Mapping[str, bool] | None = None
) -> tuple[list[FullBackup], list[Window]]:
    """The full backups (complete ones, of our format) and change windows of ``table``;
    ``complete``: its backups' completeness, when already listed (``catalog.completeness``)."""
    backups, sets = _history(storage, table, complete=complete)
    return backups, [_window(c) for c in sets]


def _history(
    storage: Storage, table: str, *, complete: Mapping[str, bool] | None = None
) -> tuple[list[FullBackup], list[changes.ChangeSet]]:
    if complete is None:
        complete = catalog.completeness(storage, table)
    backups = []
    for bid in sorted(b for b, done in complete.items() if done):
        ref = BackupRef(repo=storage.url, table=table, backup_id=bid)
        try:
            facts = catalog.load_descriptor(storage, ref)["backup"]
        except BackupNotFound:
            continue  # a Data Pipeline folder: no times of its own
        backups.append(
            FullBackup(
                id=ref.backup_id,
                start=changes.micros(dt.datetime.fromisoformat(facts["startTime"])),
                end=changes.micros(dt.datetime.fromisoformat(facts["endTime"])),
            )
        )
    return backups, changes.change_sets(storage, table)


def _window(c: changes.ChangeSet) -> Window:
    return Window(
        id=c.id,
        start=c.start,
        end=c.end,
        gap_before=_cause(c.source.get("gapBefore")),
        gap_detail=_detail(c.source.get("gapBefore")),
        old_images=c.view == "NEW_AND_OLD_IMAGES",
    )


def history_report(
    storage: Storage, table: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """What ``list TABLE`` shows of a table's history: the instants it can be restored to
    (per full backup with an unbroken chain), every gap with its cause, and how far behind
    the newest change set is."""
    backups, windows = history(storage, table)
    runs, gaps = covered(windows)
    now = now or dt.datetime.now(dt.UTC)
    newest = max((w.end for w in windows), default=None)

    def iso(value: int) -> str:
        return manifest.iso(changes.from_micros(value))

    return {
        "table": table,
        "fullBackups": len(backups),
        "changeSets": len(windows),
        "ranges": [
            {
                "from": iso(r.start),
                "to": iso(r.end),
                "backup": r.backup,
                "changeSets": len(r.windows),
            }
            for r in ranges(backups, windows)
        ],
        "gaps": [
            {"from": iso(g.start), "to": iso(g.end), "cause": g.cause, "detail": g.detail}
            for g in gaps
        ],
        "changesUntil": iso(newest) if newest is not None else None,
        "lagSeconds": round((changes.micros(now) - newest) / 1e6, 1) if newest else None,
    }


def _cause(gap: Any) -> str | None:
    """A change set's ``gapBefore``: a cause, or a document holding one (and its detail)."""
    if gap is None or isinstance(gap, str):
        return gap
    if isinstance(gap, dict):
        return str(gap.get("cause", "changes were lost"))
    return str(gap)


def _detail(gap: Any) -> str | None:
    return str(gap["detail"]) if isinstance(gap, dict) and gap.get("detail") else None


def materialize(
    storage: Storage,
    point: PointInTime,
    *,
    tmp_dir: Path | None = None,
    emit: Emit = discard,
) -> Source:
    """``point.table`` as it was at ``point.at``, as a backup of our format in a temporary
    folder removed when the returned Source is no longer used (or at exit)."""
    t = changes.micros(point.at)
    backups, change_sets = _history(storage, point.table)  # each manifest read once
    windows = [_window(c) for c in change_sets]
    if point.backup is not None:
        backups = [b for b in backups if b.id == point.backup]
        if not backups:
            raise BackupNotFound(
                f"no complete backup {point.table}/{point.backup} in {storage.url}"
            )
    found = plan_for(t, backups, windows)
    if found is None:
        raise ConfigError(_refusal(point, t, backups, windows))
    base = BackupRef(repo=storage.url, table=point.table, backup_id=found.backup)
    source = open_source(storage, base.prefix, location=f"{storage.url}/{base}")
    if source.description is None:
        raise ConfigError(f"{base} records no table description to restore it as of a time")
    spec = KeySchema.from_description(source.description).attributes
    sets = {c.id: c for c in change_sets}
    used = [sets[w] for w in found.windows]
    emit(
        Step(
            text=f"{point.table} as of {manifest.iso(point.at)}: backup {found.backup} and "
            f"{len(used)} change sets ({sum(c.count for c in used):,} changes)"
        )
    )
    folder = Path(tempfile.mkdtemp(prefix="hippolyte-at-", dir=tmp_dir))
    try:
        out = _compute(
            storage, source, used, spec=spec, t=t, folder=folder, point=point, found=found
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(out, shutil.rmtree, folder, True)
    return out


def _refusal(point: PointInTime, t: int, backups: list[FullBackup], windows: list[Window]) -> str:
    when = manifest.iso(point.at)
    near = [manifest.iso(changes.from_micros(n)) for n in nearest(t, backups, windows)]
    if not backups:
        why = "it has no complete full backup to start from"
    elif not windows:
        why = "it has no change sets (run `hippolyte capture` or `backup --incremental`)"
    else:
        why = "no full backup with an unbroken chain of changes reaches that instant"
    hint = f"; nearest restorable: {' or '.join(near)}" if near else ""
    return (
        f"{point.table}@{when} cannot be restored: {why}{hint} (see `hippolyte list {point.table}`)"
    )


def _compute(
    storage: Storage,
    source: Source,
    used: list[changes.ChangeSet],
    *,
    spec: Key,
    t: int,
    folder: Path,
    point: PointInTime,
    found: Range,
) -> Source:
    change_bytes = sum(f.raw_bytes for c in used for f in c.files)
    n = min(
        MAX_PARTITIONS, max(1, math.ceil((backup_bytes(source) + change_bytes) / PARTITION_BYTES))
    )
    spill_dir = folder / "spill"
    spill_dir.mkdir()
    spill = Spill(spill_dir, "state", n)
    schema = KeySchema(attributes=spec)
    keys = Keys(spec)
    for f in source.files:  # each file checked as diff reads a backup (one decode an item)
        for keyed, _ in checked_batches(source, f, schema=schema, keys=keys):
            spill.add([(key, _BACKUP + item) for key, item in keyed])
    old_images = all(c.view == "NEW_AND_OLD_IMAGES" for c in used)
    for c in used:
        pending: list[changes.Change] = []
        for change in changes.read_changes(storage, c):
            pending.append(change)
            if len(pending) == 1000:
                spill.add(_keyed(keys, pending))
                pending = []
        spill.add(_keyed(keys, pending))
    spill.close()
    out_storage = open_storage(str(folder / "repo"))
    ref = BackupRef(repo=out_storage.url, table=point.table, backup_id=manifest.backup_id(point.at))
    files, seq, current = (
        [],
        0,
        DataFileWriter(out_storage, prefix=ref.prefix, key=manifest.data_key(0, 0)),
    )
    for p in range(n):
        items = list(_settle(spill.read(p), t=t, old_images=old_images))
        current.write_items(items)
        if current.raw_bytes >= FILE_MAX_RAW_BYTES:
            files.append(current.commit())
            seq += 1
            current = DataFileWriter(out_storage, prefix=ref.prefix, key=manifest.data_key(0, seq))
        spill.paths[p].unlink(missing_ok=True)
    files.append(current.commit())
    info = TableInfo.from_description(source.description or {})
    writer.commit(
        out_storage,
        ref=ref,
        info=info,
        extras=dict(source.extras),
        files=files,
        start=point.at,
        end=point.at,
        run={
            "pointInTime": manifest.iso(point.at),
            "backup": found.backup,
            "changeSets": list(found.windows),
        },
        consumed=0.0,
        source={"kind": "point-in-time", "backup": found.backup, "changeSets": list(found.windows)},
        consistency=f"the state at {manifest.iso(point.at)}: a full backup plus its change sets",
    )
    shutil.rmtree(spill_dir, ignore_errors=True)
    location = f"{storage.url}/{point.table}@{manifest.iso(point.at)}"
    return open_source(out_storage, ref.prefix, location=location)


def _keyed(keys: Keys, batch: list[changes.Change]) -> list[tuple[bytes, bytes]]:
    keyed = keys([c.keys for c in batch])
    return [(key, _record(c)) for (key, _), c in zip(keyed, batch, strict=True)]


def _record(change: changes.Change) -> bytes:
    new = change.new or b""
    size = len(new) if change.new is not None else _NONE
    return _CHANGE.pack(b"C", change.stamp, size) + new + (change.old or b"")


def _settle(records: Iterator[tuple[bytes, bytes]], *, t: int, old_images: bool) -> Iterator[bytes]:
    """Each key's item at T from its records, in the order they were spilled (the backup's
    item, then its changes as they happened)."""
    state: dict[bytes, list[object]] = {}  # key -> [backup, at or before T, after T]
    unset = _UNSET  # no change on that side of T (None is a change: a delete)
    for key, record in records:
        entry = state.setdefault(key, [None, unset, unset])
        if record[:1] == _BACKUP:
            entry[0] = bytes(record[1:])
            continue
        _, stamp, size = _CHANGE.unpack_from(record)
        body = record[_CHANGE.size :]
        new = None if size == _NONE else bytes(body[:size])
        if stamp <= t:
            entry[1] = new  # the last change at or before T wins
        elif entry[2] is unset:
            rest = bytes(body[0 if size == _NONE else size :])
            entry[2] = rest or None  # the first change after T: what the item was before it
    for backup, before, after in state.values():
        if before is not unset:
            item = before
        elif after is not unset and old_images:
            item = after
        else:
            item = backup
        if isinstance(item, bytes):
            yield item
