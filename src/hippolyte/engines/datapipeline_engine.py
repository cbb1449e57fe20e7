"""A planned night on AWS Data Pipeline, as the original Hippolyte ran it: one pipeline per
planned pipeline, whose EMR cluster exports each table with the EMR DynamoDB connector into
the table's folder for the run, ``<repository>/<table>/<run-id>/`` (data files, ``manifest``,
``_SUCCESS`` last; :mod:`hippolyte.formats_datapipeline` reads it, so ``restore`` does too).

The work runs remotely, so a run only starts it. Per pipeline, write-ahead through the run's
journal: ``pipeline/<index>`` (name, tables, output folders) is recorded ``creating``; the
pipeline is created (``created``, with its id); the tables the plan boosts are boosted through
the journal; the definition is put; ``activating`` is recorded, the pipeline activated, then
``activated``. A pipeline that cannot start is deleted and its boosts reverted at once.

The monitor (:func:`refresh`) reads each pipeline's state and deletes those in a done state
(the original's list); it then checks each table's folder
(:func:`hippolyte.formats_datapipeline.check_folder`) and puts capacity back for the tables of
done pipelines only, never under a running export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hippolyte.adapters import aws
from hippolyte.adapters import datapipeline as dp_api
from hippolyte.adapters.storage import Storage
from hippolyte.core import pipeline_defs as datapipeline
from hippolyte.core import planning
from hippolyte.core.errors import (
    BackupFailed,
    ConfigError,
    CredentialsError,
    DataPipelineUnavailable,
    HippolyteError,
)
from hippolyte.core.events import Emit, Note
from hippolyte.core.model import CapacityOutcome, CapacityStatus, Connection, Json
from hippolyte.engines import capacity
from hippolyte.repo.journal import PIPELINES, Journal, PipelineStatus
from hippolyte.repo.runs import RUNS

DONE_STATES = frozenset(
    {
        "CANCELED",
        "CASCADE_FAILED",
        "FAILED",
        "FINISHED",
        "INACTIVE",
        "PAUSED",
        "SKIPPED",
        "TIMEDOUT",
    }
)
LIVE = (PipelineStatus.ACTIVATING, PipelineStatus.ACTIVATED)  # it may be running
NOT_STARTED = (PipelineStatus.CREATING, PipelineStatus.CREATED)  # stopped before activating
FATAL = (DataPipelineUnavailable, CredentialsError)  # no other pipeline would fare better


def location(storage: Storage) -> tuple[str, str]:
    """The repository's bucket and prefix: EMR writes the exports straight to S3."""
    if storage.bucket is None:
        raise ConfigError(
            f"--engine datapipeline needs an s3:// repository (EMR writes the exports to S3), "
            f"not {storage.url}"
        )
    return storage.bucket, storage.prefix


def folder(table: str, run_id: str) -> str:
    """The table's output folder in the repository: ``<table>/<run-id>/``."""
    return f"{table}/{run_id}/"


def start_pipelines(
    plan: planning.Plan,
    *,
    conn: Connection,
    storage: Storage,
    run_id: str,
    journal: Journal,
    emit: Emit,
    options: datapipeline.PipelineOptions | None = None,
) -> list[Json]:
    """Create, define and activate one pipeline per planned pipeline. Returns each pipeline's
    journal entry (``index``, ``name``, ``pipeline_id``, ``tables``, ``folders``, ``status``:
    ``activated`` or ``failed`` with a ``note``) plus ``capacity``, its boost outcomes."""
    options = options or datapipeline.PipelineOptions()
    bucket, prefix = location(storage)
    home = conn.region or aws.session(conn).region_name or "us-east-1"  # where the tables are
    dp_conn = dataclasses.replace(conn, region=options.region or home)
    log_uri = options.log_uri or datapipeline.output_path(
        bucket=bucket, prefix=prefix, table=f"{RUNS}{run_id}", timestamp="datapipeline-logs"
    )
    ctx = _Context(
        plan_json=planning.to_json(plan),
        conn=conn,
        dp_conn=dp_conn,
        dp=dp_api.client(dp_conn),
        storage=storage,
        run_id=run_id,
        journal=journal,
        emit=emit,
        defaults={
            "bucket": bucket,
            "prefix": prefix,
            "timestamp": run_id,
            "log_uri": log_uri,
            "subnet_id": options.subnet_id,
            "role": options.role,
            "resource_role": options.resource_role,
            "region": home,
        },
    )
    return [_start_one(p, ctx=ctx) for p in ctx.plan_json["pipelines"]]


