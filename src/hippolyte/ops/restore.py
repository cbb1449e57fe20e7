"""Restore a backup into a new table, exactly and resumably, and prove it.

Order: resolve the schema -> read every file once, checking checksums, lines and keys and
folding the proof's digest of the backup (a bad file stops the restore before anything is
created or written; ``ops.restore_check``: a backup whose check an earlier restore recorded
only has its files hashed) -> check the target (never delete or overwrite a table) -> create it with
temporary load capacity and wait until ACTIVE -> load, checkpointing each finished file ->
prove: scan the new table, compare its item count and order-independent digest with the
backup's -> set the backed-up capacities, then TTL, tags, PITR, deletion protection.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hippolyte.adapters import aws, dynamodb, dynamodb_admin, dynamodb_write
from hippolyte.core.errors import ConfigError, HippolyteError
from hippolyte.core.events import Emit, LoadStarted, Note
from hippolyte.core.model import Json, TableInfo
from hippolyte.core.pacing import TokenBucket
from hippolyte.core.proof import Digest
from hippolyte.core.restore_plan import (
    Step,
    capacity_step,
    create_table_request,
    schema_differences,
    settings_steps,
)
from hippolyte.engines import proof_scan
from hippolyte.engines.load import LoadSettings, load_files
from hippolyte.engines.pool import cpu_pool, cpus
from hippolyte.formats.base import KeySchema, Source, SourceFile
from hippolyte.ops import restore_check
from hippolyte.ops.restore_state import RestoreState, default_dir


class RestoreRefused(HippolyteError):
    """The target cannot take this backup as asked; nothing was changed."""


@dataclass(frozen=True, kw_only=True)
class RestoreParams:
    write_percent: float = 0.9
    write_capacity: int = 1000  # temporary RCU and WCU of a provisioned table while loading
    on_demand_write_units: float = 4000.0  # a new on-demand table sustains 4,000 writes/s
    workers: int = 4
    max_attempts: int = 10
    resume: bool = False
    into_existing: bool = False
    state_dir: Path | None = None


@dataclass(kw_only=True)
class RestoreReport:
    table: str
    source: str
    items_written: int = 0
    backup: Digest = field(default_factory=Digest)
    restored: Digest = field(default_factory=Digest)
    notes: list[str] = field(default_factory=list)

    @property
    def proven(self) -> bool:
        return self.backup.count == self.restored.count and self.backup.value == self.restored.value


def restore(
    source: Source,
    *,
    conn: aws.Connection,
    table: str,
    params: RestoreParams,
    description: Json | None,
    emit: Emit,
    stop: threading.Event | None = None,
) -> RestoreReport:
    stop = stop or threading.Event()
    desc, schema = schema_of(source, description)
    control = dynamodb.control_client(conn, max_attempts=params.max_attempts)
    target = f"{control.meta.endpoint_url} {control.meta.region_name} {table}"
    state = checkpoint_state(params, source=source.location, target=target)
    # Every file is read and checked (and digested for the proof) before anything is written;
    # on resume the finished files too, as the proof needs all of them.
    known = sum(f.item_count or 0 for f in source.files)
    emit(
        Note(
            text=f"checking {len(source.files)} files"
            + (f" ({known:,} items)" if known else "")
            + " before writing anything",
            table=table,
        )
    )
    checks = restore_check.check_backup(
        source, schema=schema, workers=params.workers, emit=emit, table=table
    )
    todo = [f for f in source.files if f.key not in set(state.done_files)]
    current = prepare_target(control, desc, table=table, params=params, state=state, emit=emit)
    report = RestoreReport(table=table, source=source.location)
    info = TableInfo.from_description(current)
    budget = (
        params.on_demand_write_units
        if info.on_demand
        else info.write_capacity * params.write_percent
    )
    emit(
        LoadStarted(
            table=table,
            source=source.location,
            files=len(todo),
            expected_items=sum(checks[f].items for f in todo),
            expected_bytes=sum(checks[f].raw_bytes for f in todo),
            write_budget=budget,
        )
    )
    lock = threading.Lock()

    def file_done(f: SourceFile) -> None:
        with lock:
            state.done_files.append(f.key)
            state.save()

    writer = dynamodb_write.open_writer(
        conn, pool=params.workers + 2, max_attempts=params.max_attempts
    )
    try:
        load_files(
            source,
            todo,
            writer=writer,
            settings=LoadSettings(table=table, workers=params.workers),
            bucket=TokenBucket(rate=max(budget, 1.0)),
            emit=emit,
            on_file_done=file_done,
            stop=stop,
        )
    finally:
        writer.close()
    report.items_written = sum(checks[f].items for f in todo)
    state.phase = "loaded"
    state.save()
    for check in checks.values():
        assert check.digest is not None
        report.backup.merge(check.digest)
    report.restored = table_digest(
        conn,
        table=table,
        info=TableInfo.from_description(current),
        workers=params.workers,
        stop=stop,
        on_demand_units=params.on_demand_write_units,
        expected_items=report.backup.count,
    )
    if state.created_table:
        report.notes += finish_table(control, desc, source.extras, table=table, emit=emit)
    state.phase = "done"
    state.save()
    return report


def schema_of(source: Source, description: Json | None) -> tuple[Json, KeySchema]:
    """The table description a restore creates from (given, else the backup's) and its keys;
    ConfigError when neither records one (every engine refuses alike)."""
    desc = description or source.description
    if desc is None:
        raise ConfigError(
            f"{source.location} records no key schema: "
            "pass --schema-from TABLE or --key pk:S[,sk:N]"
        )
    return desc, KeySchema.from_description(desc)


def checkpoint_state(params: RestoreParams, *, source: str, target: str) -> RestoreState:
    path = RestoreState.location(params.state_dir or default_dir(), target=target)
    old = RestoreState.load(path)
    if params.resume:
        if old is None:
            raise RestoreRefused(f"nothing to resume: no checkpoint for {target} in {path.parent}")
        if old.source != source:
            raise RestoreRefused(
                f"the checkpoint for {target} is a restore of {old.source}, not {source}"
            )
        return old
    if old is not None and old.phase != "done":
        raise RestoreRefused(
            f"an unfinished restore into {target} exists ({path}); pass --resume to continue it"
        )
    return RestoreState(path=path, source=source, target=target)


def prepare_target(
    control: Any, desc: Json, *, table: str, params: RestoreParams, state: RestoreState, emit: Emit
) -> Json:
    existing = dynamodb_admin.describe_raw(control, table)
    if existing is None:
        if params.resume and state.created_table:
            raise RestoreRefused(
                f"table {table!r} was created by this restore but no longer exists"
            )
        request = create_table_request(desc, table_name=table, load_capacity=params.write_capacity)
        state.created_table = True  # recorded before the call: a crash after it must resume
        state.save()
        emit(Note(text=f"creating table {table!r}", table=table))
        dynamodb_admin.create_table(control, request)
        return dynamodb_admin.wait_active(control, table)
    if params.resume and (state.created_table or params.into_existing):
        return dynamodb_admin.wait_active(control, table)
    if not params.into_existing:
        raise RestoreRefused(
            f"table {table!r} already exists; choose another --table, or pass "
            "--into-existing to write into it (nothing was changed)"
        )
    diffs = schema_differences(desc, existing)
    if diffs:
        raise RestoreRefused(f"table {table!r} does not match the backup: " + "; ".join(diffs))
    state.save()
    return dynamodb_admin.wait_active(control, table)


def finish_table(
    control: Any,
    desc: Json,
    extras: Json,
    *,
    table: str,
    emit: Emit,
    later: Sequence[Step] = (),
) -> list[str]:
    """The backed-up capacities, then TTL, tags, PITR, deletion protection, then ``later``
    (what an engine could not set at creation); a server without one gets a note."""
    notes = []
    current = dynamodb_admin.wait_active(control, table)
    steps = [s for s in [capacity_step(desc, table_name=table, current=current)] if s]
    steps += settings_steps(desc, extras, table_name=table, table_arn=current.get("TableArn", ""))
    steps += later
    for step in steps:
        emit(Note(text=f"{table}: {step.why}", table=table))
        note = dynamodb_admin.apply(control, step, table=table)
        if note:
            notes.append(note)
            emit(Note(text=f"{table}: {note}", level="warning", table=table))
    return notes


def table_digest(
    conn: aws.Connection,
    *,
    table: str,
    info: TableInfo,
    workers: int,
    stop: threading.Event,
    on_demand_units: float,
    expected_items: int = 0,
) -> Digest:
    """Scan the restored table (all of its read capacity: nobody else uses it yet) and digest
    its pages as they arrive, in processes of their own (one per core) when the table is
    large, importing only what the digests need (``proof_scan.POOL_IMPORTS``: ~0.05 s of CPU
    to start, where processes with the check pass's imports cost ~0.3 s)."""
    large = expected_items >= restore_check.PROCESS_MIN_ITEMS
    processes = min(cpus(), workers) if large else 1
    rate = on_demand_units if info.on_demand else float(max(info.read_capacity, 1))
    with cpu_pool(processes, threads=1, imports=proof_scan.POOL_IMPORTS) as pool:
        return proof_scan.scan_digest(
            conn,
            table=table,
            total_segments=workers,
            bucket=TokenBucket(rate=rate),
            stop=stop,
            pool=pool,
            ahead=2 * processes,
        )
