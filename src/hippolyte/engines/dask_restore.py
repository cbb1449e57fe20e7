"""A restore's three passes as Dask tasks carrying plain data: the check (and the backup's
digest) of each data file, the load of each file, and the digest of each Scan segment of the
restored table. Each worker process builds and keeps its own clients; each task gets its
share of the budget (the write budget split across the tasks that run at once, the read
budget across the segments). A task that dies with its worker is run again by Dask: a check
and a digest are pure reads, and a load's puts are idempotent (the same item, put twice, is
the same item), so nothing is written twice in a way that matters.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from hippolyte.adapters import dynamodb, dynamodb_write
from hippolyte.core.events import discard
from hippolyte.core.model import Connection
from hippolyte.core.pacing import TokenBucket
from hippolyte.core.proof import Digest, digest_of
from hippolyte.engines.load import LoadSettings, load_files
from hippolyte.engines.segment import paced_pages
from hippolyte.formats.base import FileCheck, KeySchema, Source, SourceFile, check_file

TASK_RETRIES = 3  # a task whose worker died runs again, this many times at most


@dataclass(frozen=True, kw_only=True)
class CheckTask:
    source: Source
    file: SourceFile
    schema: KeySchema


@dataclass(frozen=True, kw_only=True)
class LoadTask:
    source: Source
    file: SourceFile
    conn: Connection
    table: str
    rate: float  # this task's share of the write budget (write units per second)
    threads: int  # BatchWriteItem requests in flight within the task
    max_attempts: int


@dataclass(frozen=True, kw_only=True)
class DigestTask:
    conn: Connection
    table: str
    segment: int
    segments: int
    rate: float  # this segment's share of the read budget
    max_attempts: int


def check_task(task: CheckTask) -> FileCheck:
    """Read one file whole: checksums, lines, keys, every value; and its items' digest."""
    return check_file(task.source, task.file, schema=task.schema, digest=True)


def load_task(task: LoadTask) -> int:
    """Write one file's items (BatchWriteItem, paced at the task's share); its item count."""
    writer = _writer(task.conn, task.threads, task.max_attempts)
    load_files(
        task.source,
        [task.file],
        writer=writer,
        settings=LoadSettings(table=task.table, workers=task.threads),
        bucket=TokenBucket(rate=max(task.rate, 1.0)),
        emit=discard,
        on_file_done=lambda f: None,  # the driver saves the checkpoint when the task returns
        stop=threading.Event(),
    )
    return task.file.item_count or 0


def digest_task(task: DigestTask) -> Digest:
    """Scan one segment of the restored table and digest its pages."""
    client = _scanner(task.conn, task.max_attempts)
    total = Digest()
    for page in paced_pages(
        client=client,
        table=task.table,
        segment=task.segment,
        total_segments=task.segments,
        bucket=TokenBucket(rate=max(task.rate, 1.0)),
        stop=threading.Event(),
        page_attempts=8,
    ):
        total.merge(digest_of(page.items))
    return total


# A worker process keeps its clients from task to task (building one costs tens of ms of CPU).
@functools.lru_cache(maxsize=16)
def _writer(conn: Connection, threads: int, max_attempts: int) -> Any:
    return dynamodb_write.open_writer(conn, pool=threads + 2, max_attempts=max_attempts)


@functools.lru_cache(maxsize=16)
def _scanner(conn: Connection, max_attempts: int) -> Any:
    return dynamodb.raw_scan_client(conn, pool=4, max_attempts=max_attempts)
