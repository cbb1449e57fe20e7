"""The run records: what a run leaves under ``@runs/<run-id>/``, and the one place that writes
and reads them (docs/design.md, "The run record").

    plan.json     the plan as decided ("hippolyte-plan/1": `hippolyte plan --json`'s data)
    journal.json  the write-ahead capacity journal (:mod:`hippolyte.repo.journal`)
    result.json   every table's outcome and every capacity change ("hippolyte-result/1")
    monitor.json  the monitor's verdict on every table of the run ("hippolyte-monitor/1")
    lambda.json   what a run in AWS Lambda did and deferred ("hippolyte-lambda/1")

Each document names its format in ``"format"`` and spells its keys for the file (camelCase,
as ``hippolyte.json``), never as the Python fields happen to be named; the ``*Doc`` types
below are the schema. Records written before the format field existed (Python field names,
no ``"format"``) still read. A record in a format this version does not know is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core import planning
from hippolyte.core.errors import BackupCorrupt
from hippolyte.core.model import (
    BackupRef,
    CapacityOutcome,
    CapacityStatus,
    CheckStatus,
    Json,
    MonitorReport,
    RunResult,
    TableCheck,
    TableResult,
)

RUNS = "@runs/"  # "@" cannot appear in a table name, so no table folder can clash
PLAN, JOURNAL, RESULT, MONITOR, LAMBDA = (
    "plan.json",
    "journal.json",
    "result.json",
    "monitor.json",
    "lambda.json",
)
PLAN_FORMAT = "hippolyte-plan/1"
RESULT_FORMAT = "hippolyte-result/1"
MONITOR_FORMAT = "hippolyte-monitor/1"
LAMBDA_FORMAT = "hippolyte-lambda/1"

T = TypeVar("T")


def key(run_id: str, name: str) -> str:
    """The storage key of one of a run's records: ``@runs/<run-id>/<name>``."""
    return f"{RUNS}{run_id}/{name}"


def run_ids(storage: Storage) -> list[str]:
    """Every run that left a record, oldest first as the storage lists them."""
    return list(storage.list_dirs(RUNS))


# --- the schema ---------------------------------------------------------------------------


class BackupDoc(TypedDict):
    repository: str
    table: str
    id: str


class TableResultDoc(TypedDict):
    table: str
    ok: bool  # with startedIn: started remotely, not finished (the monitor checks it)
    backup: BackupDoc | None
    itemCount: int
    rawBytes: int
    storedBytes: int
    consumedReadUnits: float
    durationSeconds: float
    error: str | None
    startedIn: str | None  # e.g. "Data Pipeline df-..."
    warnings: list[str]  # absent from records written before it existed


class CapacityDoc(TypedDict):
    table: str
    status: str  # a CapacityStatus
    note: str


class ResultDoc(TypedDict):
    format: str
    runId: str
    results: list[TableResultDoc]
    capacity: list[CapacityDoc]


class CheckDoc(TypedDict):
    table: str
    target: str
    status: str  # a CheckStatus: ok | failed | running
    reason: str
    pipeline: int | None
    backup: str | None  # TABLE/BACKUP_ID


class MonitorDoc(TypedDict):
    format: str
    runId: str | None
    checkedAt: str  # ISO 8601, UTC
    ran: bool
    repository: str
    tables: list[CheckDoc]
    capacity: list[str]
    logs: str | None


class ReasonDoc(TypedDict):
    table: str
    reason: str


class LambdaDoc(TypedDict):
    format: str
    runId: str
    target: str
    ok: bool
    remainingSeconds: float
    backedUp: list[TableResultDoc]
    failures: list[ReasonDoc]
    skipped: list[ReasonDoc]
    error: str | None


@dataclass(frozen=True, kw_only=True)
class Reason:
    table: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class LambdaRecord:
    """What one backup in AWS Lambda did: the tables it backed up, those it could not (with
    the tables deferred for lack of time), those the plan skipped."""

    run_id: str
    target: str
    remaining_s: float
    backed_up: list[TableResult] = field(default_factory=list)
    failures: list[Reason] = field(default_factory=list)
    skipped: list[Reason] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.error is None


