"""``hippolyte diff``: a backup against the live table, or two backups, item by item.

Memory does not grow with the table: each side is spilled into partition files by a hash of
its key (a temporary folder on local disk), then the two sides are compared one partition at a
time, the first side's partition held in a dict. The live side is read with the backup's
paced parallel Scan, so a diff never takes more than ``--read-percent`` of the table's reads.

The temporary folder is removed on success, failure, Ctrl-C and SIGTERM; one left by a killed
process (its name holds the pid) is removed by the next diff.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from hippolyte.adapters import aws, dynamodb
from hippolyte.core.config import Settings
from hippolyte.core.diff import (
    Key,
    Kind,
    Summary,
    difference_line,
    differing,
    key_json,
    key_of,
    partition,
    summary_line,
)
from hippolyte.core.errors import BackupCorrupt, ConfigError, Interrupted
from hippolyte.core.events import Emit, ItemsRead, ReadStarted, Step, discard
from hippolyte.core.model import Json, TableInfo
from hippolyte.core.pacing import TokenBucket, read_budget, segments_for
from hippolyte.engines.pool import run_all
from hippolyte.engines.segment import paced_pages
from hippolyte.formats.base import KeySchema, Source, checked_items
from hippolyte.ops.context import open_backup
from hippolyte.ops.convert import schema_for

PARTITION_BYTES = 16 << 20  # a partition of the first side is held in memory at once
MAX_PARTITIONS = 1024
GZIP_RATIO = 10  # a backup's JSON is ~5-10x its gzip: partitions from the files' sizes
BUFFER_BYTES = 32 << 20  # all partitions' write buffers of one side together
_HEADER = struct.Struct(">II")  # key length, item length
TMP_PREFIX = "hippolyte-diff-"


@dataclass(frozen=True, kw_only=True)
class DiffParams:
    read_percent: float = 0.5
    on_demand_read_units: float = 1000.0
    segments: int | None = None
    workers: int = 4
    page_attempts: int = 8
    keys_only: bool = False
    limit: int = 20  # differences kept for the terminal
    tmp_dir: Path | None = None


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


# -- the entry points -----------------------------------------------------------------------


def diff_refs(
    settings: Settings,
    ref: str,
    ref2: str | None,
    *,
    live: str | None,
    schema_from: str | None,
    key_spec: str | None,
    params: DiffParams,
    out: BinaryIO | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> DiffResult:
    """``hippolyte diff``: REF against REF2, else against the live table ``live`` (by default
    the backup's own). The key comes from the backups, else --schema-from/--key, else (live)
    from the live table."""
    before = open_backup(settings, ref, repo=settings.repository)
    given = schema_for(settings, schema_from=schema_from, key_spec=key_spec, table="diff")
    if ref2 is not None:
        after = open_backup(settings, ref2, repo=settings.repository)
        schema = _schema_of(given, before, after)
        if schema is None:
            raise ConfigError(
                f"neither {before.location} nor {after.location} records its key schema: "
                "pass --key pk:S[,sk:N] or --schema-from TABLE"
            )
        return diff_backups(
            before, after, schema=schema, params=params, out=out, emit=emit, stop=stop
        )
    table = live or _table_name(before)
    return diff_live(
        before,
        conn=settings.effective_targets()[0].connection(),
        table=table,
        schema=_schema_of(given, before),
        params=params,
        out=out,
        emit=emit,
        stop=stop,
    )


def _schema_of(given: Json | None, *sources: Source) -> KeySchema | None:
    if given is not None:
        return KeySchema.from_description(given)
    return next((s for source in sources if (s := source.schema()) is not None), None)


def _table_name(source: Source) -> str:
    name = (source.description or {}).get("TableName")
    if not name:
        raise ConfigError(f"{source.location} does not name its table: pass --live TABLE")
    return str(name)


def diff_backups(
    before: Source,
    after: Source,
    *,
    schema: KeySchema,
    params: DiffParams,
    out: BinaryIO | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> DiffResult:
    """Two backups of any format Hippolyte reads; no AWS call."""
    spec = schema.attributes
    estimate = max(_backup_bytes(before), _backup_bytes(after))
    with _workspace(params.tmp_dir) as folder:
        first, second = _spills(folder, estimate)
        _read_backup(before, first, schema=schema, spec=spec, emit=emit, stop=stop)
        _read_backup(after, second, schema=schema, spec=spec, emit=emit, stop=stop)
        summary = Summary(before=before.location, after=after.location)
        return _compare(first, second, summary, spec=spec, params=params, out=out, stop=stop)


def diff_live(
    before: Source,
    *,
    conn: aws.Connection,
    table: str,
    schema: KeySchema | None,
    params: DiffParams,
    out: BinaryIO | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> DiffResult:
    """A backup against the live table ``table``, read with a paced parallel Scan. Without a
    ``schema``, the live table's key is the key."""
    control = dynamodb.control_client(conn)
    info = dynamodb.describe(control, table)
    if schema is None:
        schema = KeySchema.from_description(info.description)
    _same_key(schema, info, table=table, backup=before.location)
    spec = schema.attributes
    estimate = max(_backup_bytes(before), info.size_bytes)
    with _workspace(params.tmp_dir) as folder:
        first, second = _spills(folder, estimate)
        _read_backup(before, first, schema=schema, spec=spec, emit=emit, stop=stop)
        _scan(conn, info, second, spec=spec, params=params, emit=emit, stop=stop)
        summary = Summary(before=before.location, after=f"live table {table}")
        return _compare(first, second, summary, spec=spec, params=params, out=out, stop=stop)


def _same_key(schema: KeySchema, info: TableInfo, *, table: str, backup: str) -> None:
    live = KeySchema.from_description(info.description)
    if live.attributes == schema.attributes:
        return
    for (name, kind), (live_name, live_kind) in zip(
        (*schema.attributes, ("", "")), (*live.attributes, ("", "")), strict=False
    ):
        if (name, kind) != (live_name, live_kind):
            raise ConfigError(
                f"table {table!r} has another key than {backup}: "
                f"{_describe(live_name, live_kind)} where the backup has {_describe(name, kind)}"
            )


def _describe(name: str, kind: str) -> str:
    return f"{name!r} ({kind})" if name else "nothing"


# -- spilling -------------------------------------------------------------------------------


class Spill:
    """One side's items in ``n`` partition files, by a hash of their key. Thread-safe."""

    def __init__(self, folder: Path, side: str, partitions: int) -> None:
        self.paths = [folder / f"{side}-{i:05d}" for i in range(partitions)]
        self._buffers = [bytearray() for _ in range(partitions)]
        self._flush_at = max(4096, BUFFER_BYTES // partitions)
        self._lock = threading.Lock()
        self.items = 0

    def add(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """(canonical key, item) pairs."""
        n = len(self.paths)
        with self._lock:
            for key, item in entries:
                p = partition(key, n)
                buf = self._buffers[p]
                buf += _HEADER.pack(len(key), len(item))
                buf += key
                buf += item
                self.items += 1
                if len(buf) >= self._flush_at:
                    self._flush(p)

    def close(self) -> None:
        with self._lock:
            for p in range(len(self.paths)):
                self._flush(p)

    def _flush(self, p: int) -> None:
        buf = self._buffers[p]
        if buf:
            with open(self.paths[p], "ab") as f:
                f.write(buf)
            buf.clear()

    def read(self, p: int) -> Iterator[tuple[bytes, bytes]]:
        """The (key, item) pairs of partition ``p``, in the order they came."""
        path = self.paths[p]
        if not path.exists():
            return
        data = path.read_bytes()
        view, at = memoryview(data), 0
        while at < len(data):
            k, n = _HEADER.unpack_from(data, at)
            at += _HEADER.size
            yield bytes(view[at : at + k]), bytes(view[at + k : at + k + n])
            at += k + n


def _spills(folder: Path, estimate: int) -> tuple[Spill, Spill]:
    n = min(MAX_PARTITIONS, max(1, math.ceil(estimate / PARTITION_BYTES)))
    return Spill(folder, "before", n), Spill(folder, "after", n)


def _keyed(items: Iterable[bytes], spec: Key) -> list[tuple[bytes, bytes]]:
    return [(key_of(orjson.loads(item), spec), item) for item in items]


@contextlib.contextmanager
def _workspace(tmp_dir: Path | None) -> Iterator[Path]:
    """A private temporary folder, removed whatever happens; folders of dead diffs go too."""
    base = Path(tmp_dir) if tmp_dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    _sweep(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep(base: Path) -> None:
    """Remove the folders of diffs whose process is gone (killed with SIGKILL)."""
    for path in base.glob(f"{TMP_PREFIX}*"):
        pid = path.name.removeprefix(TMP_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- reading the sides ----------------------------------------------------------------------


def _backup_bytes(source: Source) -> int:
    return sum(source.storage.size(f.key) for f in source.files) * GZIP_RATIO


def _read_backup(
    source: Source,
    spill: Spill,
    *,
    schema: KeySchema,
    spec: Key,
    emit: Emit,
    stop: threading.Event | None,
) -> None:
    name = source.location
    count = source.item_count
    emit(ReadStarted(table=name, expected_items=count or 0, exact=count is not None))
    for f in source.files:
        batch: list[bytes] = []
        size = 0
        for item in checked_items(source, f, schema=schema):
            batch.append(item)
            size += len(item)
            if len(batch) == 1000:
                _stopped(stop)
                spill.add(_keyed(batch, spec))
                emit(ItemsRead(table=name, items=len(batch), raw_bytes=size))
                batch, size = [], 0
        spill.add(_keyed(batch, spec))
        emit(ItemsRead(table=name, items=len(batch), raw_bytes=size))
    spill.close()
    emit(ItemsRead(table=name, items=0, raw_bytes=0, done=True))


def _scan(
    conn: aws.Connection,
    info: TableInfo,
    spill: Spill,
    *,
    spec: Key,
    params: DiffParams,
    emit: Emit,
    stop: threading.Event | None,
) -> None:
    name = f"live {info.name}"
    budget = read_budget(
        on_demand=info.on_demand,
        read_capacity=info.read_capacity,
        read_percent=params.read_percent,
        on_demand_units=params.on_demand_read_units,
        max_read_request_units=info.max_read_request_units,
    )
    segments = segments_for(
        size_bytes=info.size_bytes, workers=params.workers, override=params.segments
    )
    emit(
        Step(
            text=f"scanning {info.name}: {segments} segments, at most {budget:,.0f} "
            f"read units/s ({params.read_percent:.0%} of its capacity)"
        )
    )
    emit(ReadStarted(table=name, expected_items=info.item_count, exact=False))
    client = dynamodb.raw_scan_client(conn, pool=params.workers + 2)
    bucket = TokenBucket(rate=budget)

    def one(segment: int, group_stop: threading.Event) -> None:
        for page in paced_pages(
            client=client,
            table=info.name,
            segment=segment,
            total_segments=segments,
            bucket=bucket,
            stop=group_stop,
            page_attempts=params.page_attempts,
        ):
            spill.add(_keyed(page.items, spec))
            emit(ItemsRead(table=name, items=len(page.items), raw_bytes=sum(map(len, page.items))))

    run_all(
        one,
        list(range(segments)),
        workers=params.workers,
        stop=stop,
        name="hippolyte-diff",
        interrupted=f"{info.name}: diff interrupted",
    )
    spill.close()
    emit(ItemsRead(table=name, items=0, raw_bytes=0, done=True))


def _stopped(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Interrupted("diff interrupted; nothing was written but the diff file")


# -- comparing ------------------------------------------------------------------------------


def _compare(
    first: Spill,
    second: Spill,
    summary: Summary,
    *,
    spec: Key,
    params: DiffParams,
    out: BinaryIO | None,
    stop: threading.Event | None,
) -> DiffResult:
    summary.before_items, summary.after_items = first.items, second.items
    result = DiffResult(summary=summary)
    if out is not None:
        out.write(b"")  # a sink that cannot be written fails before the comparison
    for p in range(len(first.paths)):
        _stopped(stop)
        for d in _partition_differences(first, second, p, spec=spec, summary=summary):
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


def _partition_differences(
    first: Spill, second: Spill, p: int, *, spec: Key, summary: Summary
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
        try:
            attributes = differing(old, after)
        except ValueError as exc:
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