@dataclass(frozen=True, kw_only=True)
class _Context:
    plan_json: Json
    conn: Connection
    dp_conn: Connection
    dp: Any
    storage: Storage
    run_id: str
    journal: Journal
    emit: Emit
    defaults: Json  # datapipeline.definitions' keywords


def _start_one(pipeline: Json, *, ctx: _Context) -> Json:
    index, tables = int(pipeline["index"]), [str(t["table"]) for t in pipeline["tables"]]
    key, name = f"{PIPELINES}{index}", f"hippolyte-{ctx.run_id}-{index}"
    url = ctx.storage.url.rstrip("/")
    ctx.journal.record(
        key,
        index=index,
        name=name,
        unique_id=name,
        tables=tables,
        folders={t: f"{url}/{folder(t, ctx.run_id)}" for t in tables},
        target=dataclasses.asdict(ctx.dp_conn),
        status=PipelineStatus.CREATING,
    )
    outcomes: list[CapacityOutcome] = []
    pipeline_id = None
    try:
        pipeline_id = dp_api.create(
            ctx.dp, name=name, unique_id=name, description=f"Hippolyte run {ctx.run_id}"
        )
        ctx.journal.record(key, pipeline_id=pipeline_id, status=PipelineStatus.CREATED)
        applied = _boost(pipeline, ctx=ctx, outcomes=outcomes)
        (defn,) = datapipeline.definitions(
            {**ctx.plan_json, "pipelines": [applied]}, **ctx.defaults
        )
        problems = datapipeline.validate(defn)
        if problems:
            raise BackupFailed(f"the definition of {name} is invalid: " + "; ".join(problems))
        put = datapipeline.put_request(defn, pipeline_id=pipeline_id)
        for warning in dp_api.put_definition(ctx.dp, put, name=name):
            ctx.emit(Note(text=f"pipeline {index}: {warning}", level="warning"))
        ctx.journal.record(key, status=PipelineStatus.ACTIVATING)
        dp_api.activate(ctx.dp, pipeline_id)
    except HippolyteError as exc:
        outcomes += capacity.revert(ctx.journal, tables=set(tables))
        _delete_quietly(ctx.dp, pipeline_id)
        entry = ctx.journal.record(key, status=PipelineStatus.FAILED, note=str(exc))
        ctx.emit(Note(text=f"pipeline {index} not started: {exc}", level="error"))
        if isinstance(exc, FATAL):
            raise
        return {**entry, "capacity": outcomes}
    entry = ctx.journal.record(key, status=PipelineStatus.ACTIVATED)
    count = f"{len(tables)} table" + ("s" if len(tables) > 1 else "")
    where = f"{url}/<table>/{ctx.run_id}/"
    ctx.emit(Note(text=f"pipeline {index}: {pipeline_id} activated, {count} into {where}"))
    return {**entry, "capacity": outcomes}


def _boost(pipeline: Json, *, ctx: _Context, outcomes: list[CapacityOutcome]) -> Json:
    """Boost the pipeline's boosted tables; the pipeline as applied: a table whose boost did
    not happen reads at the plain read percent, never at a share of capacity it lacks."""
    tables = []
    for table in pipeline["tables"]:
        boost, name = table.get("boost"), str(table["table"])
        if boost:
            try:
                o = capacity.boost(
                    conn=ctx.conn, journal=ctx.journal, table=name, new_rcu=int(boost["new_rcu"])
                )
            except HippolyteError as exc:
                o = CapacityOutcome(table=name, status=CapacityStatus.NOT_BOOSTED, note=str(exc))
            outcomes.append(o)
            ctx.emit(Note(text=f"{name}: {o.status} {o.note}", table=name))
            if o.status != CapacityStatus.BOOSTED:
                table = {**table, "boost": None}
        tables.append(table)
    return {**pipeline, "tables": tables}


