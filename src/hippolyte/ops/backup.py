"""Back up tables: describe, scan every segment (paced), write manifests, commit with _SUCCESS.

Write order (docs/design.md): ``_started`` -> data files (each atomically) ->
``manifest-files.json`` -> ``manifest-summary.json`` -> ``hippolyte.json`` -> ``_SUCCESS``.
Anything that fails before ``_SUCCESS`` leaves an incomplete folder that readers ignore.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import ConfigError, HippolyteError, Interrupted
from hippolyte.core.events import Emit, Note, TableDone, TableStarted
from hippolyte.core.model import BackupRef, FileEntry, TableInfo, TableResult
from hippolyte.core.pacing import TokenBucket, read_budget, segments_for
from hippolyte.core.pipeline_defs import PipelineOptions
from hippolyte.engines.local import run_segments
from hippolyte.engines.segment import FILE_MAX_RAW_BYTES, SegmentJob
from hippolyte.repo import manifest, writer
from hippolyte.repo.writer import SCAN_CONSISTENCY


@dataclass(frozen=True, kw_only=True)
class BackupParams:
    read_percent: float = 0.5
    on_demand_read_units: float = 1000.0
    segments: int | None = None
    workers: int = 4
    max_attempts: int = 10
    file_max_raw_bytes: int = FILE_MAX_RAW_BYTES
    page_attempts: int = 8  # our own retries of a page, after botocore's max_attempts
    engine: str = "local"  # local (threads) | dask (a cluster) | export (PITR) | auto
    # | datapipeline (a planned run on AWS Data Pipeline: ops.run, never backup_tables)
    scheduler: str | None = None  # the Dask scheduler's address, for engine "dask"
    at: dt.datetime | None = None  # export as of this time (engine export/auto)
    fallback: bool = True  # export/auto: scan a table that cannot be exported
    datapipeline: PipelineOptions = PipelineOptions()  # engine datapipeline: where and as whom


SegmentRunner = Callable[[list[SegmentJob], float, Emit, "threading.Event | None"], list[FileEntry]]


@dataclass(frozen=True, kw_only=True)
class Clients:
    """The DynamoDB clients of a run, built once and shared by its tables and threads:
    building one costs ~25 ms of CPU, as much as backing up a small table."""

    control: Any
    scanner: Any  # Scan responses with raw items

    @classmethod
    def build(
        cls, conn: aws.Connection, params: BackupParams, *, tables_at_once: int = 1
    ) -> Clients:
        return cls(
            control=dynamodb.control_client(
                conn, max_attempts=params.max_attempts, pool=tables_at_once + 2
            ),
            scanner=dynamodb.raw_scan_client(
                conn, pool=params.workers * tables_at_once + 2, max_attempts=params.max_attempts
            ),
        )


def backup_tables(
    tables: Sequence[str],
    *,
    conn: aws.Connection,
    storage: Storage,
    params: BackupParams,
    emit: Emit,
    stop: threading.Event | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    clients: Clients | None = None,
) -> list[TableResult]:
    """Back up each table in turn. Every named table is described first, so a missing one
    fails the command before anything is written. ``clients``: a run's, shared."""
    clients = clients or Clients.build(conn, params)
    control = clients.control
    infos = [(dynamodb.describe(control, name), time.monotonic()) for name in tables]
    storage.check_writable()
    runner = _runner(params, conn=conn, storage=storage, emit=emit, scanner=clients.scanner)
    return [
        backup_one(
            info if time.monotonic() - described < FRESH_S else None,
            name=info.name,
            control=control,
            runner=runner,
            conn=conn,
            storage=storage,
            params=params,
            emit=emit,
            stop=stop,
            clock=clock,
        )
        for info, described in infos
    ]


def _runner(
    params: BackupParams,
    *,
    conn: aws.Connection,
    storage: Storage,
    emit: Emit,
    scanner: Any,
) -> SegmentRunner:
    """How a table's segments run: threads here, or tasks on a Dask cluster."""
    if params.engine == "dask":
        from hippolyte.engines import dask_engine

        if not params.scheduler:
            raise ConfigError("--engine dask needs --scheduler tcp://HOST:PORT")
        client = dask_engine.connect(params.scheduler)  # shared by the process's tables
        if note := dask_engine.dashboard_note(client):
            emit(note)
        return lambda jobs, budget, emit, stop: dask_engine.run_segments_dask(
            jobs,
            client=client,
            conn=conn,
            repo=storage,
            budget=budget,
            max_attempts=params.max_attempts,
            emit=emit,
            stop=stop,
        )
    if params.engine == "datapipeline":
        raise ConfigError(
            "--engine datapipeline starts the planned night on AWS Data Pipeline (backup "
            "--all); to back up named tables here, pass --engine local"
        )
    if params.engine not in ("local", "export", "auto"):
        raise ConfigError(f"unknown engine {params.engine!r}: local, dask, export or auto")
    return lambda jobs, budget, emit, stop: run_segments(
        jobs,
        client=scanner,
        storage=storage,
        bucket=TokenBucket(rate=budget),
        workers=params.workers,
        emit=emit,
        stop=stop,
    )


