"""``restore --engine dask``: the restore of ``ops.restore`` with its passes spread over a Dask
cluster (``engines.dask_restore``), in the same order and with the same guarantees:

every file checked and digested (tasks) before anything is created -> the target checked and
created as a load's -> each file loaded by a task, its checkpoint saved here when the task
returns (a resumed restore skips it) -> the proof: each Scan segment of the new table digested
by a task, the sum compared with the backup's -> capacities, TTL, tags, PITR, protection.

The write budget is the load's, split across the tasks that run at once (one per worker
thread of the cluster, at most one per file); the read budget of the proof is the table's,
split across its segments. The cluster's workers reach AWS (and the repository) with their
own credentials: an ``s3://`` repository for remote workers, as the backup's Dask engine.
"""

from __future__ import annotations

import threading
from typing import Any

from hippolyte.adapters import aws, dynamodb
from hippolyte.core.errors import Interrupted
from hippolyte.core.events import Emit, ItemsWritten, LoadStarted, Note
from hippolyte.core.model import Json, TableInfo
from hippolyte.core.proof import Digest
from hippolyte.engines import dask_engine
from hippolyte.engines.dask_restore import (
    TASK_RETRIES,
    CheckTask,
    DigestTask,
    LoadTask,
    check_task,
    digest_task,
    load_task,
)
from hippolyte.formats.base import FileCheck, Source, SourceFile
from hippolyte.ops import restore_check
from hippolyte.ops.restore import (
    RestoreParams,
    RestoreReport,
    checkpoint_state,
    finish_table,
    prepare_target,
    schema_of,
)

THREADS_PER_TASK = 4  # BatchWriteItem requests in flight within one file's task


def restore_over_dask(
    source: Source,
    *,
    conn: aws.Connection,
    table: str,
    params: RestoreParams,
    description: Json | None,
    scheduler: str,
    emit: Emit,
    stop: threading.Event | None = None,
) -> RestoreReport:
    stop = stop or threading.Event()
    desc, schema = schema_of(source, description)
    client = dask_engine.connect(scheduler)
    if note := dask_engine.dashboard_note(client):
        emit(note)
    control = dynamodb.control_client(conn, max_attempts=params.max_attempts)
    target = f"{control.meta.endpoint_url} {control.meta.region_name} {table}"
    state = checkpoint_state(params, source=source.location, target=target)

    def on_the_cluster(files: list[SourceFile]) -> list[FileCheck]:
        emit(Note(text=f"checking {len(files)} files on the cluster", table=table))
        tasks = [CheckTask(source=source, file=f, schema=schema) for f in files]
        return _gather(client, check_task, tasks, stop=stop)

    # As ops.restore: a backup whose check pass is recorded (proof.json) only has its files
    # hashed (here, by the driver); else the cluster checks them, and the pass is recorded.
    checks = restore_check.check_backup(
        source,
        schema=schema,
        workers=params.workers,
        emit=emit,
        table=table,
        check=on_the_cluster,
    )
    report = RestoreReport(table=table, source=source.location)
    for check in checks.values():
        assert check.digest is not None
        report.backup.merge(check.digest)
    by_key = {f.key: check for f, check in checks.items()}
    current = prepare_target(control, desc, table=table, params=params, state=state, emit=emit)
    info = TableInfo.from_description(current)
    budget = (
        params.on_demand_write_units
        if info.on_demand
        else info.write_capacity * params.write_percent
    )
    todo = [f for f in source.files if f.key not in set(state.done_files)]
    at_once = max(1, min(len(todo), _threads(client)))
    emit(
        LoadStarted(
            table=table,
            source=source.location,
            files=len(todo),
            expected_items=sum(by_key[f.key].items for f in todo),
            expected_bytes=sum(by_key[f.key].raw_bytes for f in todo),
            write_budget=budget,
        )
    )
    tasks = [
        LoadTask(
            source=source, file=f, conn=conn, table=table, rate=budget / at_once,
            threads=THREADS_PER_TASK, max_attempts=params.max_attempts,
        )
        for f in todo
    ]  # fmt: skip

    def loaded(task: LoadTask, _: Any) -> None:
        state.done_files.append(task.file.key)
        state.save()
        check = by_key[task.file.key]
        emit(ItemsWritten(table=table, items=check.items, raw_bytes=check.raw_bytes, consumed=0.0))

    _gather(client, load_task, tasks, stop=stop, each=loaded)
    report.items_written = sum(by_key[f.key].items for f in todo)
    state.phase = "loaded"
    state.save()
    report.restored = _proof(client, conn, table=table, info=info, params=params, stop=stop)
    if state.created_table:
        report.notes += finish_table(control, desc, source.extras, table=table, emit=emit)
    state.phase = "done"
    state.save()
    return report


def _proof(
    client: Any,
    conn: aws.Connection,
    *,
    table: str,
    info: TableInfo,
    params: RestoreParams,
    stop: threading.Event,
) -> Digest:
    segments = max(1, min(params.workers * 2, 64))
    rate = params.on_demand_write_units if info.on_demand else float(max(info.read_capacity, 1))
    tasks = [
        DigestTask(
            conn=conn, table=table, segment=s, segments=segments, rate=rate / segments,
            max_attempts=params.max_attempts,
        )
        for s in range(segments)
    ]  # fmt: skip
    total = Digest()
    for digest in _gather(client, digest_task, tasks, stop=stop):
        total.merge(digest)
    return total


def _gather(
    client: Any,
    fn: Any,
    tasks: list[Any],
    *,
    stop: threading.Event,
    each: Any = None,
) -> list[Any]:
    """Run ``fn`` over ``tasks`` on the cluster (each retried if its worker dies); the results
    in the tasks' order. ``each(task, result)`` as each one finishes."""
    from distributed import as_completed

    if not tasks:
        return []
    futures = client.map(fn, tasks, retries=TASK_RETRIES, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(tasks)
    try:
        for future in as_completed(futures, loop=client.loop):
            if stop.is_set():
                raise Interrupted("stopped; the checkpoint holds every file already loaded")
            i = index[future.key]
            results[i] = future.result()  # a task that failed after its retries raises here
            if each is not None:
                each(tasks[i], results[i])
    finally:
        for future in futures:
            future.cancel()
    return results


def _threads(client: Any) -> int:
    """Worker threads of the cluster: how many tasks run at once."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 (an old scheduler: assume one worker thread)
        return 1
