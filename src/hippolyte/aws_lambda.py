"""The control plane as an AWS Lambda function, as the original ran: EventBridge rules call
``handler``, and the rule's name (``...-backup``, ``...-monitor``, ``...-drill``) or an explicit
``{"action": "backup" | "monitor" | "drill"}`` picks the job. A ``drill`` runs only with
``[drills]`` in the config (the stack then grants writes on scratch tables ``*-drill-<id>``
alone); without it, it is refused with the reason.

Configuration: ``$HIPPOLYTE_CONFIG_JSON`` (the config as JSON), else the config file
(``$HIPPOLYTE_CONFIG`` or a ``hippolyte.toml`` packaged with the function), else the
defaults. ``$HIPPOLYTE_REPOSITORY`` fills in a missing repository, ``$HIPPOLYTE_SNS_TOPIC_ARN``
adds the stack's topic to the notifications, and a config without targets backs up the
function's own account and region (from its ARN).

A Lambda stops after 15 minutes. ``backup`` plans the night, then scans only the tables whose
estimated backup fits in the time left (plus 20 % and a margin); every other table is reported
failed with the reason, in the summary and in ``runs/<id>/lambda.json``, and stays in the run's
``plan.json`` so that the monitor reports it too. Scans still running just before the limit
are stopped, and their boosts reverted. ``drill`` likewise restores only the sampled tables
whose restore fits (estimated from the backup's rawBytes at ``DRILL_BYTES_PER_S`` plus
``DRILL_TABLE_S`` a table); the others are recorded in the drill as failed, with the reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hippolyte.core import planning
from hippolyte.core.config import Settings, Target
from hippolyte.core.drill import TableDrill
from hippolyte.core.errors import ConfigError, HippolyteError, Interrupted
from hippolyte.core.events import Event, TableDone
from hippolyte.core.model import TableResult, to_plain
from hippolyte.ops import context as context_mod
from hippolyte.ops import jobs
from hippolyte.ops.logs import json_logging
from hippolyte.repo import catalog, manifest, runs
from hippolyte.repo.lock import RepoLock

ACTIONS = ("backup", "monitor", "drill")
ENV_MARGIN = "HIPPOLYTE_LAMBDA_MARGIN_S"
MARGIN_S = 60.0  # kept free of scans: planning is done, but the record and reverts remain
MARGIN_RATIO = 0.2  # estimates are estimates
STOP_BEFORE_S = 10.0  # scans still running this close to the limit are stopped
LAMBDA_LIMIT_S = 900.0
ELSEWHERE = "use the native export engine (PITR) or `hippolyte serve` on a server"

log = logging.getLogger("hippolyte.lambda")


# A drill creates, writes and deletes scratch tables: the stack grants that (on `*-drill-<id>`
# tables only) when its config has [drills], so without [drills] the job is refused.
DRILL_ELSEWHERE = (
    "restore drills run in Lambda only with [drills] in the function's config (the stack then "
    "lets its role write into scratch tables *-drill-<id>, and no other): add [drills] and "
    "deploy again, schedule them in `hippolyte serve`, or run `hippolyte drill --sample N`"
)
# A drill's restore, estimated: the scratch table takes 1,000 WCU (ops.drill.DrillParams), 1 KB
# items, so about 1 MB/s of the backup's rawBytes (1,000 s per GB), plus per table the
# CreateTable until ACTIVE, the proof's Scan and the DeleteTable.
DRILL_BYTES_PER_S = 1_000_000
DRILL_TABLE_S = 60.0
DRILL_ELSEWHERE_BIG = "drill it with [drills] in `hippolyte serve` or `hippolyte drill TABLE`"


class UnknownEvent(ConfigError):
    """The event names no job."""


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the job the event names; a JSON-ready summary with ``ok`` and the failures."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # in Lambda: JSON lines into CloudWatch
        json_logging()
    action: str | None = None
    try:
        action = action_of(event)
        settings = settings_for(context)
        log.info("job started", extra={"job": action, "request": _request_id(context)})
        if action == "drill" and settings.drills is None:
            raise ConfigError(DRILL_ELSEWHERE)
        if action == "drill":
            summary = _locked(
                settings, action, lambda lost: drill_job(settings, context=context, stop=lost)
            )
        elif action == "capture":
            summary = capture_streams(settings, event=event, context=context)
        elif action == "backup":
            summary = _locked(
                settings, action, lambda lost: backup(settings, context=context, stop=lost)
            )
        else:
            summary = _locked(settings, action, lambda _: monitor(settings, event=event))
            if settings.retention is not None:  # [retention]: forget after each monitor
                summary["forget"] = forget_configured(settings)
            if settings.copies:  # [[copies]]: then copy what each destination lacks
                summary["copies"] = copy_configured(settings)
    except HippolyteError as exc:
        log.error("job failed", extra={"job": action, "error": str(exc)})
        return {"action": action, "ok": False, "runs": [], "failures": [], "error": str(exc)}
    log.info("job finished", extra={"job": action, "ok": summary["ok"], "summary": summary})
    return summary


def action_of(event: Any) -> str:
    """``backup``, ``monitor`` or ``drill``: ``event["action"]``, else the EventBridge rule's
    name; ``capture`` for a DynamoDB Streams batch."""
    if not isinstance(event, dict):
        raise UnknownEvent(f"the event is not a JSON object: {event!r}")
    records = event.get("Records")
    if (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:dynamodb" for r in records)
    ):
        return "capture"  # a DynamoDB Streams event source mapping
    if "action" in event:
        if event["action"] in ACTIONS:
            return str(event["action"])
        raise UnknownEvent(f"unknown action {event['action']!r}: expected one of {ACTIONS}")
    for arn in event.get("resources") or []:
        name = str(arn).rpartition(":rule/")[2].rpartition("/")[2]  # rule/[bus/]name
        job = max(ACTIONS, key=name.rfind)  # the last one named: "x-monitor-backup" backs up
        if name and name.rfind(job) >= 0:
            return job
    raise UnknownEvent(
        'cannot tell the job from this event: invoke with {"action": "backup"} or '
        '{"action": "monitor"}, or from an EventBridge rule whose name contains \'backup\' '
        f"or 'monitor' (resources: {event.get('resources')!r})"
    )


def function_location(context: Any) -> tuple[str | None, str | None]:
    """(region, account) from ``arn:aws:lambda:REGION:ACCOUNT:function:NAME``."""
    parts = str(getattr(context, "invoked_function_arn", "") or "").split(":")
    if len(parts) >= 7 and parts[2] == "lambda":
        return parts[3] or None, parts[4] or None
    return None, None


def settings_for(context: Any) -> Settings:
    region, account = function_location(context)
    return context_mod.lambda_settings(region=region, account=account)


def _locked(
    settings: Settings, job: str, run: Callable[[threading.Event], dict[str, Any]]
) -> dict[str, Any]:
    """One run at a time, with the same lock in the repository as ``hippolyte serve``. ``run``
    gets the event the lock sets if another run takes it over: its work stops on it."""
    storage = context_mod.storage_for(settings, settings.effective_targets()[0])
    lost = threading.Event()
    lock = RepoLock(storage=storage, lease_s=settings.serve.lock_lease_s, purpose=job, on_lost=lost)
    if not lock.acquire():
        raise HippolyteError(f"{job} skipped: another run holds the lock in {storage.url}")
    try:
        return run(lost)
    finally:
        lock.release()


# -- forget --------------------------------------------------------------------------------------


def forget_configured(settings: Settings) -> dict[str, Any]:
    """``[retention]`` applied to the function's repository (under forget's own lock)."""
    from hippolyte.ops.forget import forget_by_config

    assert settings.retention is not None
    storage = context_mod.storage_for(settings, settings.effective_targets()[0])
    try:
        report = forget_by_config(storage, settings.retention)
    except HippolyteError as exc:
        log.error("forget failed", extra={"error": str(exc)})
        return {"ok": False, "error": str(exc)}
    removed = [e.to_json() for e in report.decision.entries if e.action == "remove"]
    return {"ok": True, "removed": removed, "lost": [r.to_json() for r in report.decision.lost]}


def copy_configured(settings: Settings) -> list[dict[str, Any]]:
    """``[[copies]]`` from the function's repository: one summary per destination."""
    from hippolyte.ops.copy import copy_by_config

    storage = context_mod.storage_for(settings, settings.effective_targets()[0])
    reports = copy_by_config(storage, settings.copies)
    for report in reports:
        if not report.ok:
            log.error("copy failed", extra={"destination": report.destination})
    return [
        {**r.to_json(), "copies": [c.to_json() for c in r.results if c.action != "skipped"]}
        for r in reports
    ]