# --- plan.json ----------------------------------------------------------------------------


def write_plan(storage: Storage, run_id: str, plan: planning.Plan) -> None:
    _put(storage, key(run_id, PLAN), {"format": PLAN_FORMAT, **planning.to_json(plan)})


def has_plan(storage: Storage, run_id: str) -> bool:
    return storage.exists(key(run_id, PLAN))


def read_plan(storage: Storage, run_id: str) -> Json:
    """The plan as :func:`hippolyte.core.planning.to_json` gave it (without ``format``)."""
    where = key(run_id, PLAN)
    doc = _document(storage, where, PLAN_FORMAT)
    doc.pop("format", None)
    return doc


# --- result.json --------------------------------------------------------------------------


def write_result(storage: Storage, result: RunResult) -> None:
    doc: ResultDoc = {
        "format": RESULT_FORMAT,
        "runId": result.run_id,
        "results": [_result_doc(r) for r in result.results],
        "capacity": [
            {"table": o.table, "status": str(o.status), "note": o.note} for o in result.capacity
        ],
    }
    _put(storage, key(result.run_id, RESULT), doc)


def read_result(storage: Storage, run_id: str) -> RunResult:
    where = key(run_id, RESULT)
    doc = _document(storage, where, RESULT_FORMAT)
    return _parsed(where, lambda: _result(doc))


def _result(doc: Json) -> RunResult:
    return RunResult(
        run_id=_get(doc, "runId", "run_id"),
        results=[_table_result(r) for r in doc["results"]],
        capacity=[
            CapacityOutcome(
                table=o["table"], status=CapacityStatus(o["status"]), note=o.get("note", "")
            )
            for o in doc["capacity"]
        ],
    )


def _result_doc(r: TableResult) -> TableResultDoc:
    return {
        "table": r.table,
        "ok": r.ok,
        "backup": _backup_doc(r.ref),
        "itemCount": r.item_count,
        "rawBytes": r.raw_bytes,
        "storedBytes": r.stored_bytes,
        "consumedReadUnits": r.consumed_read_units,
        "durationSeconds": r.duration_s,
        "error": r.error,
        "startedIn": r.started_in,
        "warnings": list(r.warnings),
    }


def _backup_doc(ref: BackupRef | None) -> BackupDoc | None:
    if ref is None:
        return None
    return {"repository": ref.repo, "table": ref.table, "id": ref.backup_id}


def _backup(doc: Json | None) -> BackupRef | None:
    if doc is None:
        return None
    return BackupRef(
        repo=_get(doc, "repository", "repo"),
        table=doc["table"],
        backup_id=_get(doc, "id", "backup_id"),
    )


def _table_result(doc: Json) -> TableResult:
    return TableResult(
        table=doc["table"],
        ok=bool(doc["ok"]),
        ref=_backup(_get(doc, "backup", "ref", None)),
        item_count=int(_get(doc, "itemCount", "item_count", 0)),
        raw_bytes=int(_get(doc, "rawBytes", "raw_bytes", 0)),
        stored_bytes=int(_get(doc, "storedBytes", "stored_bytes", 0)),
        consumed_read_units=float(_get(doc, "consumedReadUnits", "consumed_read_units", 0.0)),
        duration_s=float(_get(doc, "durationSeconds", "duration_s", 0.0)),
        error=doc.get("error"),
        started_in=_get(doc, "startedIn", "started_in", None),
        warnings=tuple(doc.get("warnings") or ()),
    )


# --- monitor.json -------------------------------------------------------------------------


def write_monitor(storage: Storage, report: MonitorReport) -> None:
    """The report of a run's monitor, into that run's folder (a report of no run has none)."""
    if report.run_id is None:
        raise ValueError("a monitor report without a run has no run folder")
    doc: MonitorDoc = {
        "format": MONITOR_FORMAT,
        "runId": report.run_id,
        "checkedAt": report.checked_at.isoformat(),
        "ran": report.ran,
        "repository": report.repository,
        "tables": [
            {
                "table": c.table,
                "target": c.target,
                "status": str(c.status),
                "reason": c.reason,
                "pipeline": c.pipeline,
                "backup": c.backup,
            }
            for c in report.tables
        ],
        "capacity": list(report.capacity),
        "logs": report.logs,
    }
    _put(storage, key(report.run_id, MONITOR), doc)


