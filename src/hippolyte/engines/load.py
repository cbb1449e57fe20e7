"""Loading a table from backup files: parallel BatchWriteItem across files, paced by a write
token bucket, concurrency adapting to throttling, every unprocessed item sent again.

An item is never dropped: a batch whose items stay unprocessed after every retry stops the
load with ``Throttled``; the files finished before stay recorded in the checkpoint, and the
unfinished file is written again on resume (puts are idempotent). The files are read as the
check pass (``sources.check_file``) read them before anything was written: the load does not
check each item a second time.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from hippolyte.adapters import dynamodb_write
from hippolyte.core.errors import Interrupted, Throttled
from hippolyte.core.events import Emit, ItemsWritten
from hippolyte.core.pacing import AdaptiveLimit, TokenBucket, write_units
from hippolyte.core.retry import retrying
from hippolyte.engines.pool import run_all
from hippolyte.formats.base import Source, SourceFile, iter_items


@dataclass(frozen=True, kw_only=True)
class LoadSettings:
    table: str
    workers: int = 4
    batch_attempts: int = 12  # rounds of UnprocessedItems before giving up
    call_attempts: int = 12  # tries of a failed call (backoff 0.1 s doubling, up to 20 s)


def load_files(
    source: Source,
    files: list[SourceFile],
    *,
    writer: dynamodb_write.Writer,
    settings: LoadSettings,
    bucket: TokenBucket,
    emit: Emit,
    on_file_done: Callable[[SourceFile], None],
    stop: threading.Event,
) -> None:
    limit = AdaptiveLimit(settings.workers)
    load_one = functools.partial(
        _load_file,
        source,
        writer=writer,
        settings=settings,
        bucket=bucket,
        limit=limit,
        emit=emit,
        senders=-(-settings.workers // max(1, len(files))),  # fewer files than workers
    )
    run_all(
        functools.partial(_then, load_one, done=on_file_done),
        files,
        workers=settings.workers,
        stop=stop,
        name="hippolyte-load",
        interrupted="interrupted; finished files are checkpointed, resume with --resume",
    )


def _then(
    load_one: Callable[..., None],
    f: SourceFile,
    group: threading.Event,
    *,
    done: Callable[[SourceFile], None],
) -> None:
    load_one(f, stop=group)
    done(f)


def _load_file(
    source: Source,
    f: SourceFile,
    *,
    writer: dynamodb_write.Writer,
    settings: LoadSettings,
    bucket: TokenBucket,
    limit: AdaptiveLimit,
    emit: Emit,
    senders: int,
    stop: threading.Event,
) -> None:
    send = functools.partial(
        _send, writer=writer, settings=settings, bucket=bucket, limit=limit, emit=emit, stop=stop
    )
    batches = _batches(iter_items(source, f, schema=None, check=False))
    if senders <= 1:
        for batch in batches:
            send(batch)
        return
    # Several requests of this file in flight (the limit still caps the load's total); the
    # reader stays at most two batches per sender ahead. The file is done when all are; the
    # first failure stops the group (what run_all would do next anyway).
    ahead = threading.BoundedSemaphore(2 * senders)

    def finished(future: Future[None]) -> None:
        if future.exception() is not None:
            stop.set()
        ahead.release()

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="hippolyte-send") as pool:
        for batch in batches:
            ahead.acquire()
            if stop.is_set():
                ahead.release()
                break
            futures.append(pool.submit(send, batch))
            futures[-1].add_done_callback(finished)
    errors = [e for done in futures if (e := done.exception()) is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Interrupted)), errors[0])
    if stop.is_set():
        raise Interrupted(f"{settings.table}: load stopped")


def _batches(items: Iterable[bytes]) -> Iterator[list[bytes]]:
    """BatchWriteItem's limits: 25 items and 16 MB per request (with room for the envelope)."""
    batch: list[bytes] = []
    size = 0
    for item in items:
        if len(batch) == dynamodb_write.MAX_ITEMS or size + len(item) > _MAX_BODY:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 30  # {"PutRequest":{"Item":...}},
    if batch:
        yield batch


_MAX_BODY = dynamodb_write.MAX_BYTES - 4096
_local = threading.local()


def _rng() -> random.Random:
    """One generator per thread: seeding one per batch costs more than the batch's JSON."""
    rng: random.Random | None = getattr(_local, "rng", None)
    if rng is None:
        rng = _local.rng = random.Random()
    return rng


def _send(
    items: list[bytes],
    *,
    writer: dynamodb_write.Writer,
    settings: LoadSettings,
    bucket: TokenBucket,
    limit: AdaptiveLimit,
    emit: Emit,
    stop: threading.Event,
) -> None:
    pending = items
    rng = _rng()
    retried: list[Exception] = []

    def on_retry(error: Exception, delay: float) -> None:
        retried.append(error)
        bucket.throttled()

    for attempt in range(settings.batch_attempts):
        if stop.is_set():
            raise Interrupted(f"{settings.table}: load stopped")
        estimate = float(sum(write_units(len(i)) for i in pending))
        bucket.acquire(estimate, stop=stop)
        limit.acquire()
        retried.clear()
        pushed_back = True
        try:
            result = retrying(
                functools.partial(writer.write_batch, table=settings.table, items=pending),
                attempts=settings.call_attempts,
                base_s=0.1,
                cap_s=20.0,
                stop=stop,
                on_retry=on_retry,
                rng=rng,
            )
            pushed_back = bool(result.unprocessed or result.retries or retried)
        finally:
            limit.release(pushed_back=pushed_back)
        bucket.settle(estimate, result.consumed or estimate)
        written = len(pending) - len(result.unprocessed)
        if written:
            emit(
                ItemsWritten(
                    table=settings.table,
                    items=written,
                    raw_bytes=sum(map(len, pending)) - sum(map(len, result.unprocessed)),
                    consumed=result.consumed,
                )
            )
        if not result.unprocessed:
            return
        bucket.throttled()
        pending = result.unprocessed
        if stop.wait(rng.uniform(0, min(20.0, 0.05 * 2**attempt))):
            raise Interrupted(f"{settings.table}: load stopped")
    raise Throttled(
        f"{settings.table}: {len(pending)} items still unprocessed after "
        f"{settings.batch_attempts} rounds of BatchWriteItem"
    )
