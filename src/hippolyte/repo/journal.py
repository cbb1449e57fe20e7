"""The run journal: a write-ahead record of every capacity and autoscaling change.

``@runs/<run-id>/journal.json`` in the repository. Before a change, the state before it is
written (status ``boosting``); after it, what was done (``boosted``). ``revert`` puts every
table whose status is not final back from the recorded state, so a kill -9 at any moment
after a boost leaves enough behind to undo it. Each write replaces the whole document
atomically (the storage's atomic put); writers in one process share a lock.

A run on AWS Data Pipeline also records each pipeline (``pipeline/<index>``: its id, tables
and output folders) before activating it, so the monitor finds, checks and deletes it.

The file (``"format": "hippolyte-journal/1"``; docs/design.md states it)::

    {"format", "runId", "entries": {"<account>/<region>/<table>": capacity entry,
                                    "pipeline/<index>": pipeline entry}}

In memory an entry is a dict keyed by the names on the left of :data:`CAPACITY_KEYS` and
:data:`PIPELINE_KEYS`; on disk by the names on the right. Journals written before the format
field existed (Python names, ``"run"``) still read.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.core.model import Json
from hippolyte.repo import runs
from hippolyte.repo.runs import RUNS as RUNS  # re-exported: the journal's callers use it
from hippolyte.repo.runs import run_ids as run_ids

FORMAT = "hippolyte-journal/1"
PIPELINES = "pipeline/"  # key prefix of the Data Pipeline entries


class BoostState(enum.StrEnum):
    """Where a table's capacity change stands (a capacity entry's ``status``)."""

    BOOSTING = "boosting"  # the state before is written; the change may or may not be made
    BOOSTED = "boosted"
    NOT_BOOSTED = "not-boosted"  # final: nothing was changed
    REVERTED = "reverted"  # final
    REVERT_PENDING = "revert-pending"  # a refused decrease: the next revert retries
    GONE = "gone"  # final: the table was deleted
    BOOST_FAILED = "boost-failed"  # final: the boost failed and nothing it changed is left


class PipelineStatus(enum.StrEnum):
    """Where a Data Pipeline of the run stands (a pipeline entry's ``status``)."""

    CREATING = "creating"  # recorded before CreatePipeline
    CREATED = "created"
    ACTIVATING = "activating"  # recorded before ActivatePipeline
    ACTIVATED = "activated"
    FAILED = "failed"  # never started (and deleted)
    GONE = "gone"  # no longer exists in Data Pipeline
    DELETED = "deleted"  # done, and deleted by the monitor


FINAL = frozenset(
    {BoostState.REVERTED, BoostState.GONE, BoostState.NOT_BOOSTED, BoostState.BOOST_FAILED}
)

# An entry's fields: name in memory -> key in the file.
CAPACITY_KEYS = {
    "table": "table",
    "target": "target",  # where the table is: TARGET_KEYS
    "status": "status",  # a BoostState
    "note": "note",
    "before": "before",  # {read, write, autoscaling}: autoscaling as Application Auto Scaling
    "boost": "boost",  # {read}
    "history": "history",  # [{at, status, note?}], one per status recorded
}
PIPELINE_KEYS = {
    "index": "index",
    "name": "name",
    "unique_id": "uniqueId",
    "tables": "tables",
    "folders": "folders",  # table -> its output folder (URL)
    "target": "target",  # where the pipeline is: TARGET_KEYS
    "status": "status",  # a PipelineStatus
    "pipeline_id": "pipelineId",
    "state": "state",  # Data Pipeline's own state and health, once done
    "health": "health",
    "note": "note",
    "history": "history",
}
# A target: the fields of hippolyte.core.model.Connection -> key in the file.
TARGET_KEYS = {
    "account": "account",
    "region": "region",
    "profile": "profile",
    "role_arn": "roleArn",
    "endpoint_url": "endpointUrl",
}


def journal_key(run_id: str) -> str:
    return runs.key(run_id, runs.JOURNAL)


@dataclass
class Journal:
    storage: Storage
    run_id: str
    entries: dict[str, Json] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, storage: Storage, run_id: str, *, create: bool) -> Journal:
        try:
            data = storage.get_bytes(journal_key(run_id))
        except NotFound:
            if not create:
                raise
            return cls(storage=storage, run_id=run_id)
        return cls(storage=storage, run_id=run_id, entries=parse(data, where=journal_key(run_id)))

    def record(self, key: str, **changes: Any) -> Json:
        """Merge ``changes`` into the entry and write the journal before returning."""
        unknown = set(changes) - set(_fields(key))
        unknown |= set(changes.get("target") or ()) - set(TARGET_KEYS)
        if unknown:
            raise TypeError(f"journal entry {key!r}: no field {sorted(unknown)} in {FORMAT}")
        if "status" in changes:
            changes["status"] = _status(key, changes["status"])  # a ValueError if unknown
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
            self.storage.put_bytes(journal_key(self.run_id), dump(self.run_id, self.entries))
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


# --- the file -----------------------------------------------------------------------------


def dump(run_id: str, entries: Mapping[str, Json]) -> bytes:
    doc = {
        "format": FORMAT,
        "runId": run_id,
        "entries": {k: _entry_doc(k, e) for k, e in entries.items()},
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def parse(data: bytes, *, where: str) -> dict[str, Json]:
    """The entries of a journal file (this format, or one written before it was named)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise BackupCorrupt(f"{where}: not a JSON object")
    if doc.get("format", FORMAT) != FORMAT:
        raise BackupCorrupt(f"{where}: format {doc['format']!r}, this version reads {FORMAT!r}")
    try:
        return {k: _entry(k, e) for k, e in doc.get("entries", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BackupCorrupt(f"{where}: malformed entry ({exc!r})") from exc


def _fields(key: str) -> dict[str, str]:
    return PIPELINE_KEYS if key.startswith(PIPELINES) else CAPACITY_KEYS


def _status(key: str, value: str) -> BoostState | PipelineStatus:
    return PipelineStatus(value) if key.startswith(PIPELINES) else BoostState(value)


def _entry_doc(key: str, entry: Json) -> Json:
    fields = _fields(key)
    doc: Json = {}
    for name, value in entry.items():
        if name == "target":
            value = {TARGET_KEYS[k]: v for k, v in value.items()}
        doc[fields[name]] = value
    return doc


def _entry(key: str, doc: Json) -> Json:
    fields = _fields(key)
    names = {name: name for name in fields} | {d: name for name, d in fields.items()}
    # (the names in memory are the keys of a journal written before the format was named)
    entry: Json = {names[k]: v for k, v in doc.items() if k in names}
    if "target" in entry:
        target = entry["target"]
        entry["target"] = {k: target.get(d, target.get(k)) for k, d in TARGET_KEYS.items()}
    if "status" in entry:
        entry["status"] = _status(key, entry["status"])
    entry["history"] = [
        {**h, "status": _status(key, h["status"])} for h in entry.get("history", [])
    ]
    return entry


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
