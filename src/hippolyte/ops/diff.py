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
import functools
import math
import mmap
import operator
import os
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, get_args

import msgspec
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
    key_text,
    partitions_of,
    summary_line,
)
from hippolyte.core.errors import BackupCorrupt, ConfigError, Interrupted
from hippolyte.core.events import Emit, ItemsRead, ReadStarted, Step, discard
from hippolyte.core.model import Json, TableInfo
from hippolyte.core.pacing import TokenBucket, read_budget, segments_for
from hippolyte.engines.pool import run_all
from hippolyte.engines.segment import paced_pages
from hippolyte.formats.base import (
    TYPE_TAGS,
    KeySchema,
    Source,
    SourceFile,
    check_item,
    checked_items,
    iter_lines,
)
from hippolyte.ops.context import open_backup
from hippolyte.ops.convert import schema_for
from hippolyte.repo import datafile

PARTITION_BYTES = 16 << 20  # a partition of the first side is held in memory at once
MAX_PARTITIONS = 1024
GZIP_RATIO = 10  # a backup's JSON over its gzip when a sample of it cannot tell
OVERLAP_MIN_BYTES = 64 << 20  # a backup this large is read while the live table is scanned
SAMPLE_BYTES = 1 << 20  # the gzip ratio is measured on this much of a backup's largest file
BUFFER_BYTES = 32 << 20  # all partitions' write buffers of one side together
_IOV_MAX = 1024  # buffers per writev (Linux's IOV_MAX)
SPLIT_AT = 2  # a partition over SPLIT_AT x PARTITION_BYTES is split again before comparing
MAX_DIVISOR = 1 << 20  # no split beyond: the 32-bit hash has no digits left to spread keys
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
    backup_bytes = _backup_bytes(before)
    with _workspace(params.tmp_dir) as folder:
        first, second = _spills(folder, max(backup_bytes, info.size_bytes))
        read = functools.partial(_read_backup, before, first, schema=schema, spec=spec, emit=emit)
        scan = functools.partial(_scan, conn, info, second, spec=spec, params=params, emit=emit)
        if backup_bytes < OVERLAP_MIN_BYTES:
            read(stop=stop)
            scan(stop=stop)
        else:  # the backup is read (CPU) while the table is scanned (waiting on the server)
            run_all(
                lambda side, group_stop: side(stop=group_stop),
                [read, scan],
                workers=2,
                stop=stop,
                name="hippolyte-diff-side",
                interrupted=f"{table}: diff interrupted",
            )
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
    """One side's items in ``n`` partition files, by a hash of their key. Thread-safe.
    ``divisor``: a partition split again (``split``) is partitioned by the hash's next digits
    (``hash // divisor mod n``), so its keys spread over the new files."""

    def __init__(self, folder: Path, side: str, partitions: int, *, divisor: int = 1) -> None:
        self.folder, self.side, self.divisor = folder, side, divisor
        self.paths = [folder / f"{side}-{i:05d}" for i in range(partitions)]
        # each partition's records not yet written, and their size: a list of the pieces, not
        # a bytearray (growing one copies each item ~8 times over)
        self._pending: list[list[bytes]] = [[] for _ in range(partitions)]
        self._sizes = [0] * partitions
        self._flush_at = max(4096, BUFFER_BYTES // partitions)
        self._lock = threading.Lock()
        self.items = 0

    def add(self, entries: list[tuple[bytes, bytes]]) -> None:
        """(canonical key, item) pairs."""
        places = partitions_of((key for key, _ in entries), len(self.paths), divisor=self.divisor)
        pending, sizes, flush_at, pack = self._pending, self._sizes, self._flush_at, _HEADER.pack
        with self._lock:
            self.items += len(entries)
            for p, (key, item) in zip(places, entries, strict=True):
                pending[p] += (pack(len(key), len(item)), key, item)
                size = sizes[p] = sizes[p] + _HEADER.size + len(key) + len(item)
                if size >= flush_at:
                    self._flush(p)

    def close(self) -> None:
        with self._lock:
            for p in range(len(self.paths)):
                self._flush(p)

    def _flush(self, p: int) -> None:
        pieces = self._pending[p]
        if pieces:
            fd = os.open(self.paths[p], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                for at in range(0, len(pieces), _IOV_MAX):  # no copy of the pieces into one
                    _write_all(fd, pieces[at : at + _IOV_MAX])
            finally:
                os.close(fd)
            pieces.clear()
            self._sizes[p] = 0

    def size(self, p: int) -> int:
        path = self.paths[p]
        return path.stat().st_size if path.exists() else 0

    def read(self, p: int) -> Iterator[tuple[bytes, bytes]]:
        """The (key, item) pairs of partition ``p``, in the order they came (the file is
        mapped, not read: each item is copied once, straight from the page cache)."""
        path = self.paths[p]
        size = self.size(p)
        if not size:
            return
        head, unpack = _HEADER.size, _HEADER.unpack_from
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = 0
            while at < size:
                k, n = unpack(data, at)
                at += head
                yield data[at : at + k], data[at + k : at + k + n]
                at += k + n

    def split(self, p: int, partitions: int) -> Spill:
        """Partition ``p`` spread over ``partitions`` new files (then removed)."""
        sub = Spill(
            self.folder, f"{self.side}.{p}", partitions, divisor=self.divisor * len(self.paths)
        )
        batch: list[tuple[bytes, bytes]] = []
        for entry in self.read(p):
            batch.append(entry)
            if len(batch) == BATCH:
                sub.add(batch)
                batch.clear()
        sub.add(batch)
        sub.close()
        self.paths[p].unlink(missing_ok=True)
        return sub


def _write_all(fd: int, pieces: list[bytes]) -> None:
    left = sum(map(len, pieces))
    while left:
        done = os.writev(fd, pieces)
        left -= done
        if left:  # a short write (rare on local disks): the rest, in one
            pieces = [b"".join(pieces)[done:]]


def _spills(folder: Path, estimate: int) -> tuple[Spill, Spill]:
    n = min(MAX_PARTITIONS, max(1, math.ceil(estimate / PARTITION_BYTES)))
    return Spill(folder, "before", n), Spill(folder, "after", n)


class _Unchecked(Exception):
    """A backup item that formats.base.check_item refuses (its file is read again by
    checked_items, to say where and why)."""


TypeTag = Literal["S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"]
assert frozenset(get_args(TypeTag)) == TYPE_TAGS
_attributes: Callable[[bytes], Any] = msgspec.json.Decoder(
    dict[str, dict[TypeTag, msgspec.Raw]]
).decode
_text = msgspec.json.Decoder(str).decode
BATCH = 1000  # items keyed and spilled at a time


class _Keys:
    """``core.diff.key_of`` of items' bytes, decoding only their key attributes (the rest of
    an item is skipped, not built: ~4x cheaper than parsing it). An item the shortcut cannot
    read goes through ``key_of`` itself, which says what is wrong with it."""

    def __init__(self, spec: Key) -> None:
        self.spec = spec
        fields = [(f"a{i}", dict[str, str]) for i in range(len(spec))]
        names = {f"a{i}": name for i, (name, _) in enumerate(spec)}
        shape = msgspec.defstruct("KeyAttributes", fields, rename=names)
        self._decode = msgspec.json.Decoder(shape).decode
        self._get = [(operator.attrgetter(f"a{i}"), kind) for i, (_, kind) in enumerate(spec)]

    def checked(self, items: list[bytes], schema: KeySchema) -> list[tuple[bytes, bytes]]:
        """The keys of a backup's items, each item checked as ``formats.base.check_item``
        does (every attribute one known type tag, the key's attributes of the schema's types)
        in the same decode. An item that fails is checked by ``check_item`` itself: raises
        _Unchecked if it fails there too."""
        encode, spec = msgspec.json.encode, self.spec
        keyed = []
        for item in items:
            try:
                attrs = _attributes(item)  # type tags checked by the decoder
                values = attrs.values()
                if sum(map(len, values)) == len(attrs) and 0 not in map(len, values):
                    key = encode([key_text(kind, _text(attrs[name][kind])) for name, kind in spec])
                    keyed.append((key, item))
                    continue
            except (msgspec.DecodeError, KeyError, ValueError):
                pass
            try:
                check_item(item, schema)
            except (ValueError, msgspec.DecodeError) as exc:
                raise _Unchecked(str(exc)) from exc
            keyed.append((key_of(orjson.loads(item), spec), item))
        return keyed

    def __call__(self, items: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
        # msgspec's JSON of a list of str is orjson's, byte for byte (escapes included); and
        # unlike orjson's, its output is cheap to keep by the million (orjson allocates ~1 KiB
        # per call, which then costs ~2 us per kept key)
        decode, get, encode = self._decode, self._get, msgspec.json.encode
        keyed = []
        for item in items:
            try:
                attrs = decode(item)
                key = encode([key_text(kind, field(attrs)[kind]) for field, kind in get])
            except (msgspec.DecodeError, KeyError, ValueError):
                key = key_of(orjson.loads(item), self.spec)
            keyed.append((key, item))
        return keyed


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
    """A backup's JSON size, estimated: its files' size x the gzip ratio of the first MiB of
    the largest one. (A fixed ratio would be off by 5x either way: random binary gzips ~2x, a
    table of repeated text 50x; too many partitions cost CPU, too few memory.)"""
    sizes = [source.storage.size(f.key) for f in source.files]
    if not sizes:
        return 0
    largest = source.files[sizes.index(max(sizes))]
    return math.ceil(sum(sizes) * _gzip_ratio(source, largest))


def _gzip_ratio(source: Source, f: SourceFile) -> float:
    with source.storage.open_read(f.key) as src:
        sample = src.read(SAMPLE_BYTES)
    if sample[:2] != datafile.GZIP_MAGIC:
        return 1.0
    inflate, data, size = zlib.decompressobj(31), sample, 0
    try:
        while data:  # a step at a time: 1 MiB of a file that gzips 60x is 60 MiB of text
            size += len(inflate.decompress(data, SAMPLE_BYTES))
            data = inflate.unconsumed_tail
    except zlib.error:
        return GZIP_RATIO  # the reading proper says what is wrong with the file
    return max(1.0, size / len(sample)) if size else GZIP_RATIO


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
    keys = _Keys(spec)
    for f in source.files:
        for batch, size in _checked_batches(source, f, schema=schema, keys=keys):
            _stopped(stop)
            spill.add(batch)
            emit(ItemsRead(table=name, items=len(batch), raw_bytes=size))
    spill.close()
    emit(ItemsRead(table=name, items=0, raw_bytes=0, done=True))


def _checked_batches(
    source: Source, f: SourceFile, *, schema: KeySchema, keys: _Keys
) -> Iterator[tuple[list[tuple[bytes, bytes]], int]]:
    """(key, item) pairs of one backup file in batches, with their JSON size: what
    ``formats.base.checked_items`` reads and checks (each line, then the file's checksums and
    count), each item's check and key taken from one decode. When anything is amiss, the file
    is read again by ``checked_items`` itself, which says what is wrong as a restore would."""
    sums = datafile.Checksums(sha256=bool(f.sha256), md5=bool(f.md5))
    to_wire, items = source.to_wire, 0
    try:
        batch: list[bytes] = []
        for _, line in iter_lines(source, f, on_chunk=sums.update):
            batch.append(to_wire(line))
            if len(batch) == BATCH:
                yield keys.checked(batch, schema), sum(map(len, batch))
                items, batch = items + len(batch), []
        yield keys.checked(batch, schema), sum(map(len, batch))
        items += len(batch)
    except (BackupCorrupt, _Unchecked, ValueError, msgspec.DecodeError):
        _read_again(source, f, schema=schema)
        raise
    if (
        (f.sha256 and sums.sha256 != f.sha256)
        or (f.md5 and sums.md5 != f.md5)
        or (f.item_count is not None and items != f.item_count)
    ):
        _read_again(source, f, schema=schema)
        raise BackupCorrupt(f"{f.key}: checksums or count differ from the manifest's")


def _read_again(source: Source, f: SourceFile, *, schema: KeySchema) -> None:
    """Read ``f`` as a restore checks it; raises what is wrong with it."""
    for _ in checked_items(source, f, schema=schema):
        pass


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
    keyed = _Keys(spec)

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
            spill.add(keyed(page.items))
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
    for before, after, p in _partitions(first, second, stop=stop):
        for d in _partition_differences(before, after, p, spec=spec, summary=summary):
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
    memory: one over SPLIT_AT x PARTITION_BYTES on either side (its size was underestimated)
    is split again first, unless splitting cannot help (one key, or no hash digits left)."""
    for p in range(len(first.paths)):
        _stopped(stop)
        size = max(first.size(p), second.size(p))
        if (
            size <= SPLIT_AT * PARTITION_BYTES
            or size == parent  # the split above left it whole: one key, or one hash
            or first.divisor * len(first.paths) > MAX_DIVISOR
        ):
            yield first, second, p
            continue
        n = min(MAX_PARTITIONS, math.ceil(size / PARTITION_BYTES))
        yield from _partitions(first.split(p, n), second.split(p, n), stop=stop, parent=size)


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
        if old == after:  # differing's first test, without the call: most items
            summary.identical += 1
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
