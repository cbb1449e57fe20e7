"""The run journal: a write-ahead record of every capacity and autoscaling change.

``runs/<run-id>/journal.json`` in the repository. Before a change, the state before it is
written (status ``boosting``); after it, what was done (``boosted``). ``revert`` puts every
table whose status is not final back from the recorded state, so a kill -9 at any moment
after a boost leaves enough behind to undo it. Each write replaces the whole document
atomically (the storage's atomic put); writers in one process share a lock.

A run on AWS Data Pipeline also records each pipeline (``pipeline/<index>``: its id, tables
and output folders) before activating it, so the monitor finds, checks and deletes it.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.core.model import Json

RUNS = "@runs/"  # "@" cannot appear in a table name, so no table folder can clash
FINAL = {"reverted", "gone", "not-boosted"}
PIPELINES = "pipeline/"  # key prefix of the Data Pipeline entries


def journal_key(run_id: str) -> str:
    return f"{RUNS}{run_id}/journal.json"


@dataclass
class Journal:
    storage: Any
    run_id: str
    entries: dict[str, Json] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, storage: Any, run_id: str, *, create: bool) -> Journal:
        try:
            doc = orjson.loads(storage.get_bytes(journal_key(run_id)))
        except NotFound:
            if not create:
                raise
            return cls(storage=storage, run_id=run_id)
        except orjson.JSONDecodeError as exc:
            raise BackupCorrupt(f"{journal_key(run_id)}: not valid JSON ({exc})") from exc
        return cls(storage=storage, run_id=run_id, entries=doc.get("entries", {}))

    def record(self, key: str, **changes: Any) -> Json:
        """Merge ``changes`` into the entry and write the journal before returning."""
        with self._lock:
            entry = self.entries.setdefault(key, {"history": []})
            entry.update(changes)
            if "status" in changes:
                entry["history"].append(
                    {
                        "at": _now(),
                        "status": changes["status"],
                        **({"note": changes["note"]} if "note" in changes else {}),
                    }
                )
            self.storage.put_bytes(
                journal_key(self.run_id),
                orjson.dumps(
                    {"run": self.run_id, "entries": self.entries}, option=orjson.OPT_INDENT_2
                ),
            )
            return dict(entry)

    def open_entries(self) -> dict[str, Json]:
        """Capacity entries not yet final: what a revert still has to put back."""
        return {
            k: dict(v)
            for k, v in self.entries.items()
            if not k.startswith(PIPELINES) and v.get("status") not in FINAL
        }

    def pipelines(self) -> dict[str, Json]:
        """The Data Pipeline entries, by key."""
        return {k: dict(v) for k, v in self.entries.items() if k.startswith(PIPELINES)}


def run_ids(storage: Any) -> list[str]:
    return [d for d in storage.list_dirs(RUNS)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
