"""One unit of work: scan one segment of one table into gzip'd JSON-lines data files.

Plain inputs in, ``FileEntry`` values out; the caller owns the client, the bucket and the
storage, so any engine (threads here, a distributed one later) can run it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, TypeVar

import orjson

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import Interrupted, NotFound
from hippolyte.core.events import Emit, PageDone
from hippolyte.core.model import FileEntry, Json
from hippolyte.core.pacing import PageSizer, TokenBucket
from hippolyte.core.retry import retrying
from hippolyte.repo import datafile, manifest

FILE_MAX_RAW_BYTES = 256 << 20  # a new data file after this much JSON


@dataclass(frozen=True, kw_only=True)
class SegmentJob:
    table: str
    prefix: str  # the backup folder, e.g. "orders/2026-11-22-00-10-00/"
    segment: int
    total_segments: int
    file_max_raw_bytes: int = FILE_MAX_RAW_BYTES
    page_attempts: int = 8  # after botocore's own retries; then the table stays incomplete
    attempt: str = ""  # names this attempt's files (distributed engines; "" locally)
    checkpoint: bool = False  # record progress so that a new attempt resumes


class DataFileWriter:
    """Writes one data file atomically: gzip, sha256 and md5 computed on the way out."""

    def __init__(self, storage: Storage, *, prefix: str, key: str) -> None:
        self.key = key
        self._cm: AbstractContextManager[BinaryIO] = storage.open_write(prefix + key)
        self._out = self._cm.__enter__()
        self._gz = datafile.compressor()
        self._sums = datafile.Checksums()
        self.items = 0
        self.raw_bytes = 0

    @property
    def size(self) -> int:
        return self._sums.size

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._sums.update(data)

    def write_items(self, items: list[bytes]) -> int:
        if not items:
            return 0
        chunk = b'{"Item":' + b'}\n{"Item":'.join(items) + b"}\n"
        self._emit(self._gz.compress(chunk))
        self.items += len(items)
        self.raw_bytes += len(chunk)
        return len(chunk)

    def commit(self) -> FileEntry:
        self._emit(self._gz.flush())
        self._cm.__exit__(None, None, None)
        return FileEntry(
            key=self.key,
            item_count=self.items,
            raw_bytes=self.raw_bytes,
            size=self.size,
            sha256=self._sums.sha256,
            md5=self._sums.md5,
        )

    def abort(self, exc: BaseException) -> None:
        self._cm.__exit__(type(exc), exc, exc.__traceback__)

    def discard(self) -> None:
        """Drop the file without committing it (an empty segment writes no file)."""
        self.abort(_Discard())


class _Discard(Exception):
    pass


class PageLike(Protocol):
    """What pacing needs of a page: what it cost, how many items, where the next starts."""

    @property
    def count(self) -> int: ...
    @property
    def consumed(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def last_key(self) -> Json | None: ...


P = TypeVar("P", bound=PageLike)


def paced_pages(
    *,
    client: Any,
    table: str,
    segment: int,
    total_segments: int,
    bucket: TokenBucket,
    stop: threading.Event,
    page_attempts: int,
    start_key: Json | None = None,
) -> Iterator[dynamodb.Page]:
    """Every page of one Scan segment, in order, paced by the table's bucket; a page that
    fails is retried (botocore's retries, then ours), never skipped."""
    return paced(
        scan_fetcher(client, table=table, total_segments=total_segments),
        table=table,
        segment=segment,
        bucket=bucket,
        stop=stop,
        page_attempts=page_attempts,
        start_key=start_key,
    )


def scan_fetcher(
    client: Any, *, table: str, total_segments: int
) -> Callable[[int, Json | None, int | None], dynamodb.Page]:
    """``fetch(segment, start_key, limit)``: one Scan page through botocore, items raw."""

    def fetch(segment: int, start_key: Json | None, limit: int | None) -> dynamodb.Page:
        return dynamodb.scan_page(
            client,
            table=table,
            segment=segment,
            total_segments=total_segments,
            start_key=start_key,
            limit=limit,
        )

    return fetch


def paced(
    fetch: Callable[[int, Json | None, int | None], P],
    *,
    table: str,
    segment: int,
    bucket: TokenBucket,
    stop: threading.Event,
    page_attempts: int,
    start_key: Json | None = None,
) -> Iterator[P]:
    """``fetch(segment, start_key, limit)`` page after page of one segment, paced by the
    table's bucket; a page that fails is fetched again (after the fetcher's own retries),
    never skipped."""
    sizer = PageSizer(rate=bucket.rate)
    while True:
        if stop.is_set():
            raise Interrupted(f"{table}: segment {segment} stopped")
        estimate = sizer.estimate()
        bucket.acquire(estimate, stop=stop)
        if stop.is_set():
            raise Interrupted(f"{table}: segment {segment} stopped")
        page = retrying(
            functools.partial(fetch, segment, start_key, sizer.limit()),
            attempts=page_attempts,
            stop=stop,
            on_retry=lambda exc, delay: bucket.throttled(),
        )
        bucket.settle(estimate, page.consumed)
        if page.retries:
            bucket.throttled()
        sizer.learn(items=page.count, consumed=page.consumed)
        yield page
        start_key = page.last_key
        if not start_key:
            return


def scan_segment(
    job: SegmentJob,
    *,
    client: Any,
    storage: Storage,
    bucket: TokenBucket,
    emit: Emit,
    stop: threading.Event,
) -> list[FileEntry]:
    """Scan the segment into data files. Raises on failure; a partly written file is
    discarded (never committed). With ``job.checkpoint``, every committed file is recorded
    with the key to go on from, and a new attempt of the same segment resumes from there."""
    cp = Checkpoint(storage, job) if job.checkpoint else None
    files, start_key, done = cp.load() if cp else ([], None, False)
    if done:
        return files
    writer: DataFileWriter | None = None
    written_to: Json | None = start_key  # the key after the last page in `writer`
    try:
        for page in paced_pages(
            client=client,
            table=job.table,
            segment=job.segment,
            total_segments=job.total_segments,
            bucket=bucket,
            stop=stop,
            page_attempts=job.page_attempts,
            start_key=start_key,
        ):
            if writer is not None and writer.raw_bytes >= job.file_max_raw_bytes:
                files.append(writer.commit())
                writer = None
                if cp:
                    cp.save(files, last_key=written_to)
            if writer is None:
                writer = _writer(storage, job, seq=len(files))
            raw = writer.write_items(page.items)
            written_to = page.last_key
            emit(
                PageDone(
                    table=job.table,
                    segment=job.segment,
                    items=len(page.items),
                    raw_bytes=raw,
                    consumed=page.consumed,
                    retries=page.retries,
                )
            )
        if writer is None and not files and job.segment == 0:
            writer = _writer(storage, job, seq=0)  # segment 0 always writes one file
        if writer is not None and (writer.items or not files and job.segment == 0):
            files.append(writer.commit())
        elif writer is not None:
            writer.discard()
        writer = None
        if cp:
            cp.save(files, last_key=None, done=True)
        return files
    except BaseException as exc:
        if writer is not None:
            writer.abort(exc)
        raise


def _writer(storage: Storage, job: SegmentJob, *, seq: int) -> DataFileWriter:
    return DataFileWriter(
        storage, prefix=job.prefix, key=manifest.data_key(job.segment, seq, attempt=job.attempt)
    )


class Checkpoint:
    """``<backup>/_checkpoints/<segment>.json``: the files one attempt committed and the
    Scan key to go on from. Each save replaces it atomically with one attempt's whole chain,
    so a resumed attempt adopts a consistent prefix of the segment."""

    def __init__(self, storage: Storage, job: SegmentJob) -> None:
        self.storage = storage
        self.job = job
        self.key = f"{job.prefix}{manifest.CHECKPOINTS}{job.segment:05d}.json"

    def load(self) -> tuple[list[FileEntry], Json | None, bool]:
        try:
            doc = orjson.loads(self.storage.get_bytes(self.key))
        except (NotFound, orjson.JSONDecodeError):
            return [], None, False
        files = manifest.parse_descriptor(
            orjson.dumps({"format": manifest.FORMAT, "files": doc["files"]}), where=self.key
        )["files"]
        last = doc.get("lastKey")
        key = dynamodb.decode_key(orjson.loads(last)) if last else None
        return files, key, bool(doc.get("done"))

    def save(self, files: list[FileEntry], *, last_key: Json | None, done: bool = False) -> None:
        doc = {
            "attempt": self.job.attempt,
            "files": [manifest.file_to_json(f) for f in files],
            "lastKey": dynamodb.encode_item(last_key).decode() if last_key else None,
            "done": done,
        }
        self.storage.put_bytes(self.key, orjson.dumps(doc))
