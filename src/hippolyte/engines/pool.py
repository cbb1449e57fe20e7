"""Structured concurrency for the engines: a bounded pool whose tasks share a stop signal of
their own. The group's first failure sets it (its siblings finish the page in flight and
stop); the caller's ``stop`` (Ctrl-C, SIGTERM, a run being stopped) reaches it too. A failure
inside one group never stops anything outside it: one table failing does not stop the run."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_EXCEPTION,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import TypeVar

from hippolyte.core.errors import Interrupted

T = TypeVar("T")
R = TypeVar("R")


def run_all(
    fn: Callable[[T, threading.Event], R],
    items: Sequence[T],
    *,
    workers: int,
    stop: threading.Event | None,
    name: str,
    interrupted: str,
) -> list[R]:
    """``fn(item, group_stop)`` over ``items`` on at most ``workers`` threads; results in the
    items' order. Raises the first real error (not an Interrupted it caused in a sibling)."""
    group = threading.Event()
    finished = threading.Event()
    if stop is not None:
        threading.Thread(
            target=_relay, args=(stop, group, finished), daemon=True, name=f"{name}-stop"
        ).start()
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(items) or 1)), thread_name_prefix=name
    )
    futures = [pool.submit(fn, item, group) for item in items]
    try:
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [e for f in done if (e := f.exception()) is not None]
        if errors:
            group.set()
            wait(pending)
            raise next((e for e in errors if not isinstance(e, Interrupted)), errors[0])
    except KeyboardInterrupt:
        group.set()
        wait(futures)
        raise Interrupted(interrupted) from None
    finally:
        finished.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return [f.result() for f in futures]


def _relay(outer: threading.Event, group: threading.Event, finished: threading.Event) -> None:
    while not finished.is_set():
        if outer.wait(0.1):
            group.set()
            return


def cpus() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def cpu_pool(processes: int, *, threads: int) -> Iterator[Executor]:
    """Processes for CPU-bound pure work (checking and digesting items), which threads would
    keep to one core. ``spawn``: each child starts clean, with this process's environment as it
    is now, not as a copy of a parent with threads and open connections; children leave Ctrl-C
    to the parent, which stops them.
    One process or fewer: ``threads`` threads in this process, with nothing to start."""
    if processes <= 1:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as local:
            yield local
        return
    pool = ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=signal.signal,
        initargs=(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