# -- capture -------------------------------------------------------------------------------------


def stream_tables(event: dict[str, Any]) -> list[str]:
    """The tables a DynamoDB Streams event is about (``...:table/NAME/stream/LABEL``)."""
    names = []
    for record in event["Records"]:
        arn = str(record.get("eventSourceARN", ""))
        _, found, rest = arn.partition(":table/")
        name = rest.partition("/stream/")[0]
        if not found or not name:
            raise UnknownEvent(f"a stream record without a table's stream ARN: {arn!r}")
        if name not in names:
            names.append(name)
    return names


def capture_streams(settings: Settings, *, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A DynamoDB Streams event: capture each of its tables until caught up, as
    ``hippolyte capture --once`` does, into the same change sets. The event is the trigger,
    not the data: a batch holds one shard's records, and only reading every shard from the
    table's checkpoint keeps its chain whole (a record read twice is harmless). One capture
    of a table at a time (``ops.capture``'s lease): an invocation finding it taken leaves the
    work to the one holding it."""
    from hippolyte.ops.capture import CaptureParams, capture

    target = settings.effective_targets()[0]
    storage = context_mod.storage_for(settings, target)
    params = CaptureParams(flush_seconds=60, once=True, max_attempts=settings.max_attempts)
    results: list[dict[str, Any]] = []
    with _deadline(remaining_s(context) - _margin()) as stop:
        for table in stream_tables(event):
            (outcome,) = capture(
                [table],
                conn=target.connection(),
                storage=storage,
                params=params,
                emit=_log_event,
                stop=stop,
            )
            results.append(
                {
                    "table": table,
                    "status": outcome.status,
                    "records": outcome.records,
                    "changeSets": outcome.change_sets,
                    "gaps": outcome.gaps,
                    "error": outcome.error,
                    "ok": outcome.ok,
                }
            )
    return {
        "action": "capture",
        "ok": all(r["ok"] for r in results),
        "tables": results,
        "failures": [r for r in results if not r["ok"]],
    }


# -- backup --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Deferred:
    """A table whose backup does not fit in the time this Lambda has left."""

    table: str
    estimate_s: float
    reason: str


def fit(
    plan: planning.Plan, *, remaining_s: float, lanes: int, margin_s: float = MARGIN_S
) -> tuple[planning.Plan, list[Deferred]]:
    """The plan cut to what finishes in ``remaining_s``: ``lanes`` pipelines run side by side
    (each on the lane free first, as the run's thread pool takes them), each pipeline's tables
    one after another, every estimate counted 20 % longer, ``margin_s`` kept free."""
    free = [0.0] * max(1, lanes)  # when each lane is free again, seconds from now
    kept_pipelines, deferred = [], []
    for pipeline in plan.pipelines:
        lane = free.index(min(free))
        kept = []
        for t in pipeline.tables:
            need = t.estimate.seconds * (1 + MARGIN_RATIO)
            if free[lane] + need <= remaining_s - margin_s:
                kept.append(t)
                free[lane] += need
                continue
            left = max(0.0, remaining_s - free[lane])
            reason = (
                f"its backup needs about {t.estimate.seconds:.0f} s, more than the {left:.0f} s "
                f"left in this Lambda (less a {margin_s:.0f} s + {MARGIN_RATIO:.0%} safety "
                f"margin); {ELSEWHERE}"
            )
            deferred.append(
                Deferred(table=t.estimate.table, estimate_s=t.estimate.seconds, reason=reason)
            )
        if kept:
            kept_pipelines.append(replace(pipeline, tables=tuple(kept)))
    return replace(plan, pipelines=tuple(kept_pipelines)), deferred


def backup(
    settings: Settings, *, context: Any, stop: threading.Event | None = None
) -> dict[str, Any]:
    runs = [
        _backup_target(settings, t, context=context, stop=stop)
        for t in settings.effective_targets()
    ]
    return {
        "action": "backup",
        "ok": all(r["ok"] for r in runs),
        "runs": [r["run_id"] for r in runs],
        "failures": [f for r in runs for f in r["failures"]],
        "targets": runs,
    }


def _backup_target(
    settings: Settings, target: Target, *, context: Any, stop: threading.Event | None
) -> dict[str, Any]:
    remaining, margin = remaining_s(context), _margin()
    deferred: list[Deferred] = []
    planned: list[planning.Plan] = []  # the whole plan, known even if the run is stopped

    def cut(full: planning.Plan) -> planning.Plan:
        planned.append(full)
        kept, left_out = fit(full, remaining_s=remaining, lanes=settings.workers, margin_s=margin)
        deferred.extend(left_out)
        return kept

    now = dt.datetime.now(dt.UTC)
    run_id = manifest.backup_id(now)
    finished: list[TableResult] = []
    error = None
    with _deadline(remaining - STOP_BEFORE_S, stop) as stopping:  # scans still running stop
        try:
            _, run = jobs.run_target(
                settings, target, emit=_log_event, stop=stopping, now=now, fit=cut
            )
            finished = run.results
        except Interrupted as exc:
            error = f"stopped {STOP_BEFORE_S:.0f} s before the Lambda's time limit: {exc}"
    full = planned[0] if planned else None
    record = runs.LambdaRecord(
        run_id=run_id,
        target=target.label,
        remaining_s=round(remaining, 1),
        backed_up=[r for r in finished if r.ok],
        failures=[runs.Reason(table=d.table, reason=d.reason) for d in deferred]
        + [runs.Reason(table=r.table, reason=r.error or "") for r in finished if not r.ok],
        skipped=[runs.Reason(table=s.table, reason=s.reason) for s in full.skipped] if full else [],
        error=error,
    )
    storage = context_mod.storage_for(settings, target)
    if full is not None:  # the plan with every table, so the monitor checks the deferred too
        runs.write_plan(storage, run_id, full)
    runs.write_lambda(storage, record)
    return {
        "run_id": run_id,
        "target": target.label,
        "ok": record.ok,
        "remaining_s": record.remaining_s,
        "backed_up": [to_plain(r) for r in record.backed_up],
        "failures": [to_plain(f) for f in record.failures],
        "skipped": [to_plain(s) for s in record.skipped],
        "error": error,
    }


def _margin() -> float:
    raw = os.environ.get(ENV_MARGIN) or str(MARGIN_S)
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigError(f"${ENV_MARGIN}: {raw!r} is not a number of seconds") from None


def remaining_s(context: Any) -> float:
    get = getattr(context, "get_remaining_time_in_millis", None)
    return get() / 1000.0 if callable(get) else LAMBDA_LIMIT_S


@contextlib.contextmanager
def _deadline(seconds: float, stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """An event (``stop``, or a new one) that is set ``seconds`` from now, unless the block
    ends first."""
    stop = stop or threading.Event()
    timer = threading.Timer(max(0.0, seconds), stop.set)
    timer.daemon = True
    timer.start()
    try:
        yield stop
    finally:
        timer.cancel()


def _log_event(event: Event) -> None:
    if isinstance(event, TableDone):
        r = event.result
        log.info(
            "table done",
            extra={
                "table": r.table,
                "ok": r.ok,
                "items": r.item_count,
                "bytes": r.stored_bytes,
                "seconds": round(r.duration_s, 1),
                "error": r.error,
            },
        )


# -- drills --------------------------------------------------------------------------------------


def drill_estimate_s(raw_bytes: int) -> float:
    """How long a drill of a backup of ``raw_bytes`` takes: restore, proof, cleanup."""
    return DRILL_TABLE_S + raw_bytes / DRILL_BYTES_PER_S


def fit_drills(
    sizes: Sequence[tuple[str, int]], *, remaining_s: float, margin_s: float = MARGIN_S
) -> tuple[list[str], list[Deferred]]:
    """The tables (name, the backup's rawBytes) whose drills finish in ``remaining_s``, one
    after another as a drill runs them, every estimate counted 20 % longer, ``margin_s`` kept
    free; the others with the reason."""
    used, kept, deferred = 0.0, [], []
    for table, raw in sizes:
        estimate = drill_estimate_s(raw)
        need = estimate * (1 + MARGIN_RATIO)
        if used + need <= remaining_s - margin_s:
            kept.append(table)
            used += need
            continue
        reason = (
            f"its drill needs about {estimate:.0f} s ({raw / 1e9:.2f} GB), more than the "
            f"{max(0.0, remaining_s - used):.0f} s left in this Lambda (less a {margin_s:.0f} s "
            f"+ {MARGIN_RATIO:.0%} safety margin); {DRILL_ELSEWHERE_BIG}"
        )
        deferred.append(Deferred(table=table, estimate_s=estimate, reason=reason))
    return kept, deferred


def drill_job(
    settings: Settings, *, context: Any, stop: threading.Event | None = None
) -> dict[str, Any]:
    """``[drills]`` as `serve` runs it (``ops.drill.scheduled``: a sample of each target's
    fleet restored into scratch tables, proven, deleted, recorded, notified), restoring only
    the sampled tables that fit the time left. Its own entry for deploy/iam.py: the role's
    writes for it go on scratch tables only."""
    from hippolyte.ops import drill as drills_op

    remaining, margin = remaining_s(context), _margin()
    started = time.monotonic()

    def cut(refs: list[Any], storage: Any) -> tuple[list[Any], list[TableDrill]]:
        left = remaining - (time.monotonic() - started)
        sizes = [(r.table, catalog.summary(storage, r).raw_bytes or 0) for r in refs]
        kept, deferred = fit_drills(sizes, remaining_s=left, margin_s=margin)
        backups = {r.table: r for r in refs}
        return [backups[t] for t in kept], [
            TableDrill(
                table=d.table, backup=str(backups[d.table]), scratch="", ok=False, error=d.reason
            )
            for d in deferred
        ]

    outcome, error = drills_op.DrillOutcome(), None
    with _deadline(remaining - STOP_BEFORE_S, stop) as stopping:  # a drill still running stops
        try:
            outcome = drills_op.scheduled(settings, emit=_log_event, stop=stopping, fit=cut)
        except Interrupted as exc:  # its record is written; its scratch table cleaned up
            error = f"stopped {STOP_BEFORE_S:.0f} s before the Lambda's time limit: {exc}"
    return {
        "action": "drill",
        "ok": outcome.ok and error is None,
        "runs": [d.id for d in outcome.drills],
        "failures": [
            {"drill": d.id, "table": t.table, "reason": t.error or "not proven"}
            for d in outcome.drills
            for t in d.failed
        ],
        "tables": [to_plain(t) for d in outcome.drills for t in d.tables],
        "notifications": [to_plain(n) for n in outcome.notifications],
        "error": error,
    }


# -- monitor -------------------------------------------------------------------------------------


def monitor(settings: Settings, *, event: dict[str, Any]) -> dict[str, Any]:
    outcome = jobs.nightly_monitor(settings, run_id=event.get("run_id"))
    failures: list[dict[str, Any]] = [
        {"target": c.target, "table": c.table, "reason": c.reason}
        for report in outcome.reports
        for c in report.failed
    ]
    failures += [
        {"target": r.repository, "table": None, "reason": "nothing ran"}
        for r in outcome.reports
        if not r.ran
    ]
    return {
        "action": "monitor",
        "ok": outcome.ok,
        "runs": [r.run_id for r in outcome.reports if r.run_id],
        "failures": failures,
        "notifications": [to_plain(n) for n in outcome.notifications],
    }


def _request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)
