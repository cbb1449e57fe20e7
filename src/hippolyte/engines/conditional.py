"""Writing into a live table the application is using: conditional PutItem and DeleteItem
that never overwrite a change they did not see, paced by the table's write budget and
retried (``ConditionalWriter``); strongly consistent reads of chosen keys (``LiveReader``) and
partitions (``query``).

A write whose condition fails is not an error: the item is read again and the outcome says
what happened. Already as wanted: a resumed run, or someone else did it. Unchanged, yet
refused: the server cannot compare a map or a list (dynalite), so the write is sent again
with the condition on every leaf. Changed: skipped with both versions, unless ``force``,
which saves the version it is about to replace (``repo.recoveries.save_forced``) and
replaces it only if it is still that one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from hippolyte.adapters import aws, dynamodb_items
from hippolyte.adapters.storage import Storage
from hippolyte.core.diff import Key, key_of
from hippolyte.core.errors import Interrupted
from hippolyte.core.events import Emit, ItemsWritten
from hippolyte.core.model import TableInfo
from hippolyte.core.pacing import TokenBucket, write_units
from hippolyte.core.recovery import (
    Action,
    Condition,
    Outcome,
    Skipped,
    Tally,
    Uncheckable,
    condition_for,
    needed,
)
from hippolyte.core.retry import retrying
from hippolyte.repo import recoveries

FORCE_ATTEMPTS = 5  # a --force write retried against a key that keeps changing


@dataclass(frozen=True, kw_only=True)
class LiveTable:
    """The table a recovery writes into: where it is, what DescribeTable said, its key."""

    conn: aws.Connection
    info: TableInfo
    spec: Key
    where: str = ""  # the endpoint and the table's ARN: which table, whatever the spelling

    @property
    def table(self) -> str:
        return self.info.name


@dataclass(frozen=True, kw_only=True)
class WriteSettings:
    write_rate: float  # write units per second
    read_rate: float  # read units per second
    workers: int = 4
    max_attempts: int = 8
    version_attribute: str | None = None
    force: bool = False


class ConditionalWriter:
    """Conditional writes, paced by the table's write budget, retried, never blind."""

    def __init__(
        self,
        storage: Storage,
        rid: str,
        *,
        live: LiveTable,
        settings: WriteSettings,
        stop: threading.Event,
    ) -> None:
        self.storage, self.rid, self.live, self.params, self.stop = (
            storage,
            rid,
            live,
            settings,
            stop,
        )
        self.client = dynamodb_items.item_client(live.conn, pool=settings.workers + 2)
        self.bucket = TokenBucket(rate=settings.write_rate)
        self.reader = LiveReader(
            live,
            rate=settings.read_rate,
            max_attempts=settings.max_attempts,
            stop=stop,
            client=self.client,
        )
        self._forced = 0
        self._lock = threading.Lock()
        self._leaves = False  # the server cannot compare maps and lists: compare their leaves

    def close(self) -> None:
        self.client.close()

    def apply(self, batch: list[Action], *, n: int, emit: Emit) -> Tally:
        """Each action of one actions file; the file's keys are read again first (strongly
        consistent), so an item changed since the recovery's first read is not written."""
        current = self.reader.read(key_of(orjson.loads(a.key), self.live.spec) for a in batch)
        tally = Tally()
        with ThreadPoolExecutor(max_workers=self.params.workers) as pool:
            results = pool.map(
                lambda a: self._one(a, current.get(key_of(orjson.loads(a.key), self.live.spec)), n),
                batch,
            )
            for outcome, skipped, forced in results:
                tally.add(outcome)
                tally.forced += forced
                if skipped is not None:
                    tally.skipped.append(skipped)
        emit(
            ItemsWritten(
                table=f"recover {self.live.table}", items=len(batch), raw_bytes=0, consumed=0.0
            )
        )
        return tally

    def _one(self, a: Action, current: bytes | None, n: int) -> _Result:
        if self.stop.is_set():
            raise Interrupted("recover interrupted; run it again with --resume to finish")
        if not needed(a.target, current):
            return Outcome.ALREADY, None, 0
        if needed(a.seen, current):
            if self.params.force:
                return self._force(a, current=current, n=n)
            return _changed(a, current, "changed since the recovery read it")
        try:
            condition = self._condition(a.seen)
        except Uncheckable as exc:
            if self.params.force:
                return self._force(a, current=current, n=n)
            skipped = Skipped(key=a.key, outcome=Outcome.UNCHECKABLE, reason=str(exc), seen=a.seen)
            return Outcome.UNCHECKABLE, skipped, 0
        written = self._write(a.key, a.target, a.seen, condition)
        if written is None:
            current = self._get(a.key)
            if not needed(a.target, current):
                return Outcome.ALREADY, None, 0
            if not needed(a.seen, current):  # unchanged, yet the server refused: it cannot
                try:  # compare a map or a list; their leaves it can
                    flat = condition_for(a.seen, spec=self.live.spec, flat=True)
                except Uncheckable as exc:
                    why = f"the server cannot compare its maps or lists, and {exc}"
                    skipped = Skipped(
                        key=a.key, outcome=Outcome.UNCHECKABLE, reason=why, seen=a.seen
                    )
                    return Outcome.UNCHECKABLE, skipped, 0
                written = self._write(a.key, a.target, a.seen, flat)
                if written is not None:
                    self._leaves = True  # from now on, leaves first
                if written is None:
                    current = self._get(a.key)
                    if not needed(a.target, current):
                        return Outcome.ALREADY, None, 0
            if written is None:
                if self.params.force:
                    return self._force(a, current=current, n=n)
                return _changed(a, current, "changed since the recovery read it")
        if not needed(a.seen, written.old):
            return _done(a), None, 0
        # The condition held, yet the item replaced was not the one read: an attribute added
        # since, which no condition can name. Keep the application's version.
        if self.params.force:
            self._save_forced(Action(key=a.key, target=a.target, seen=written.old), n)
            return _done(a), None, 1
        self._put_back(a, written.old)
        return _changed(
            a,
            written.old,
            "changed since the recovery read it (an attribute was added): "
            "its version was put back at once",
        )

    def _condition(self, seen: bytes | None) -> Condition:
        """``seen``'s condition: on the attributes, or (once the server has shown it cannot
        compare maps and lists) on the leaves of an item that has any, when that fits."""
        plain = functools.partial(
            condition_for,
            seen,
            spec=self.live.spec,
            version_attribute=self.params.version_attribute,
        )
        if self._leaves and seen is not None and (b'{"M":' in seen or b'{"L":' in seen):
            try:
                return plain(flat=True)
            except Uncheckable:
                pass
        return plain()

    def _put_back(self, a: Action, old: bytes | None) -> None:
        """Undo one write that replaced a version the recovery had not seen, if nobody has
        written the key since."""
        try:
            condition = condition_for(a.target, spec=self.live.spec, flat=True)
        except Uncheckable:
            condition = condition_for(
                a.target, spec=self.live.spec, version_attribute=self.params.version_attribute
            )
        self._write(a.key, old, a.target, condition)

    def _force(self, a: Action, *, current: bytes | None, n: int) -> _Result:
        """Save the version about to be replaced, then replace it if it is still that one."""
        for _ in range(FORCE_ATTEMPTS):
            if not needed(a.target, current):
                return Outcome.ALREADY, None, 0
            self._save_forced(Action(key=a.key, target=a.target, seen=current), n)
            try:
                condition: Condition | None = condition_for(current, spec=self.live.spec, flat=True)
            except Uncheckable:
                condition = None  # --force on an item no condition can describe: as asked
            written = self._write(a.key, a.target, current, condition)
            if written is not None:
                if needed(current, written.old):  # unconditional, and it changed meanwhile
                    self._save_forced(Action(key=a.key, target=a.target, seen=written.old), n)
                return _done(a), None, 1
            current = self._get(a.key)
        return _changed(
            a, current, f"changed again each of {FORCE_ATTEMPTS} times --force tried to replace it"
        )

    def _save_forced(self, action: Action, n: int) -> None:
        with self._lock:
            self._forced += 1
            k = self._forced
        recoveries.save_forced(self.storage, self.rid, n, k, action)

    def _write(
        self, key: bytes, item: bytes | None, replaced: bytes | None, condition: Condition | None
    ) -> dynamodb_items.Written | None:
        """Put ``item`` (None: delete ``key``) if ``condition`` holds; paced by the size of
        the larger of ``item`` and the item it replaces."""
        size = max(len(item or b""), len(replaced or b""), len(key))
        self.bucket.acquire(write_units(size), stop=self.stop)
        if self.stop.is_set():
            raise Interrupted("recover interrupted; run it again with --resume to finish")

        def call() -> dynamodb_items.Written | None:
            if item is not None:
                return dynamodb_items.put(
                    self.client, table=self.live.table, item=item, condition=condition
                )
            return dynamodb_items.delete(
                self.client, table=self.live.table, key=key, condition=condition
            )

        return retrying(call, attempts=self.params.max_attempts, stop=self.stop)

    def _get(self, key: bytes) -> bytes | None:
        items = retrying(
            lambda: dynamodb_items.get_many(self.client, table=self.live.table, keys=[key]),
            attempts=self.params.max_attempts,
            stop=self.stop,
        )
        return items[0] if items else None


