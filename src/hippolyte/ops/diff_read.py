"""diff's two sides read into spills: a backup (each item checked as a restore checks it, and
keyed, in one decode) and the live table (a paced parallel Scan)."""

from __future__ import annotations

import math
import operator
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec
import orjson

from hippolyte.adapters import aws, dynamodb
from hippolyte.core.diff import Key, key_of, key_text
from hippolyte.core.errors import BackupCorrupt, Interrupted
from hippolyte.core.events import Emit, ItemsRead, ReadStarted, Step
from hippolyte.core.model import TableInfo
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
from hippolyte.ops.diff_spill import BATCH, Spill
from hippolyte.repo import datafile

GZIP_RATIO = 10  # a backup's JSON over its gzip when a sample of it cannot tell
SAMPLE_BYTES = 1 << 20  # the gzip ratio is measured on this much of a backup's largest file


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


class Unchecked(Exception):
    """A backup item that formats.base.check_item refuses (its file is read again by
    checked_items, to say where and why)."""


TypeTag = Literal["S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"]
assert frozenset(get_args(TypeTag)) == TYPE_TAGS
_attributes: Callable[[bytes], Any] = msgspec.json.Decoder(
    dict[str, dict[TypeTag, msgspec.Raw]]
).decode
_text = msgspec.json.Decoder(str).decode


class Keys:
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
        Unchecked if it fails there too."""
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
                raise Unchecked(str(exc)) from exc
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


def backup_bytes(source: Source) -> int:
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


def read_backup(
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
    keys = Keys(spec)
    for f in source.files:
        for batch, size in checked_batches(source, f, schema=schema, keys=keys):
            stopped(stop)
            spill.add(batch)
            emit(ItemsRead(table=name, items=len(batch), raw_bytes=size))
    spill.close()
    emit(ItemsRead(table=name, items=0, raw_bytes=0, done=True))


def checked_batches(
    source: Source, f: SourceFile, *, schema: KeySchema, keys: Keys
) -> Iterator[tuple[list[tuple[bytes, bytes]], int]]:
    """(key, item) pairs of one backup file in batches, with their JSON size: what
    ``formats.base.checked_items`` reads and checks (each line, then the file's checksums and
    count), each item's check and key taken from one decode. When anything is amiss, the file
    is read again by ``checked_items`` itself, which says what is wrong as a restore would."""
    for batch in wire_batches(source, f, schema=schema):
        try:
            keyed = keys.checked(batch, schema)
        except (BackupCorrupt, Unchecked, ValueError, msgspec.DecodeError):
            read_again(source, f, schema=schema)
            raise
        yield keyed, sum(map(len, batch))


def wire_batches(source: Source, f: SourceFile, *, schema: KeySchema) -> Iterator[list[bytes]]:
    """One backup file's items (DynamoDB JSON, not yet checked) in batches, then the check of
    the file's checksums and count; a file that cannot be read is read again by
    ``checked_items``, which says what is wrong with it."""
    sums = datafile.Checksums(sha256=bool(f.sha256), md5=bool(f.md5))
    to_wire, items = source.to_wire, 0
    try:
        batch: list[bytes] = []
        for _, line in iter_lines(source, f, on_chunk=sums.update):
            batch.append(to_wire(line))
            if len(batch) == BATCH:
                yield batch
                items, batch = items + len(batch), []
        yield batch
        items += len(batch)
    except (BackupCorrupt, ValueError, msgspec.DecodeError):
        read_again(source, f, schema=schema)
        raise
    if (
        (f.sha256 and sums.sha256 != f.sha256)
        or (f.md5 and sums.md5 != f.md5)
        or (f.item_count is not None and items != f.item_count)
    ):
        read_again(source, f, schema=schema)
        raise BackupCorrupt(f"{f.key}: checksums or count differ from the manifest's")


def read_again(source: Source, f: SourceFile, *, schema: KeySchema) -> None:
    """Read ``f`` as a restore checks it; raises what is wrong with it."""
    for _ in checked_items(source, f, schema=schema):
        pass


def scan(
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
            text=f"scanning {info.name}: {segments} segments, {_budget_text(info, budget, params)}"
        )
    )
    emit(ReadStarted(table=name, expected_items=info.item_count, exact=False))
    client = dynamodb.raw_scan_client(conn, pool=params.workers + 2)
    bucket = TokenBucket(rate=budget)
    keyed = Keys(spec)

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

    try:
        run_all(
            one,
            list(range(segments)),
            workers=params.workers,
            stop=stop,
            name="hippolyte-diff",
            interrupted=f"{info.name}: diff interrupted",
        )
    except Interrupted:
        if stop is not None and stop.is_set():  # SIGTERM: not "T: segment N stopped"
            raise Interrupted(f"{info.name}: diff interrupted") from None
        raise
    spill.close()
    emit(ItemsRead(table=name, items=0, raw_bytes=0, done=True))


def _budget_text(info: TableInfo, budget: float, params: DiffParams) -> str:
    """What the scan may read, as the budget really is: its share of the table's capacity
    (the floor is more than --read-percent of a tiny table), or an on-demand table's budget."""
    if info.on_demand or info.read_capacity <= 0:
        capped = info.max_read_request_units and budget < params.on_demand_read_units
        why = (
            f"{params.read_percent:.0%} of its maximum of {info.max_read_request_units:,}"
            if capped
            else "the configured budget"
        )
        return f"at most {_amount(budget)} read units/s (on demand: {why})"
    share = f"{_amount(100 * budget / info.read_capacity)}% of its capacity"
    if budget > info.read_capacity * params.read_percent:
        return (
            f"at most {_amount(budget)} read units/s ({share}), the least a scan reads: "
            f"--read-percent {params.read_percent:.0%} of {info.read_capacity:,} RCU is less"
        )
    return f"at most {_amount(budget)} read units/s ({share})"


def _amount(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def stopped(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Interrupted("diff interrupted; nothing was written but the diff file")
