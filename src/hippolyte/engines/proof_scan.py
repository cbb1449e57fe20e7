"""The proof's read-back: scan a table and digest every item, the pages read and digested in
the processes of a CPU pool.

This process paces each segment (the table's token bucket, the page sizer, retries that
never skip a page, the stop signal) and hands each page to the pool as a ``PageTask``: plain
values, with the credentials as of now. The worker makes the call itself
(``dynamodb_direct``), cuts the items out of the answer and digests them (``proof.Digest``), and
sends back only the digest, the page's cost and where the next page starts. So no page
crosses between processes, and nothing in this process touches an item: reading a Scan
answer and cutting it into items here used to cost more than a third of a restore's CPU.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hippolyte.adapters import dynamodb_direct
from hippolyte.core.model import Json
from hippolyte.core.pacing import TokenBucket
from hippolyte.core.proof import Digest
from hippolyte.engines.segment import paced


@dataclass(frozen=True, kw_only=True)
class PageTask:
    endpoint: dynamodb_direct.Endpoint
    keys: dynamodb_direct.Keys
    table: str
    segment: int
    total_segments: int
    start_key: Json | None
    limit: int | None


@dataclass(frozen=True, kw_only=True)
class PageDigest:
    digest: Digest
    last_key: Json | None
    consumed: float
    retries: int = 0  # the direct call makes none of its own

    @property
    def count(self) -> int:
        return self.digest.count


_callers: dict[dynamodb_direct.Endpoint, dynamodb_direct.Caller] = {}
_callers_lock = threading.Lock()


def digest_page(task: PageTask) -> PageDigest:
    """In a worker: one Scan page, digested."""
    with _callers_lock:
        caller = _callers.get(task.endpoint)
        if caller is None:
            caller = _callers[task.endpoint] = dynamodb_direct.Caller(task.endpoint)
    answer = dynamodb_direct.scan(
        caller,
        task.keys,
        table=task.table,
        segment=task.segment,
        total_segments=task.total_segments,
        start_key=task.start_key,
        limit=task.limit,
    )
    digest = Digest()
    digest.add_all(answer.items)
    return PageDigest(digest=digest, last_key=answer.last_key, consumed=answer.consumed)


def close_callers(endpoint: dynamodb_direct.Endpoint) -> None:
    """Close this process's connections to ``endpoint`` (a pool of threads ran the pages)."""
    with _callers_lock:
        caller = _callers.pop(endpoint, None)
    if caller is not None:
        caller.close()


def scan_digest(
    endpoint: dynamodb_direct.Endpoint,
    credentials: Any,
    *,
    table: str,
    total_segments: int,
    bucket: TokenBucket,
    stop: threading.Event,
    pool: Executor,
    page_attempts: int = 8,
) -> Digest:
    """The digest of every item of ``table``: ``total_segments`` segments paced here, their
    pages read and digested in ``pool``."""

    def segment_digest(segment: int) -> Digest:
        def fetch(start_key: Json | None, limit: int | None) -> PageDigest:
            task = PageTask(
                endpoint=endpoint,
                keys=dynamodb_direct.keys_of(credentials),
                table=table,
                segment=segment,
                total_segments=total_segments,
                start_key=start_key,
                limit=limit,
            )
            return pool.submit(digest_page, task).result()

        total = Digest()
        for page in paced(
            fetch,
            table=table,
            segment=segment,
            bucket=bucket,
            stop=stop,
            page_attempts=page_attempts,
        ):
            total.merge(page.digest)
        return total

    total = Digest()
    try:
        with ThreadPoolExecutor(max_workers=max(1, total_segments)) as segments:
            for digest in segments.map(segment_digest, range(total_segments)):
                total.merge(digest)
    finally:
        close_callers(endpoint)
    return total