def read_monitor(storage: Storage, run_id: str) -> MonitorReport:
    where = key(run_id, MONITOR)
    doc = _document(storage, where, MONITOR_FORMAT)
    return _parsed(where, lambda: _monitor(doc))


def _monitor(doc: Json) -> MonitorReport:
    return MonitorReport(
        run_id=_get(doc, "runId", "run_id"),
        checked_at=dt.datetime.fromisoformat(_get(doc, "checkedAt", "checked_at")),
        ran=bool(doc["ran"]),
        repository=doc["repository"],
        tables=[_check(c) for c in doc["tables"]],
        capacity=[str(line) for line in doc["capacity"]],
        logs=doc.get("logs"),
    )


def _check(doc: Json) -> TableCheck:
    if "status" in doc:
        status = CheckStatus(doc["status"])
        ok, running = status == CheckStatus.OK, status == CheckStatus.RUNNING
    else:  # written before hippolyte-monitor/1: two booleans
        ok, running = bool(doc["ok"]), bool(doc.get("running", False))
    return TableCheck(
        table=doc["table"],
        target=doc["target"],
        ok=ok,
        running=running,
        reason=doc["reason"],
        pipeline=doc.get("pipeline"),
        backup=doc.get("backup"),
    )


# --- lambda.json --------------------------------------------------------------------------


def write_lambda(storage: Storage, record: LambdaRecord) -> None:
    doc: LambdaDoc = {
        "format": LAMBDA_FORMAT,
        "runId": record.run_id,
        "target": record.target,
        "ok": record.ok,
        "remainingSeconds": record.remaining_s,
        "backedUp": [_result_doc(r) for r in record.backed_up],
        "failures": [{"table": f.table, "reason": f.reason} for f in record.failures],
        "skipped": [{"table": s.table, "reason": s.reason} for s in record.skipped],
        "error": record.error,
    }
    _put(storage, key(record.run_id, LAMBDA), doc)


def read_lambda(storage: Storage, run_id: str) -> LambdaRecord:
    where = key(run_id, LAMBDA)
    doc = _document(storage, where, LAMBDA_FORMAT)
    return _parsed(where, lambda: _lambda(doc))


def _lambda(doc: Json) -> LambdaRecord:
    return LambdaRecord(
        run_id=_get(doc, "runId", "run_id"),
        target=doc["target"],
        remaining_s=float(_get(doc, "remainingSeconds", "remaining_s")),
        backed_up=[_table_result(r) for r in _get(doc, "backedUp", "backed_up")],
        failures=[Reason(table=f["table"], reason=f["reason"]) for f in doc["failures"]],
        skipped=[Reason(table=s["table"], reason=s["reason"]) for s in doc["skipped"]],
        error=doc.get("error"),
    )


# --- shared -------------------------------------------------------------------------------

_REQUIRED = object()


def _get(doc: Json, name: str, legacy: str, default: Any = _REQUIRED) -> Any:
    """``doc[name]``, else the key a record written before its format had (``legacy``)."""
    if name in doc:
        return doc[name]
    if legacy in doc or default is _REQUIRED:
        return doc[legacy]
    return default


def _put(storage: Storage, where: str, doc: Any) -> None:
    storage.put_bytes(where, orjson.dumps(doc))


def _document(storage: Storage, where: str, fmt: str) -> Json:
    """The JSON object at ``where`` in format ``fmt`` (or written before formats were named).
    A missing record raises NotFound; anything else unreadable, BackupCorrupt."""
    try:
        doc = orjson.loads(storage.get_bytes(where))
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise BackupCorrupt(f"{where}: not a JSON object")
    if doc.get("format", fmt) != fmt:
        raise BackupCorrupt(f"{where}: format {doc['format']!r}, this version reads {fmt!r}")
    return doc


def _parsed(where: str, parse: Callable[[], T]) -> T:
    try:
        return parse()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BackupCorrupt(f"{where}: malformed record ({exc!r})") from exc
