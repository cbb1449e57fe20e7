"""The Dask engine: each (table, segment) a Dask task, for fleets that outgrow one machine.

A task carries plain data only (``Unit``): the connection settings, the repository URL, the
segment and its share of the table's read budget. The worker builds its own clients (boto3
clients cannot be pickled) and runs the same ``scan_segment`` as the local engine, with
checkpoints and attempt-named files: a retried task (a dead worker's task is rescheduled by
Dask) resumes from the segment's last committed file, and a duplicated one never overwrites
another's files. Only the files returned by the finishing attempt are listed in the
manifests; the table commits once, in the driver, after every segment has finished.

Install with ``pip install hippolyte[dask]``. Workers need credentials of their own (the
standard chain: environment, instance or task role) and must reach the repository (S3 for
remote workers).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.config import ObjectLock
from hippolyte.core.errors import ConfigError, Interrupted
from hippolyte.core.events import Emit, Note, PageDone
from hippolyte.core.model import Connection, FileEntry
from hippolyte.core.pacing import TokenBucket
from hippolyte.engines.segment import SegmentJob, scan_segment

TASK_RETRIES = 3
CONNECT_TIMEOUT = "10s"  # how long to try to reach a scheduler before saying it cannot


@dataclass(frozen=True, kw_only=True)
class Unit:
    job: SegmentJob
    conn: Connection
    repo: str
    rate: float  # this segment's share of the table's read budget (RCU/s)
    max_attempts: int = 10
    object_lock: ObjectLock | None = None  # the repository's protection, as the caller's storage
    append_only: bool = False


@dataclass(frozen=True, kw_only=True)
class UnitResult:
    files: list[FileEntry]
    consumed: float  # read units this attempt used


def run_unit(unit: Unit) -> UnitResult:
    """Run one segment in whatever process Dask chose; idempotent through its checkpoint."""
    job = replace(unit.job, attempt=uuid.uuid4().hex[:8], checkpoint=True)
    client = _scanner(unit.conn, unit.max_attempts)
    storage = _storage(unit.repo, unit.conn, unit.object_lock, unit.append_only)
    consumed = [0.0]

    def count(event: object) -> None:
        if isinstance(event, PageDone):
            consumed[0] += event.consumed

    files = scan_segment(
        job,
        client=client,
        storage=storage,
        bucket=TokenBucket(rate=unit.rate),
        emit=count,
        stop=threading.Event(),
    )
    return UnitResult(files=files, consumed=consumed[0])


# A worker process keeps its clients from task to task: building a boto3 client costs tens of
# milliseconds of CPU, as much as backing up a small table. Both are safe to share by threads.
@functools.lru_cache(maxsize=32)
def _scanner(conn: Connection, max_attempts: int) -> Any:
    return dynamodb.raw_scan_client(conn, pool=16, max_attempts=max_attempts)


@functools.lru_cache(maxsize=32)
def _storage(
    repo: str, conn: Connection, object_lock: ObjectLock | None, append_only: bool
) -> Storage:
    return open_storage(repo, conn=conn, object_lock=object_lock, append_only=append_only)


_clients: dict[str, Any] = {}
_lock = threading.Lock()


def connect(scheduler: str) -> Any:
    """One Dask client per scheduler for the whole process (a run backs up many tables from
    several pipeline threads; a client per table would flood the scheduler)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--engine dask needs Dask: pip install 'hippolyte[dask]'") from None
    with _lock:
        client = _clients.get(scheduler)
        if client is None or client.status not in ("running", "connecting"):
            try:
                client = Client(scheduler, set_as_default=False, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}"
                ) from None
            _clients[scheduler] = client
        return client


@atexit.register
def close_clients() -> None:
    """Close this process's Dask clients (at exit, or before their cluster goes away)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def run_segments_dask(
    jobs: list[SegmentJob],
    *,
    client: Any,
    conn: Connection,
    repo: Storage,
    budget: float,
    max_attempts: int,
    emit: Emit,
    stop: threading.Event | None = None,
) -> list[FileEntry]:
    from distributed import as_completed

    units = [
        Unit(
            job=j,
            conn=conn,
            repo=repo.url,
            rate=budget / max(len(jobs), 1),
            max_attempts=max_attempts,
            object_lock=repo.object_lock,
            append_only=repo.append_only,
        )
        for j in jobs
    ]
    tag = uuid.uuid4().hex[:6]
    keys = [f"hippolyte-{u.job.table}-{u.job.segment}-{tag}" for u in units]
    futures = client.map(run_unit, units, key=keys, retries=TASK_RETRIES, pure=False)
    by_key = dict(zip(keys, units, strict=True))
    done: dict[int, list[FileEntry]] = {}
    try:
        for future in as_completed(futures, loop=client.loop):
            if stop is not None and stop.is_set():
                raise Interrupted("stopped; no partial backup was committed")
            result = future.result()  # a task that failed after its retries raises here
            unit = by_key[future.key]
            done[unit.job.segment] = result.files
            emit(
                PageDone(
                    table=unit.job.table,
                    segment=unit.job.segment,
                    items=sum(f.item_count for f in result.files),
                    raw_bytes=sum(f.raw_bytes for f in result.files),
                    consumed=result.consumed,
                    retries=0,
                )
            )
    finally:
        client.cancel(futures)
    return [f for seg in sorted(done) for f in done[seg]]


_announced: set[int] = set()


def dashboard_note(client: Any) -> Note | None:
    """The dashboard's link, once per client."""
    with _lock:
        if id(client) in _announced:
            return None
        _announced.add(id(client))
    return Note(text=f"Dask dashboard: {client.dashboard_link}")
