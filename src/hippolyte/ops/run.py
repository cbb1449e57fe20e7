"""Run a plan: pipelines side by side, each pipeline's tables one after another; a boosted
table is boosted just before its backup and reverted just after, all through the journal.

The run's record lives in the repository (:mod:`hippolyte.repo.runs`):
``@runs/<run-id>/plan.json`` (what was decided), ``journal.json`` (every capacity change),
``result.json`` (every table's outcome).

With engine ``datapipeline`` the pipelines run on AWS Data Pipeline instead: the run starts
them (``engines.datapipeline_engine``) and its result says where each table's backup was
started; the monitor reverts capacity and checks the outputs once the pipelines are done.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from hippolyte.adapters.storage import Storage
from hippolyte.core import planning
from hippolyte.core.errors import HippolyteError, Interrupted
from hippolyte.core.events import Emit, Note
from hippolyte.core.model import (
    BackupRef,
    CapacityOutcome,
    CapacityStatus,
    Connection,
    RunResult,
    TableResult,
)
from hippolyte.engines import capacity, datapipeline_engine
from hippolyte.ops.backup import BackupParams, Clients, backup_tables
from hippolyte.repo import manifest, runs
from hippolyte.repo.journal import Journal, PipelineStatus


def actions(plan: planning.Plan) -> list[str]:
    """What a run of ``plan`` would do, in order, per pipeline (for --dry-run)."""
    out = []
    for p in plan.pipelines:
        for t in p.tables:
            name, b = t.estimate.table, t.boost
            if b is not None:
                out.append(
                    f"pipeline {p.index}: boost {name} {b.old_rcu} -> {b.new_rcu} RCU "
                    f"(backup reads {b.backup_share:.0%} of it)"
                )
            out.append(f"pipeline {p.index}: back up {name} ({t.reason})")
            if b is not None:
                out.append(f"pipeline {p.index}: revert {name} to {b.old_rcu} RCU")
    out += [f"export {e.table}: {e.reason}" for e in plan.exports]
    out += [f"skip {s.table}: {s.reason}" for s in plan.skipped]
    return out


def run_plan(
    plan: planning.Plan,
    *,
    conn: Connection,
    storage: Storage,
    params: BackupParams,
    pipelines_at_once: int,
    emit: Emit,
    stop: threading.Event | None = None,
    now: dt.datetime | None = None,
) -> RunResult:
    remote = params.engine == "datapipeline"
    if remote:
        datapipeline_engine.location(storage)  # an s3:// repository, before anything is written
    run_id = manifest.backup_id(now or dt.datetime.now(dt.UTC))
    runs.write_plan(storage, run_id, plan)
    journal = Journal.open(storage, run_id, create=True)
    if remote:
        return _start_remote(
            plan, conn=conn, storage=storage, params=params, journal=journal, emit=emit
        )
    stop = stop or threading.Event()
    emit(Note(text=f"run {run_id}: {len(plan.pipelines)} pipelines, {pipelines_at_once} at a time"))
    clients = Clients.build(conn, params, tables_at_once=max(1, pipelines_at_once))

    def one(p: planning.Pipeline) -> tuple[list[TableResult], list[CapacityOutcome]]:
        results, outcomes = [], []
        for t in p.tables:
            if stop.is_set():
                break
            r, o = _table(
                t,
                settings=plan.settings,
                conn=conn,
                clients=clients,
                storage=storage,
                params=params,
                journal=journal,
                emit=emit,
                stop=stop,
            )
            results.append(r)
            outcomes += o
        return results, outcomes

    def export(name: str) -> tuple[list[TableResult], list[CapacityOutcome]]:
        if stop.is_set():
            return [], []
        try:
            return backup_tables(
                [name],
                conn=conn,
                storage=storage,
                emit=emit,
                stop=stop,
                params=replace(params, engine="export"),
                clients=clients,
            ), []
        except HippolyteError as exc:  # Interrupted too: recorded, the run stops after it
            return [TableResult(table=name, ref=None, ok=False, error=str(exc))], []

    results: list[TableResult] = []
    outcomes: list[CapacityOutcome] = []
    with ThreadPoolExecutor(
        max_workers=max(1, pipelines_at_once), thread_name_prefix="hippolyte-pipeline"
    ) as pool:
        exports = [pool.submit(export, e.table) for e in plan.exports]
        for r, o in pool.map(one, plan.pipelines):
            results += r
            outcomes += o
        for future in exports:
            r, o = future.result()
            results += r
    if stop.is_set():  # what finished, what was stopped and what never started, then stop
        done = {r.table for r in results}
        results += [
            TableResult(table=name, ref=None, ok=False, error="not started: the run was stopped")
            for name in _planned(plan)
            if name not in done
        ]
        _finish(storage, RunResult(run_id=run_id, results=results, capacity=outcomes))
        raise Interrupted(f"run {run_id} stopped; its result records what finished")
    return _finish(storage, RunResult(run_id=run_id, results=results, capacity=outcomes))


def _planned(plan: planning.Plan) -> list[str]:
    return [t.estimate.table for p in plan.pipelines for t in p.tables] + [
        e.table for e in plan.exports
    ]


def _finish(storage: Storage, result: RunResult) -> RunResult:
    runs.write_result(storage, result)
    return result


def _start_remote(
    plan: planning.Plan,
    *,
    conn: Connection,
    storage: Storage,
    params: BackupParams,
    journal: Journal,
    emit: Emit,
) -> RunResult:
    """Start the plan's pipelines on AWS Data Pipeline; each table's result says where its
    backup runs (not ok or failed yet: the monitor checks it)."""
    run_id = journal.run_id
    emit(Note(text=f"run {run_id}: {len(plan.pipelines)} pipelines on AWS Data Pipeline"))
    started = datapipeline_engine.start_pipelines(
        plan,
        conn=conn,
        storage=storage,
        run_id=run_id,
        journal=journal,
        emit=emit,
        options=params.datapipeline,
    )
    results = []
    for s in started:
        for name in s["tables"]:
            if s["status"] == PipelineStatus.ACTIVATED:
                ref = BackupRef(repo=storage.url, table=name, backup_id=run_id)
                where = f"Data Pipeline {s['pipeline_id']}"
                results.append(TableResult(table=name, ref=ref, ok=True, started_in=where))
            else:
                error = f"pipeline {s['index']} not started: {s.get('note')}"
                results.append(TableResult(table=name, ref=None, ok=False, error=error))
    outcomes = [o for s in started for o in s["capacity"]]
    return _finish(storage, RunResult(run_id=run_id, results=results, capacity=outcomes))


def _table(
    t: planning.PlannedTable,
    *,
    settings: planning.PlanSettings,
    conn: Connection,
    clients: Clients,
    storage: Storage,
    params: BackupParams,
    journal: Journal,
    emit: Emit,
    stop: threading.Event,
) -> tuple[TableResult, list[CapacityOutcome]]:
    name, outcomes = t.estimate.table, []
    share = params.read_percent
    boosted = False
    warnings: tuple[str, ...] = ()
    try:
        if t.boost is not None:
            o = capacity.boost(conn=conn, journal=journal, table=name, new_rcu=t.boost.new_rcu)
            outcomes.append(o)
            boosted = o.status == CapacityStatus.BOOSTED
            share = t.boost.backup_share if boosted else share
            if o.status in (CapacityStatus.BOOST_FAILED, CapacityStatus.REVERT_PENDING):
                warnings = (f"{o.note}; {planning.without_boost(t, settings)}",)
            level = "warning" if warnings else "info"
            emit(Note(text=f"{name}: {o.status} {o.note}", table=name, level=level))
        (result,) = backup_tables(
            [name],
            conn=conn,
            storage=storage,
            params=replace(params, read_percent=share),
            emit=emit,
            stop=stop,
            clients=clients,
        )
        return replace(result, warnings=warnings), outcomes
    except Interrupted as exc:  # the run is stopping: recorded, and the run stops after it
        stopped = TableResult(
            table=name, ref=None, ok=False, error=f"interrupted: {exc}", warnings=warnings
        )
        return stopped, outcomes  # (with the put-back the finally adds)
    except HippolyteError as exc:  # one table's failure does not stop its pipeline
        failed = TableResult(table=name, ref=None, ok=False, error=str(exc), warnings=warnings)
        return failed, outcomes
    finally:
        if boosted:
            o = capacity.put_back(journal, capacity.entry_key(conn, name))
            outcomes.append(o)
            level = "warning" if o.status == CapacityStatus.REVERT_PENDING else "info"
            emit(Note(text=f"{name}: {o.status} {o.note}", table=name, level=level))
