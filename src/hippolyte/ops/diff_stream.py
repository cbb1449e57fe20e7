"""Two backups read together, matched as they stream: what matches is never spilled.

Two backups of one table written by the same tool list their items in the same order (the same
segments, each in the table's own order), so most items meet their twin at the head of the
other side, byte for byte: such a pair is identical, and only the first side's copy needs the
check a restore makes (the twin has the same bytes). When the heads differ, a key met on one
side is held until the other side shows it (a deletion, an addition or a change shifts one side
a few items against the other); what waits too long, and every pair that is not byte for byte
the same, goes to the spill, where ``diff_compare`` decides as it does for any two sides.
Every key is thus either matched identical here, or spilled on both sides that hold it: the
result is exactly that of spilling everything. Sides in another order (e.g. backups taken with
other segment counts) are noticed early, and the rest is spilled as it comes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

import msgspec

from hippolyte.core.diff import Key
from hippolyte.core.errors import BackupCorrupt
from hippolyte.core.events import Emit, ItemsRead, ReadStarted
from hippolyte.formats.base import KeySchema, Source, SourceFile
from hippolyte.ops.diff_read import Keys, Unchecked, read_again, stopped, wire_batches
from hippolyte.ops.diff_spill import Spill

HELD_BYTES = 8 << 20  # items of one side waiting for their twin, at most
GIVE_UP_AFTER = 20_000  # items held then spilled before the sides count as in another order


class _Side:
    """One backup's items, a batch at a time, counted and reported."""

    def __init__(self, source: Source, *, schema: KeySchema, emit: Emit) -> None:
        self.source, self.schema, self.emit = source, schema, emit
        self.file: SourceFile | None = None
        self.items = 0
        self._batches = self._read()
        count = source.item_count
        emit(ReadStarted(table=source.location, expected_items=count or 0, exact=count is not None))

    def _read(self) -> Iterator[list[bytes]]:
        for f in self.source.files:
            self.file = f
            yield from wire_batches(self.source, f, schema=self.schema)

    def next(self) -> list[bytes] | None:
        """The next batch (never empty), or None at the end."""
        for batch in self._batches:
            if batch:
                self.items += len(batch)
                size = sum(map(len, batch))
                self.emit(ItemsRead(table=self.source.location, items=len(batch), raw_bytes=size))
                return batch
        self.emit(ItemsRead(table=self.source.location, items=0, raw_bytes=0, done=True))
        return None

    def checked(self, keys: Keys, items: list[bytes]) -> list[tuple[bytes, bytes]]:
        """``items``' keys, each item checked; what fails is named as a restore names it."""
        try:
            return keys.checked(items, self.schema)
        except (BackupCorrupt, Unchecked, ValueError, msgspec.DecodeError):
            assert self.file is not None
            read_again(self.source, self.file, schema=self.schema)
            raise


class _Held:
    """Items of one side waiting for their twin, oldest first, at most HELD_BYTES of them."""

    def __init__(self, spill: Spill) -> None:
        self.spill = spill
        self.items: OrderedDict[bytes, bytes] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def pop(self, key: bytes) -> bytes | None:
        item = self.items.pop(key, None)
        if item is not None:
            self.bytes -= len(item)
        return item

    def hold(self, key: bytes, item: bytes) -> None:
        self.items[key] = item
        self.bytes += len(item)
        if self.bytes > HELD_BYTES:
            out = []
            while self.bytes > HELD_BYTES // 2:
                old_key, old = self.items.popitem(last=False)
                self.bytes -= len(old)
                out.append((old_key, old))
            self.evicted += len(out)
            self.spill.add(out)

    def flush(self) -> None:
        self.spill.add(list(self.items.items()))
        self.items.clear()
        self.bytes = 0


def stream_backups(
    before: Source,
    after: Source,
    first: Spill,
    second: Spill,
    *,
    schema: KeySchema,
    spec: Key,
    emit: Emit,
    stop: threading.Event | None,
) -> tuple[int, int, int]:
    """Both backups read together: pairs the same byte for byte counted, the rest spilled
    (``first`` the before side, ``second`` the after side). Returns (items before, items
    after, identical pairs)."""
    keys = Keys(spec)
    a_side = _Side(before, schema=schema, emit=emit)
    b_side = _Side(after, schema=schema, emit=emit)
    held_a, held_b = _Held(first), _Held(second)
    identical = 0
    a: list[tuple[bytes, bytes]] = []
    b: list[bytes] = []
    i = j = 0
    b_key: bytes | None = None  # the key of b[j], once needed
    to_first: list[tuple[bytes, bytes]] = []
    to_second: list[tuple[bytes, bytes]] = []
    while True:
        if i == len(a):
            stopped(stop)
            first.add(to_first)
            to_first = []
            batch = a_side.next()
            if batch is None:
                break
            a, i = a_side.checked(keys, batch), 0
            if held_a.evicted + held_b.evicted > GIVE_UP_AFTER:
                break  # another order: the rest is spilled as it comes
        if j == len(b):
            second.add(to_second)
            to_second = []
            b_batch = b_side.next()
            if b_batch is None:
                break
            b, j, b_key = b_batch, 0, None
        key, item = a[i]
        other = b[j]
        if item == other:  # the usual case: the same item at both heads
            identical += 1
            i += 1
            j += 1
            b_key = None
            continue
        if b_key is None:
            ((b_key, _),) = b_side.checked(keys, [other])
        if key == b_key:  # changed, or spelled another way: compared from the spill
            to_first.append((key, item))
            to_second.append((key, other))
            i += 1
            j += 1
            b_key = None
        elif (twin := held_b.pop(key)) is not None:  # the after side was ahead
            if twin == item:
                identical += 1
            else:
                to_first.append((key, item))
                to_second.append((key, twin))
            i += 1
        elif (twin := held_a.pop(b_key)) is not None:  # the before side was ahead
            if twin == other:
                identical += 1
            else:
                to_first.append((b_key, twin))
                to_second.append((b_key, other))
            j += 1
            b_key = None
        else:
            held_a.hold(key, item)
            held_b.hold(b_key, other)
            i += 1
            j += 1
            b_key = None
    first.add(to_first)
    second.add(to_second)
    first.add(a[i:])
    second.add(b_side.checked(keys, b[j:]))
    held_a.flush()
    held_b.flush()
    _spill_rest(a_side, first, keys=keys, stop=stop)
    _spill_rest(b_side, second, keys=keys, stop=stop)
    first.close()
    second.close()
    return a_side.items, b_side.items, identical


def _spill_rest(side: _Side, spill: Spill, *, keys: Keys, stop: threading.Event | None) -> None:
    while (batch := side.next()) is not None:
        stopped(stop)
        spill.add(side.checked(keys, batch))