_Result = tuple[Outcome, Skipped | None, int]  # outcome, why skipped, versions --force replaced


def _done(a: Action) -> Outcome:
    return Outcome.PUT_BACK if a.target is not None else Outcome.DELETED


def _changed(a: Action, current: bytes | None, why: str) -> _Result:
    reason = f"{why} (give --force to overwrite it)"
    skipped = Skipped(
        key=a.key, outcome=Outcome.CHANGED_SINCE, reason=reason, seen=a.seen, current=current
    )
    return Outcome.CHANGED_SINCE, skipped, 0


class LiveReader:
    """Strongly consistent reads of chosen keys, paced by one read budget for as long as it
    is used (a bucket and a client per recovery, not per batch of keys)."""

    def __init__(
        self,
        live: LiveTable,
        *,
        rate: float,
        max_attempts: int,
        stop: threading.Event,
        client: Any = None,
    ) -> None:
        self.live, self.max_attempts, self.stop = live, max_attempts, stop
        self._own = client is None
        self.client = client or dynamodb_items.item_client(live.conn, pool=2)
        self.bucket = TokenBucket(rate=rate)

    def read(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Each key's live item, by canonical key (``core.diff.key_of``)."""
        ordered = [key_doc(k, self.live.spec) for k in sorted(keys)]
        found: dict[bytes, bytes] = {}
        for at in range(0, len(ordered), dynamodb_items.MAX_GET_KEYS):
            if self.stop.is_set():
                raise Interrupted("recover interrupted while reading the live table")
            batch = ordered[at : at + dynamodb_items.MAX_GET_KEYS]
            self.bucket.acquire(len(batch), stop=self.stop)
            get = functools.partial(
                dynamodb_items.get_many, self.client, table=self.live.table, keys=batch
            )
            for item in retrying(get, attempts=self.max_attempts, stop=self.stop):
                found[key_of(orjson.loads(item), self.live.spec)] = item
        return found

    def close(self) -> None:
        if self._own:
            self.client.close()


def key_doc(key: bytes, spec: Key) -> bytes:
    """A canonical key (``core.diff.key_of``) as DynamoDB JSON of its attributes."""
    return orjson.dumps(
        {name: {kind: text} for (name, kind), text in zip(spec, orjson.loads(key), strict=True)}
    )


def query(live: LiveTable, value: bytes, *, rate: float) -> Iterator[bytes]:
    """Every item of the partition whose canonical partition key is ``value``."""
    client = dynamodb_items.item_client(live.conn, pool=2)
    name, kind = live.spec[0]
    (text,) = orjson.loads(value)
    bucket = TokenBucket(rate=rate)
    for item, units in dynamodb_items.query_partition(
        client, table=live.table, name=name, value={kind: text}
    ):
        if units:
            bucket.acquire(units)
        yield item