def _delete_quietly(dp: Any, pipeline_id: str | None) -> str | None:
    """Delete the pipeline; why it could not be deleted, or None."""
    if pipeline_id is None:
        return None
    try:
        dp_api.delete(dp, pipeline_id)
    except HippolyteError as exc:
        return str(exc)
    return None


# --- the monitor's side -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PipelineView:
    index: int
    pipeline_id: str | None
    tables: tuple[str, ...]
    done: bool  # no longer running: its tables' outcomes are final
    summary: str  # e.g. "Data Pipeline df-0123 FINISHED (health ERROR), deleted"


def revert_done(journal: Journal) -> tuple[list[CapacityOutcome], list[PipelineView]]:
    """Put back the capacity of the tables whose pipelines are done (never under a running
    export); with every pipeline's view."""
    views = refresh(journal)
    done = {t for v in views if v.done for t in v.tables}
    return capacity.revert(journal, tables=done), views


def refresh(journal: Journal) -> list[PipelineView]:
    """Each pipeline of the run, its state read from Data Pipeline; those in a done state
    are deleted and the deletion recorded (a failed deletion is retried next time)."""
    entries = sorted(journal.pipelines().items(), key=lambda kv: int(kv[1]["index"]))
    clients: dict[Connection, Any] = {}

    def client(target: Json) -> Any:
        conn = Connection(**target)
        if conn not in clients:
            clients[conn] = dp_api.client(conn)
        return clients[conn]

    live: dict[Connection, list[str]] = {}
    for _, e in entries:
        if e.get("status") in LIVE:
            live.setdefault(Connection(**e["target"]), []).append(e["pipeline_id"])
    states: dict[str, dp_api.PipelineState | None] = {}
    for conn, ids in live.items():
        states |= dp_api.states(client(dataclasses.asdict(conn)), ids)
    return [
        _settle(journal, key, e, state=states.get(e.get("pipeline_id") or ""), client=client)
        for key, e in entries
    ]


def _settle(
    journal: Journal,
    key: str,
    entry: Json,
    *,
    state: dp_api.PipelineState | None,
    client: Callable[[Json], Any],
) -> PipelineView:
    status, pid = entry.get("status"), entry.get("pipeline_id")
    pending = status == PipelineStatus.ACTIVATING and state is not None and state.state == "PENDING"
    if status in NOT_STARTED or pending:
        _delete_quietly(client(entry["target"]), pid)
        entry = journal.record(
            key,
            status=PipelineStatus.FAILED,
            note="never activated: the run stopped before activating it",
        )
    elif status in LIVE and state is None:
        entry = journal.record(
            key, status=PipelineStatus.GONE, note="the pipeline no longer exists"
        )
    elif status in LIVE and state is not None and state.state in DONE_STATES:
        failed = _delete_quietly(client(entry["target"]), pid)
        done = {"state": state.state, "health": state.health}
        if failed:
            entry = journal.record(key, **done, note=f"not deleted yet: {failed}")
        else:
            entry = journal.record(key, status=PipelineStatus.DELETED, **done)
    elif status in LIVE and state is not None:
        return PipelineView(
            index=int(entry["index"]),
            pipeline_id=pid,
            tables=tuple(entry["tables"]),
            done=False,
            summary=f"Data Pipeline {pid} {_state_text(state.state, state.health)}",
        )
    return PipelineView(
        index=int(entry["index"]),
        pipeline_id=pid,
        tables=tuple(entry["tables"]),
        done=True,
        summary=_summary(entry),
    )


def _state_text(state: str | None, health: str | None) -> str:
    return f"{state or 'not started'}" + (f" (health {health})" if health else "")


def _summary(entry: Json) -> str:
    pid = entry.get("pipeline_id") or f"pipeline {entry['index']}"
    text = f"Data Pipeline {pid} {_state_text(entry.get('state'), entry.get('health'))}"
    status = entry.get("status")
    if status == PipelineStatus.DELETED:
        return f"{text}, deleted"
    return f"{text}: {entry.get('note') or status}"
