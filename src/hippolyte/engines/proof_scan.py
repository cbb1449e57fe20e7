"""The proof's read-back: scan a table and digest every item, the pages digested in the
processes of a CPU pool as they arrive.

Each segment is read here, page after page, paced by the table's token bucket and the page
sizer, retried without ever skipping a page, stopped by the stop signal; every segment keeps
its next request in flight while the pool digests, and at most ``ahead`` pages wait to be
digested, so memory stays bounded when the scan outruns the digests. The pages are read over
the load's signed ``http.client`` calls (``dynamodb_direct``), no botocore request path or
response parser: only the answer's head is decoded here (the next key, the count, the cost),
which the next request needs at once; the body goes to the pool as it is, where the items are
cut out and digested. Behind a proxy (botocore knows how to reach it), botocore's Scan reads
the pages, the items cut out raw here (``dynamodb.scan_page``), and the pool digests them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from hippolyte.adapters import aws, dynamodb, dynamodb_direct
from hippolyte.core.model import Json
from hippolyte.core.pacing import TokenBucket
from hippolyte.core.proof import Digest, digest_of, digest_of_answer
from hippolyte.engines.segment import paced, scan_fetcher

# The modules whose functions the pool runs (``pool.cpu_pool``): the digests need no other.
POOL_IMPORTS = ("hippolyte.core.proof",)


def scan_digest(
    conn: aws.Connection,
    *,
    table: str,
    total_segments: int,
    bucket: TokenBucket,
    stop: threading.Event,
    pool: Executor,
    ahead: int,
    page_attempts: int = 8,
) -> Digest:
    """The digest of every item of ``table``: ``total_segments`` segments read here, their
    pages digested in ``pool``, at most ``ahead`` of them waiting."""
    client = dynamodb.raw_scan_client(conn, pool=total_segments + 2)
    caller = dynamodb_direct.open_caller(conn, client=client)
    fetch: Callable[[int, Json | None, int | None], Any]
    if caller is None:  # a proxy: botocore reads
        fetch, close = (
            scan_fetcher(client, table=table, total_segments=total_segments),
            client.close,
        )

        def submit(page: Any) -> Future[Digest]:
            return pool.submit(digest_of, page.items)

    else:
        client.close()
        close = caller.close

        def fetch(segment: int, start_key: Json | None, limit: int | None) -> Any:
            return dynamodb_direct.scan(
                caller,
                table=table,
                segment=segment,
                total_segments=total_segments,
                start_key=start_key,
                limit=limit,
            )

        def submit(page: Any) -> Future[Digest]:
            return pool.submit(digest_of_answer, page.body)

    in_flight = threading.Semaphore(ahead)  # pages read but not yet digested

    def segment_digests(segment: int) -> list[Future[Digest]]:
        futures = []
        for page in paced(
            fetch,
            table=table,
            segment=segment,
            bucket=bucket,
            stop=stop,
            page_attempts=page_attempts,
        ):
            in_flight.acquire()
            future = submit(page)
            future.add_done_callback(lambda _: in_flight.release())
            futures.append(future)
        return futures

    total = Digest()
    try:
        with ThreadPoolExecutor(max_workers=max(1, total_segments)) as segments:
            for futures in segments.map(segment_digests, range(total_segments)):
                for future in futures:
                    total.merge(future.result())
    finally:
        close()
    return total
