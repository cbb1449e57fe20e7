"""The local engine: a table's segments on a bounded pool of threads in this process.

Structured concurrency: the first failing segment stops its siblings (they finish the page in
flight and discard their open file), and Ctrl-C does the same before re-raising. Threads
suffice: the hot path (raw items, ISA-L gzip, sha256) spends its time outside the GIL.
"""

from __future__ import annotations

import threading
from typing import Any

from hippolyte.adapters.storage import Storage
from hippolyte.core.events import Emit
from hippolyte.core.model import FileEntry
from hippolyte.core.pacing import TokenBucket
from hippolyte.engines.pool import run_all
from hippolyte.engines.segment import SegmentJob, scan_segment


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

    def one(job: SegmentJob, group: threading.Event) -> list[FileEntry]:
        return scan_segment(
            job, client=client, storage=storage, bucket=bucket, emit=emit, stop=group
        )

    ordered = sorted(jobs, key=lambda j: j.segment)
    results = run_all(
        one,
        ordered,
        workers=workers,
        stop=stop,
        name="hippolyte-scan",
        interrupted="interrupted; no partial backup was committed",
    )
    return [f for files in results for f in files]
