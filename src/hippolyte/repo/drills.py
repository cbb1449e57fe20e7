"""The drill records: what a restore drill leaves under ``@drills/<drill-id>/drill.json``
("hippolyte-drill/1"), and the one place that writes and reads them, as the run records
(:mod:`hippolyte.repo.runs`): the format named in ``"format"``, keys spelled for the file
(camelCase), written whole (storage writes are atomic), read back through the schema below;
a record in a format this version does not know is refused.
"""

from __future__ import annotations

import datetime as dt
from typing import TypedDict

from hippolyte.adapters.storage import Storage
from hippolyte.core.drill import Drill, TableDrill, is_drill_id
from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.core.model import Json
from hippolyte.repo.runs import _document, _parsed, _put

DRILLS = "@drills/"  # "@" cannot appear in a table name, so no table folder can clash
RECORD = "drill.json"
FORMAT = "hippolyte-drill/1"


class TableDrillDoc(TypedDict):
    table: str
    backup: str | None  # TABLE/BACKUP_ID
    scratchTable: str
    ok: bool
    items: int
    bytes: int
    seconds: float
    secondsPerGb: float | None
    error: str | None
    deleted: bool
    kept: str | None


class DrillDoc(TypedDict):
    format: str
    drillId: str
    at: str  # ISO 8601, UTC
    repository: str
    target: str
    ok: bool
    tables: list[TableDrillDoc]


def key(drill_id: str) -> str:
    return f"{DRILLS}{drill_id}/{RECORD}"


def drill_ids(storage: Storage) -> list[str]:
    """Every drill that left a folder, oldest first."""
    return sorted(d for d in storage.list_dirs(DRILLS) if is_drill_id(d))


def write_drill(storage: Storage, drill: Drill) -> None:
    doc: DrillDoc = {
        "format": FORMAT,
        "drillId": drill.id,
        "at": drill.at.isoformat(),
        "repository": drill.repository,
        "target": drill.target,
        "ok": drill.ok,
        "tables": [
            {
                "table": t.table,
                "backup": t.backup,
                "scratchTable": t.scratch,
                "ok": t.ok,
                "items": t.items,
                "bytes": t.bytes,
                "seconds": t.seconds,
                "secondsPerGb": t.seconds_per_gb,
                "error": t.error,
                "deleted": t.deleted,
                "kept": t.kept,
            }
            for t in drill.tables
        ],
    }
    _put(storage, key(drill.id), doc)


def read_drill(storage: Storage, drill_id: str) -> Drill:
    where = key(drill_id)
    doc = _document(storage, where, FORMAT)
    return _parsed(where, lambda: _drill(doc))


def _drill(doc: Json) -> Drill:
    return Drill(
        id=doc["drillId"],
        at=dt.datetime.fromisoformat(doc["at"]),
        repository=doc["repository"],
        target=doc["target"],
        tables=[
            TableDrill(
                table=t["table"],
                backup=t["backup"],
                scratch=t["scratchTable"],
                ok=bool(t["ok"]),
                items=int(t["items"]),
                bytes=int(t["bytes"]),
                seconds=float(t["seconds"]),
                seconds_per_gb=None if t["secondsPerGb"] is None else float(t["secondsPerGb"]),
                error=t["error"],
                deleted=bool(t["deleted"]),
                kept=t["kept"],
            )
            for t in doc["tables"]
        ],
    )


def read_all(storage: Storage) -> list[Drill]:
    """Every readable drill record, oldest first by start time (two drills may start in
    the same second); one that cannot be read is passed over."""
    found = []
    for drill_id in drill_ids(storage):
        try:
            found.append(read_drill(storage, drill_id))
        except (NotFound, BackupCorrupt):
            continue
    return sorted(found, key=lambda d: (d.at, d.id))


def last_drills(storage: Storage) -> dict[str, tuple[Drill, TableDrill]]:
    """Each table's newest drill (and that drill)."""
    found: dict[str, tuple[Drill, TableDrill]] = {}
    for drill in reversed(read_all(storage)):
        for t in drill.tables:
            found.setdefault(t.table, (drill, t))
    return found
