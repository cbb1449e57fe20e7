"""The dashboard's runs: each run's tables, outcome and reasons, capacity boosts and their
reverts, the monitor's verdict and the run's folder, from the records under ``@runs/``; and
the newest plan a run recorded (the page embeds its Gantt)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.core.model import CapacityStatus, Json, RunResult
from hippolyte.repo import runs

PLAN_LOOKBACK = 10  # newest runs searched for a plan
_NOT_PUT_BACK = {CapacityStatus.BOOSTED, CapacityStatus.REVERT_PENDING}


def read_runs(storage: Storage, run_ids: Sequence[str], *, shown: int) -> list[Json]:
    """The newest ``shown`` runs, newest first; a record that cannot be read is shown as such."""
    return [_run(storage, rid) for rid in sorted(run_ids, reverse=True)[:shown]]


def _run(storage: Storage, rid: str) -> Json:
    doc: dict[str, Any] = {
        "id": rid,
        "logs": f"{storage.url.rstrip('/')}/{runs.RUNS}{rid}/",
        "tables": 0,
        "ok": 0,
        "failed": [],
        "remote": [],
        "capacity": {},
        "notPutBack": [],
        "monitor": None,
        "problems": [],
    }
    result = _read(doc, lambda: runs.read_result(storage, rid))
    if result is None:
        result = _from_lambda(doc, storage, rid)
    if result is not None:
        _results(doc, result)
    monitor = _read(doc, lambda: runs.read_monitor(storage, rid))
    if monitor is not None:
        doc["monitor"] = {
            "checkedAt": monitor.checked_at.isoformat(),
            "ok": monitor.ok,
            "failed": [{"table": c.table, "reason": c.reason} for c in monitor.failed],
            "running": len(monitor.running),
            "capacity": list(monitor.capacity),
        }
    doc["outcome"] = _outcome(doc, has_result=result is not None)
    return doc


def _read(doc: dict[str, Any], read: Any) -> Any:
    try:
        return read()
    except NotFound:
        return None
    except BackupCorrupt as exc:
        doc["problems"].append(str(exc))
        return None


def _from_lambda(doc: dict[str, Any], storage: Storage, rid: str) -> RunResult | None:
    record = _read(doc, lambda: runs.read_lambda(storage, rid))
    if record is None:
        return None
    doc["failed"] += [{"table": f.table, "error": f.reason} for f in record.failures]
    doc["tables"] += len(record.failures)
    if record.error:
        doc["problems"].append(record.error)
    return RunResult(run_id=rid, results=list(record.backed_up), capacity=[])


def _results(doc: dict[str, Any], result: RunResult) -> None:
    for r in result.results:
        doc["tables"] += 1
        if r.started_in:
            doc["remote"].append({"table": r.table, "startedIn": r.started_in})
        elif r.ok:
            doc["ok"] += 1
        else:
            doc["failed"].append({"table": r.table, "error": r.error or "failed"})
    doc["capacity"] = dict(Counter(str(o.status) for o in result.capacity))
    doc["notPutBack"] = [
        {"table": o.table, "status": str(o.status), "note": o.note}
        for o in result.capacity
        if o.status in _NOT_PUT_BACK
    ]


def _outcome(doc: Json, *, has_result: bool) -> str:
    """failed | running | ok | unknown (no result yet: in progress, or it stopped)."""
    monitor = doc["monitor"]
    if doc["failed"] or doc["problems"] or (monitor is not None and monitor["failed"]):
        return "failed"
    if doc["remote"] and (monitor is None or monitor["running"]):
        return "running"
    if not has_result:
        return "unknown"
    return "ok"


def newest_plan(storage: Storage, run_ids: Sequence[str]) -> Json | None:
    """The plan of the newest run (of the last ``PLAN_LOOKBACK``) that recorded one."""
    for rid in sorted(run_ids, reverse=True)[:PLAN_LOOKBACK]:
        if not runs.has_plan(storage, rid):
            continue
        try:
            return {"runId": rid, "repository": storage.url, "plan": runs.read_plan(storage, rid)}
        except (NotFound, BackupCorrupt):
            continue
    return None
