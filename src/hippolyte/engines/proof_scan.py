"""The proof's read-back: scan a table and digest every item, the pages digested in the
processes of a CPU pool as they arrive.

Each segment is read here, page after page, paced by the table's token bucket and the page
sizer, retried without ever skipping a page, stopped by the stop signal; every segment keeps
its next request in flight while the pool digests, and at most ``ahead`` pages wait to be
digested, so memory stays bounded when the scan outruns the digests. Two ways to read:

- ``direct_digest`` (the default): the load's signed ``http.client`` calls
  (``dynamodb_direct``), no botocore request path or response parser. Only the answer's head
  is decoded here (the next key, the count, the cost); the body goes to the pool as it is,
  where the items are cut out and digested.
- ``botocore_digest``, behind a proxy (botocore knows how to reach it): botocore's Scan with
  the items cut out raw here (``dynamodb.scan_page``); the pool digests them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from hippolyte.adapters import dynamodb, dynamodb_direct
from hippolyte.core.model import Json
from hippolyte.core.pacing import TokenBucket
from hippolyte.core.proof import Digest, digest_of
from hippolyte.engines.segment import P, paced, scan_fetcher


def digest_body(body: bytes) -> Digest:
    """In a worker: the digest of the items of one Scan answer."""
    page = dynamodb.split_scan_body(body)
    return digest_of([dynamodb.one_line(bytes(item)) for item in page.Items])


def direct_digest(
    endpoint: dynamodb_direct.Endpoint,
    credentials: Any,
    *,
    table: str,
    total_segments: int,
    bucket: TokenBucket,
    stop: threading.Event,
    pool: Executor,
    ahead: int,
) -> Digest:
    caller = dynamodb_direct.Caller(endpoint)

    def fetch(segment: int, start_key: Json | None, limit: int | None) -> Any:
        return dynamodb_direct.scan(
            caller,
            dynamodb_direct.keys_of(credentials),
            table=table,
            segment=segment,
            total_segments=total_segments,
            start_key=start_key,
            limit=limit,
        )

    try:
        return _scan_digest(
            fetch,
            lambda page: (digest_body, page.body),
            table=table,
            total_segments=total_segments,
            bucket=bucket,
            stop=stop,
            pool=pool,
            ahead=ahead,
        )
    finally:
        caller.close()


def botocore_digest(
    client: Any,
    *,
    table: str,
    total_segments: int,
    bucket: TokenBucket,
    stop: threading.Event,
    pool: Executor,
    ahead: int,
) -> Digest:
    return _scan_digest(
        scan_fetcher(client, table=table, total_segments=total_segments),
        lambda page: (digest_of, page.items),
        table=table,
        total_segments=total_segments,
        bucket=bucket,
        stop=stop,
        pool=pool,
        ahead=ahead,
    )


def _scan_digest(
    fetch: Callable[[int, Json | None, int | None], P],
    work: Callable[[P], tuple[Callable[[Any], Digest], Any]],
    *,
    table: str,
    total_segments: int,
    bucket: TokenBucket,
    stop: threading.Event,
    pool: Executor,
    ahead: int,
    page_attempts: int = 8,
) -> Digest:
    """``fetch(segment, start_key, limit)`` over every page of every segment; ``work(page)``
    the function and argument that digest the page in ``pool``."""
    in_flight = threading.Semaphore(ahead)  # pages read but not yet digested

    def segment_digests(segment: int) -> list[Future[Digest]]:
        futures = []
        for page in paced(
            lambda start_key, limit: fetch(segment, start_key, limit),
            table=table,
            segment=segment,
            bucket=bucket,
            stop=stop,
            page_attempts=page_attempts,
        ):
            in_flight.acquire()
            fn, arg = work(page)
            future = pool.submit(fn, arg)
            future.add_done_callback(lambda _: in_flight.release())
            futures.append(future)
        return futures

    total = Digest()
    with ThreadPoolExecutor(max_workers=max(1, total_segments)) as segments:
        for futures in segments.map(segment_digests, range(total_segments)):
            for future in futures:
                total.merge(future.result())
    return total
