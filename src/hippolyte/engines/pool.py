"""Structured concurrency for the engines: a bounded pool in which the first failure stops
its siblings (through ``stop``), every task finishes or notices the stop before the call
returns, and Ctrl-C does the same before raising Interrupted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from hippolyte.errors import Interrupted

T = TypeVar("T")
R = TypeVar("R")


def run_all(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    stop: threading.Event,
    name: str,
    interrupted: str,
) -> list[R]:
    """``fn`` over ``items`` on at most ``workers`` threads; results in the items' order.
    Raises the first real error (not an Interrupted caused by another task's failure)."""
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(items) or 1)), thread_name_prefix=name
    )
    futures = [pool.submit(fn, item) for item in items]
    try:
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [e for f in done if (e := f.exception()) is not None]
        if errors:
            stop.set()
            wait(pending)
            raise next((e for e in errors if not isinstance(e, Interrupted)), errors[0])
    except KeyboardInterrupt:
        stop.set()
        wait(futures)
        raise Interrupted(interrupted) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [f.result() for f in futures]
