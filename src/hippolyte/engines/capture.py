"""Capture one table's stream into change sets, continuously or until caught up.

Shards are read in lineage order (a child only once its parent is read to its end), each
shard's records in sequence order, every record a ``repo.changes.Change``. A change set is
committed every ``flush_seconds`` or ``flush_bytes``; right after each commit the position (per
shard: the last sequence number committed, closed, read to its end) is written to
``<table>/@capture/checkpoint.json``. The committed set carries the same position in its
source, so a crash between the commit and the checkpoint loses nothing: the set is adopted on
restart. Records at or before a shard's position are skipped, so reading one twice is
harmless.

A set's ``to`` is what every shard has been read up to: for a shard read to its current end,
the time of that read less ``STREAM_DELAY`` (a write shows in the stream within about a
second); for one with a backlog, the stamp of its last record read. Whatever the capture
cannot vouch for is a gap, recorded in ``<table>/@capture/gaps.json`` and in the source of
the set after it, whose ``from`` is then later than the previous set's ``to``:

- ``stream-replaced``: the checkpoint is of another stream (the stream was disabled and
  enabled again): the changes in between were never streamed;
- ``trimmed``: the stream answered that the records asked for are past its retention;
- ``position-lost``: the checkpointed sequence number is outside its shard's range;
- ``shard-expired`` / ``parent-expired``: a shard not read to its end (or the unread parent
  of a new shard) is no longer in the stream.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hippolyte.adapters import dynamodb, streams
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import HippolyteError
from hippolyte.core.events import Emit, ItemsRead, Note
from hippolyte.core.model import Json
from hippolyte.repo import changes, manifest
from hippolyte.repo.capture_state import (
    Position,
    ShardPos,
    checkpoint_key,
    load_position,
    record_gap,
)
from hippolyte.repo.changes import Change, ChangeSetWriter, from_micros, micros

SOURCE_TYPE = "dynamodb-stream"
STREAM_DELAY = 1_000_000  # microseconds a write may take to show in the stream
FIRST_START_REACH = dt.timedelta(hours=23)  # a first start vouches for this much history at most
PAGES_PER_ROUND = 10  # GetRecords calls per shard before the next shard's turn
DESCRIBE_EVERY = 30.0  # seconds between DescribeStream calls (AWS allows 10 a second)
ITERATOR_RENEWALS = 3  # expired iterators in a row before giving up


@dataclass(frozen=True, kw_only=True)
class CaptureSettings:
    flush_seconds: float = 60.0
    flush_bytes: int = 64 << 20
    poll_seconds: float = 1.0  # the pause once every shard is read to its end
    once: bool = False  # stop once every shard is read to its end


def lineage(shards: Iterable[streams.Shard]) -> list[streams.Shard]:
    """Parents before their children; among shards of one generation, by starting sequence
    number. A shard whose parent is not listed (expired, or the stream's first) is a root."""
    by_id = {s.id: s for s in shards}
    children: dict[str | None, list[streams.Shard]] = {}
    for s in by_id.values():
        children.setdefault(s.parent if s.parent in by_id else None, []).append(s)
    out: list[streams.Shard] = []
    todo = sorted(children.get(None, []), key=_order, reverse=True)
    while todo:
        s = todo.pop()
        out.append(s)
        todo += sorted(children.get(s.id, []), key=_order, reverse=True)
    return out


def _order(s: streams.Shard) -> tuple[int, str]:
    return (int(s.start) if s.start.isdigit() else 0, s.id)


def to_change(record: Json, *, where: str) -> Change:
    """A stream record (botocore's parse) as a change; its images back to DynamoDB JSON."""
    d = record.get("dynamodb", {})
    seq = d.get("SequenceNumber")
    new = d.get("NewImage")
    if new is None and record.get("eventName") != "REMOVE":
        raise streams.StreamRecordUnreadable(
            f"{where} record {seq}: a {record.get('eventName')} without its new image "
            "(the stream's view must be NEW_AND_OLD_IMAGES or NEW_IMAGE)"
        )
    try:
        keys = dynamodb.encode_item(d["Keys"])
        new_json = None if new is None else dynamodb.encode_item(new)
        old = d.get("OldImage")
        old_json = None if old is None else dynamodb.encode_item(old)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise streams.StreamRecordUnreadable(
            f"{where} record {seq}: an attribute value without its type (DynamoDB Local sends "
            "an empty map as {} in stream images); the capture stops before it"
        ) from None
    return Change(
        stamp=micros(d["ApproximateCreationDateTime"]), keys=keys, new=new_json, old=old_json
    )


@dataclass(kw_only=True)
class Summary:
    table: str
    stream_arn: str
    records: int = 0
    change_sets: int = 0
    gaps: list[Json] = field(default_factory=list)
    ended: str = "stopped"  # stopped | caught-up | stream-disabled


class TableCapture:
    """One table's capture: ``run`` until stopped, caught up (``once``) or the stream ends."""

    def __init__(
        self,
        *,
        client: Any,
        storage: Storage,
        table: str,
        stream_arn: str,
        settings: CaptureSettings,
        emit: Emit,
        stop: threading.Event,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.client, self.storage, self.table, self.arn = client, storage, table, stream_arn
        self.settings, self.emit, self.stop, self.clock = settings, emit, stop, clock
        self.summary = Summary(table=table, stream_arn=stream_arn)
        self.view = "NEW_AND_OLD_IMAGES"
        self.set_gap: Json | None = None  # the gap before the open set
        self.pending_gap: Json | None = None  # the gap before the next set
        self.iters: dict[str, str] = {}  # live shard iterators
        self.horizon: dict[str, int] = {}  # per shard: every change before this is read

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> Summary:
        stream = streams.describe(self.client, self.arn)
        described = time.monotonic()
        self.view = stream.view or self.view
        self._resume(stream)
        try:
            while True:
                finished = len(self.done)
                caught_up = self._round(stream)
                if self.stop.is_set():
                    break
                if self._all_done(stream) and stream.status in ("DISABLING", "DISABLED"):
                    self.summary.ended = "stream-disabled"
                    break
                if self.settings.once and caught_up and len(self.done) == finished:
                    self.summary.ended = "caught-up"
                    break
                self._commit(final=False)
                if caught_up:
                    self.stop.wait(self.settings.poll_seconds)
                # a shard read to its end may have children; else new shards are rare
                if len(self.done) != finished or time.monotonic() - described >= DESCRIBE_EVERY:
                    stream = streams.describe(self.client, self.arn)
                    described = time.monotonic()
        except HippolyteError:
            self._commit_quietly()
            raise
        self._commit(final=True)
        return self.summary

    def _resume(self, stream: streams.Stream) -> None:
        pos = load_position(self.storage, self.table)
        now = micros(self.clock())
        if pos is None:
            reach = now - int(FIRST_START_REACH.total_seconds() * 1_000_000)
            pos = Position(stream_arn=self.arn, to=min(max(micros(stream.created), reach), now))
        self._start_at(pos)
        if pos.stream_arn != self.arn:
            self._gap(
                "stream-replaced",
                f"the checkpoint is of stream {pos.stream_arn}; the table's stream is now "
                f"{self.arn}: changes made while it had none were never streamed",
                until=max(micros(stream.created), pos.to + 1),
            )
            gap, self.pending_gap = self.set_gap, None
            self._start_at(Position(stream_arn=self.arn, to=self.pos.to))
            self.set_gap = gap

    def _start_at(self, pos: Position) -> None:
        self.pos = pos
        self.read = {k: v.sequence for k, v in pos.shards.items()}
        self.done = {k for k, v in pos.shards.items() if v.done}
        self.iters, self.horizon, self.pending_gap = {}, {}, None
        self._open_writer()

    def _open_writer(self) -> None:
        self.writer = ChangeSetWriter(
            self.storage, table=self.table, start=from_micros(self.pos.to)
        )
        self.opened = time.monotonic()
        self.set_shards: dict[str, Json] = {}
        self.set_gap, self.pending_gap = self.pending_gap, None

    def _round(self, stream: streams.Stream) -> bool:
        """Read every shard whose parent is done, in lineage order; True when each was read
        to its current end."""
        known = {s.id for s in stream.shards}
        self._reconcile(stream, known)
        caught_up = True
        for shard in lineage(stream.shards):
            if shard.id in self.done:
                continue
            if shard.parent and shard.parent in known and shard.parent not in self.done:
                caught_up = False  # its parent has records left: it waits for the next round
                continue
            caught_up = self._read_shard(shard) and caught_up
            if self.stop.is_set():
                return False
        return caught_up

    def _reconcile(self, stream: streams.Stream, known: set[str]) -> None:
        """Shards of the checkpoint that left the stream; new shards; positions that are not
        in their shard's range."""
        for sid, sp in list(self.pos.shards.items()):
            if sid in known:
                continue
            if not sp.done:
                self._gap(
                    "shard-expired", f"shard {sid} left the stream before it was read to its end"
                )
            self.pos.shards.pop(sid)  # a shard read to its end: forgotten once it expires
            self.read.pop(sid, None)
        for s in stream.shards:
            if s.id in self.pos.shards:
                sp = self.pos.shards[s.id]
                sp.closed = s.closed
                seq = self.read.get(s.id)
                if seq is not None and not _in_range(seq, s) and s.id not in self.iters:
                    self._gap("position-lost", f"shard {s.id}: sequence number {seq} is not in it")
                    self.read[s.id] = None
                continue
            self.pos.shards[s.id] = ShardPos(parent=s.parent, closed=s.closed)
            self.read.setdefault(s.id, None)
            parent_gone = s.parent and s.parent not in known and s.parent not in self.done
            if parent_gone and self.pos.change_set is not None:
                self._gap(
                    "parent-expired", f"shard {s.id}: its parent {s.parent} left the stream unread"
                )

    def _read_shard(self, shard: streams.Shard) -> bool:
        renewals = 0
        for _ in range(PAGES_PER_ROUND):
            if self.stop.is_set():
                return False
            issued = micros(self.clock())
            fresh = shard.id not in self.iters
            try:
                it = self.iters.get(shard.id) or self._iterator(shard)
                page = streams.get_records(self.client, iterator=it, shard=shard.id)
            except streams.IteratorExpired:
                self.iters.pop(shard.id, None)
                renewals += 1
                if renewals > ITERATOR_RENEWALS:
                    raise
                continue
            except streams.TrimmedData as exc:
                self.iters.pop(shard.id, None)
                if not fresh and self._still_there(shard):  # an iterator that waited
                    continue
                self._gap("trimmed", str(exc), shard=shard.id)
                self.read[shard.id] = None
                continue
            self._add(shard, page.records)
            if page.next_iterator is None:
                self.done.add(shard.id)
                self.iters.pop(shard.id, None)
                return True
            self.iters[shard.id] = page.next_iterator
            if not page.records:
                self.horizon[shard.id] = issued - STREAM_DELAY
                return True
            self.horizon[shard.id] = micros(
                page.records[-1]["dynamodb"]["ApproximateCreationDateTime"]
            )
            self._commit(final=False)
        return False

    def _still_there(self, shard: streams.Shard) -> bool:
        """After GetRecords answered "trimmed": a new iterator after the last record read (or
        at the horizon, when none was) that the stream grants proves nothing was trimmed
        after it; GetShardIterator itself answers "trimmed" when something was. (DynamoDB
        Local answers "trimmed" to an iterator that waited while other tables wrote: its
        sequence numbers are shared by all its tables.)"""
        try:
            self.iters[shard.id] = self._iterator(shard)
        except streams.TrimmedData:
            return False
        return True

    def _iterator(self, shard: streams.Shard) -> str:
        return streams.shard_iterator(
            self.client, arn=self.arn, shard=shard.id, after=self.read.get(shard.id)
        )

    def _add(self, shard: streams.Shard, records: list[Json]) -> None:
        where = f"table {self.table!r} shard {shard.id}"
        n = raw = 0
        try:
            for record in records:
                seq = record["dynamodb"]["SequenceNumber"]
                last = self.read.get(shard.id)
                if last is not None and int(seq) <= int(last):
                    continue  # read before (a retried call, a re-read after a restart)
                change = to_change(record, where=where)
                self.writer.add(change)
                self.read[shard.id] = seq
                entry = self.set_shards.setdefault(
                    shard.id, {"shardId": shard.id, "firstSequence": seq, "count": 0}
                )
                entry["lastSequence"] = seq
                entry["count"] += 1
                n, raw = (
                    n + 1,
                    raw + len(change.keys) + len(change.new or b"") + len(change.old or b""),
                )
        finally:
            if n:
                self.summary.records += n
                self.emit(ItemsRead(table=self.table, items=n, raw_bytes=raw))

    # --- commits and gaps ----------------------------------------------------------------------

    def _set_bytes(self) -> int:
        return sum(f.raw_bytes for f in self.writer.files) + self.writer.pending_bytes

    def _covered_to(self) -> int:
        """What every shard has been read up to (see the module's docstring)."""
        now = micros(self.clock()) - STREAM_DELAY
        active = [sid for sid, sp in self.pos.shards.items() if sid not in self.done]
        ready = [
            sid
            for sid in active
            if not (
                self.pos.shards[sid].parent in self.pos.shards
                and self.pos.shards[sid].parent not in self.done
            )
        ]
        return min([self.horizon.get(sid, self.pos.to) for sid in ready], default=now)

    def _commit(self, *, final: bool) -> None:
        due = time.monotonic() - self.opened >= self.settings.flush_seconds
        if not (final or due or self._set_bytes() >= self.settings.flush_bytes):
            return
        start = self.pos.to
        end = self._covered_to()
        if end <= start:
            if not final or (self.writer.count == 0 and not self._moved()):
                return
            end = start + 1  # records read, nothing newer vouched for: a set of one microsecond
        after = Position(
            stream_arn=self.arn,
            to=end,
            change_set=self.writer.id,
            shards={
                sid: ShardPos(
                    sequence=self.read.get(sid),
                    parent=sp.parent,
                    closed=sp.closed,
                    done=sid in self.done,
                )
                for sid, sp in self.pos.shards.items()
            },
        )
        source: Json = {
            "type": SOURCE_TYPE,
            "streamArn": self.arn,
            "shards": sorted(self.set_shards.values(), key=lambda e: str(e["shardId"])),
            "positions": after.to_json(self.table),
        }
        if self.set_gap:
            source["gapBefore"] = self.set_gap
        self.writer.commit(end=from_micros(end), source=source, view=self.view)
        self.pos = after
        changes.write_checkpoint(
            self.storage, checkpoint_key(self.table), after.to_json(self.table)
        )
        self.summary.change_sets += 1
        self._open_writer()

    def _moved(self) -> bool:
        return any(
            self.read.get(k) != v.sequence or (k in self.done) != v.done
            for k, v in self.pos.shards.items()
        )

    def _commit_quietly(self) -> None:
        try:
            self._commit(final=True)
        except HippolyteError:
            pass  # the first error is the one to report

    def _gap(
        self, cause: str, detail: str, *, shard: str | None = None, until: int | None = None
    ) -> None:
        """Record a gap: what was read is committed first, the chain resumes at ``until``."""
        self._commit(final=True)
        start = self.pos.to
        end = max(until or micros(self.clock()), start + 1)
        gap: Json = {
            "cause": cause,
            "detail": detail,
            "streamArn": self.arn,
            "shardId": shard,
            "from": manifest.iso(from_micros(start)),
            "to": manifest.iso(from_micros(end)),
            "fromMicros": start,
            "toMicros": end,
            "detectedAt": manifest.iso(self.clock()),
        }
        record_gap(self.storage, self.table, gap)
        self.summary.gaps.append(gap)
        self.emit(
            Note(
                text=f"gap in the changes of {self.table}: {cause}: {detail}",
                level="warning",
                table=self.table,
            )
        )
        self.pos.to = end
        self.pending_gap = gap
        self._open_writer()

    def _all_done(self, stream: streams.Stream) -> bool:
        return all(s.id in self.done for s in stream.shards)


def _in_range(seq: str, shard: streams.Shard) -> bool:
    if not (seq.isdigit() and shard.start.isdigit()):
        return True
    low, high = int(shard.start), int(shard.end) if shard.end and shard.end.isdigit() else None
    return int(seq) >= low and (high is None or int(seq) <= high)
