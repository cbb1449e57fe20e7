"""Where a table's capture stands, in the repository: its checkpoint and its gaps.

``<table>/@capture/checkpoint.json`` (``hippolyte-capture-checkpoint/1``): the stream, the end
of the last committed change set (the next one's start) and every shard's position; each
change set's ``source.positions`` carries the same, so a crash between a commit and its
checkpoint is repaired by adopting the set. ``<table>/@capture/gaps.json``: every gap found,
with its cause. ``<table>/@capture/lock.json``: the lease of the one capture of the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hippolyte.adapters.storage import Storage
from hippolyte.core.model import Json
from hippolyte.repo import changes, manifest
from hippolyte.repo.changes import from_micros

STATE = "@capture/"
CHECKPOINT_FORMAT = "hippolyte-capture-checkpoint/1"


def checkpoint_key(table: str) -> str:
    return f"{table}/{STATE}checkpoint.json"


def gaps_key(table: str) -> str:
    return f"{table}/{STATE}gaps.json"


def lock_key(table: str) -> str:
    """The lease of the one capture of ``table`` (``repo.lock.RepoLock``'s key)."""
    return f"{table}/{STATE}lock.json"


@dataclass(kw_only=True)
class ShardPos:
    sequence: str | None = None  # the last sequence number committed; None: none yet
    parent: str | None = None
    closed: bool = False
    done: bool = False  # closed and read to its end

    def to_json(self) -> Json:
        return {k: getattr(self, k) for k in ("sequence", "parent", "closed", "done")}


@dataclass(kw_only=True)
class Position:
    """Where the chain stands: the stream, the end of the last committed set (the next set's
    start) and every shard's position."""

    stream_arn: str
    to: int  # microseconds
    change_set: str | None = None
    shards: dict[str, ShardPos] = field(default_factory=dict)

    def to_json(self, table: str) -> Json:
        return {
            "format": CHECKPOINT_FORMAT,
            "table": table,
            "streamArn": self.stream_arn,
            "to": manifest.iso(from_micros(self.to)),
            "toMicros": self.to,
            "changeSet": self.change_set,
            "shards": {k: v.to_json() for k, v in sorted(self.shards.items())},
        }

    @classmethod
    def from_json(cls, doc: Json) -> Position:
        return cls(
            stream_arn=str(doc["streamArn"]),
            to=int(doc["toMicros"]),
            change_set=doc.get("changeSet"),
            shards={k: ShardPos(**v) for k, v in doc.get("shards", {}).items()},
        )


def record_gap(storage: Storage, table: str, gap: Json) -> None:
    """Add ``gap`` to ``<table>/@capture/gaps.json``; the same gap found again after a
    restart (same cause, shard and start) replaces its first record."""
    gaps = list((changes.read_checkpoint(storage, gaps_key(table)) or {}).get("gaps", []))
    same = (gap["cause"], gap["shardId"], gap["fromMicros"])
    gaps = [g for g in gaps if (g.get("cause"), g.get("shardId"), g.get("fromMicros")) != same]
    changes.write_checkpoint(storage, gaps_key(table), {"table": table, "gaps": [*gaps, gap]})


def read_gaps(storage: Storage, table: str) -> list[Json]:
    return list((changes.read_checkpoint(storage, gaps_key(table)) or {}).get("gaps", []))


def load_position(storage: Storage, table: str) -> Position | None:
    """The checkpoint, or the position carried by a change set committed after it (a crash
    between a commit and its checkpoint), or by the newest set when no checkpoint exists."""
    doc = changes.read_checkpoint(storage, checkpoint_key(table))
    pos = Position.from_json(doc) if doc else None
    if pos is None:
        ids = [i for i in storage.list_dirs(f"{table}/{changes.CHANGES}") if changes.is_set_id(i)]
        committed = [
            i for i in sorted(ids) if storage.exists(changes.prefix(table, i) + manifest.SUCCESS)
        ]
        candidates = committed[-1:]
    else:
        candidates = [changes.set_id(from_micros(pos.to))]
    while candidates:
        sid = candidates.pop()
        if not storage.exists(changes.prefix(table, sid) + manifest.SUCCESS):
            break
        later = changes.load(storage, table, sid).source.get("positions")
        if not later or later.get("format") != CHECKPOINT_FORMAT:
            break
        pos = Position.from_json(later)
        candidates = [changes.set_id(from_micros(pos.to))]
    return pos
