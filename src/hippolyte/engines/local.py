"""The local engine: a table's segments on a bounded pool of threads in this process.

Structured concurrency: the first failing segment stops its siblings (they finish the page in
flight and discard their open file), and Ctrl-C does the same before re-raising. Threads
suffice: the hot path (raw items, ISA-L gzip, sha256) spends its time outside the GIL.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from hippolyte.adapters.storage import Storage
from hippolyte.engines.segment import SegmentJob, scan_segment
from hippolyte.errors import Interrupted
from hippolyte.events import Emit
from hippolyte.model import FileEntry
from hippolyte.pacing import TokenBucket


def run_segments(
    jobs: list[SegmentJob],
    *,
    client: Any,
    storage: Storage,
    bucket: TokenBucket,
    workers: int,
    emit: Emit,
    stop: threading.Event | None = None,
) -> list[FileEntry]:
    """Run every segment; return all files in segment order, or raise the first error."""
    stop = stop or threading.Event()
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(jobs))), thread_name_prefix="hippolyte-scan"
    )
    futures: dict[Future[list[FileEntry]], SegmentJob] = {
        pool.submit(
            scan_segment, job, client=client, storage=storage, bucket=bucket, emit=emit, stop=stop
        ): job
        for job in jobs
    }
    try:
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            stop.set()
            wait(pending)
            errors = [f.exception() for f in failed]
            real = [e for e in errors if not isinstance(e, Interrupted)]
            raise (real or errors)[0]  # type: ignore[misc]
    except KeyboardInterrupt:
        stop.set()
        wait(futures)
        raise Interrupted("interrupted; no partial backup was committed") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    files: list[FileEntry] = []
    for future, _job in sorted(futures.items(), key=lambda kv: kv[1].segment):
        files.extend(future.result())
    return files