FRESH_S = 30.0  # a table described this recently is not described again before its backup


def backup_one(
    info: TableInfo | None,
    *,
    name: str,
    control: Any,
    runner: SegmentRunner,
    conn: aws.Connection,
    storage: Storage,
    params: BackupParams,
    emit: Emit,
    stop: threading.Event | None,
    clock: Callable[[], dt.datetime],
) -> TableResult:
    if info is None:  # described long ago (the run may be hours old): again, fresh
        info = dynamodb.describe(control, name)
    start = clock()
    ref = writer.allocate(storage, table=info.name, at=start)
    began = time.monotonic()
    budget = read_budget(
        on_demand=info.on_demand,
        read_capacity=info.read_capacity,
        read_percent=params.read_percent,
        on_demand_units=params.on_demand_read_units,
        max_read_request_units=info.max_read_request_units,
    )
    segments = segments_for(
        size_bytes=info.size_bytes, workers=params.workers, override=params.segments
    )
    run = {**asdict(params), "readBudget": budget, "segments": segments}
    storage.put_bytes(
        ref.prefix + manifest.STARTED,
        orjson.dumps({"table": info.name, "startTime": manifest.iso(start), "parameters": run}),
    )
    emit(
        TableStarted(
            table=info.name,
            ref=ref,
            segments=segments,
            workers=params.workers,
            read_budget=budget,
            expected_items=info.item_count,
            expected_bytes=info.size_bytes,
        )
    )
    consumed = _Counter()
    try:
        extras = dynamodb.extras(control, info)
        jobs = [
            SegmentJob(
                table=info.name,
                prefix=ref.prefix,
                segment=s,
                total_segments=segments,
                file_max_raw_bytes=params.file_max_raw_bytes,
                page_attempts=params.page_attempts,
            )
            for s in range(segments)
        ]
        files, consistency = _exported(
            info, control=control, storage=storage, ref=ref, params=params, emit=emit, stop=stop
        )
        if files is None:
            files = runner(jobs, budget, consumed.wrap(emit), stop)
            writer.tidy(storage, ref=ref, files=files)
        end = clock()
        writer.commit(
            storage,
            ref=ref,
            info=info,
            extras=extras,
            files=files,
            start=start,
            end=end,
            run=run,
            consumed=consumed.units,
            source={
                "account": conn.account,
                "region": control.meta.region_name,
                "endpointUrl": control.meta.endpoint_url,
            },
            consistency=consistency,
        )
    except Interrupted:
        raise
    except HippolyteError as exc:
        result = TableResult(
            table=info.name, ref=ref, ok=False, error=str(exc), duration_s=time.monotonic() - began
        )
        emit(TableDone(result=result))
        return result
    result = TableResult(
        table=info.name,
        ref=ref,
        ok=True,
        item_count=sum(f.item_count for f in files),
        raw_bytes=sum(f.raw_bytes for f in files),
        stored_bytes=sum(f.size for f in files),
        consumed_read_units=consumed.units,
        duration_s=time.monotonic() - began,
    )
    emit(TableDone(result=result))
    return result


class _Counter:
    """Sums consumed capacity from the page events on their way to the caller."""

    def __init__(self) -> None:
        self.units = 0.0
        self._lock = threading.Lock()

    def wrap(self, emit: Emit) -> Emit:
        from hippolyte.core.events import PageDone

        def counted(event: Any) -> None:
            if isinstance(event, PageDone):
                with self._lock:
                    self.units += event.consumed
            emit(event)

        return counted


def _exported(
    info: TableInfo,
    *,
    control: Any,
    storage: Storage,
    ref: BackupRef,
    params: BackupParams,
    emit: Emit,
    stop: threading.Event | None,
) -> tuple[list[FileEntry] | None, str]:
    """With engine export/auto: DynamoDB's point-in-time export, if this table can have one.
    Returns (None, scan consistency) when the table is to be scanned instead."""
    if params.engine not in ("export", "auto"):
        return None, SCAN_CONSISTENCY
    from hippolyte.engines.export import ExportUnavailable, export_table

    try:
        files, when = export_table(
            info, client=control, storage=storage, ref=ref, at=params.at, stop=stop
        )
    except ExportUnavailable as exc:
        if params.engine == "export" and not params.fallback:
            raise
        emit(Note(text=f"{exc}: scanning instead", table=info.name))
        return None, SCAN_CONSISTENCY
    return files, f"point-in-time export as of {when} (ExportTableToPointInTime)"
