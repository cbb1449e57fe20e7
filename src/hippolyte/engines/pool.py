"""Structured concurrency for the engines: a bounded pool whose tasks share a stop signal of
their own. The group's first failure sets it (its siblings finish the page in flight and
stop); the caller's ``stop`` (Ctrl-C, SIGTERM, a run being stopped) reaches it too. A failure
inside one group never stops anything outside it: one table failing does not stop the run."""

from __future__ import annotations

import contextlib
import logging
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

log = logging.getLogger(__name__)
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
    with relayed(stop, group, name=f"{name}-stop"):
        return _run_all(fn, items, group=group, workers=workers, name=name, interrupted=interrupted)


def _run_all(
    fn: Callable[[T, threading.Event], R],
    items: Sequence[T],
    *,
    group: threading.Event,
    workers: int,
    name: str,
    interrupted: str,
) -> list[R]:
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
        pool.shutdown(wait=True, cancel_futures=True)
    return [f.result() for f in futures]


@contextlib.contextmanager
def relayed(
    outer: threading.Event | None, inner: threading.Event, *, name: str
) -> Iterator[threading.Event]:
    """While the block runs, ``outer`` being set sets ``inner`` (a group's or a job's own
    stop, which something else may set too); ``inner``."""
    if outer is None:
        yield inner
        return
    finished = threading.Event()
    thread = threading.Thread(target=_relay, args=(outer, inner, finished), daemon=True, name=name)
    thread.start()
    try:
        yield inner
    finally:
        finished.set()
        thread.join()


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
def cpu_pool(processes: int, *, threads: int, imports: Sequence[str]) -> Iterator[Executor]:
    """Processes for CPU-bound pure work (checking and digesting items), which threads would
    keep to one core. Forked from a fork server (``_context``): one clean interpreter, started
    once per process without this one's threads and open connections, that has imported what
    the work needs (``imports``: the modules whose functions the pool runs), so that each child
    costs a fork rather than an interpreter's start-up and imports (~0.3 s of CPU for the
    check's modules, which import boto3; ~0.05 s for the digests'). A child takes this
    process's environment as it is now (the fork server keeps the one it started with) and
    leaves Ctrl-C to the parent, which stops it.
    One process or fewer, or where processes cannot share a queue (no POSIX semaphores, as in
    AWS Lambda): ``threads`` threads in this process, with nothing to start."""
    if processes <= 1:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as local:
            yield local
        return
    global _open_pools
    with _pools_lock:
        _open_pools += 1
    try:
        try:
            pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=_context(imports),
                initializer=_child,
                initargs=(dict(os.environ),),
            )
        except OSError as exc:  # no POSIX semaphores here (AWS Lambda has no /dev/shm)
            log.warning("no process pool here, using threads", extra={"error": str(exc)})
            with ThreadPoolExecutor(max_workers=max(1, threads)) as local:
                yield local
            return
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        with _pools_lock:
            _open_pools -= 1
            if _open_pools == 0:
                _stop_fork_server()


_open_pools = 0
_pools_lock = threading.Lock()


def _context(imports: Sequence[str]) -> multiprocessing.context.BaseContext:
    """The fork server imports the main module (a child that finds it there does not import it
    again; the console script's, ``hippolyte.__main__``, imports the CLI only when it runs), this
    module (``_child``) and ``imports``. A fork server in use keeps what it imported: a pool
    opened beside another shares it, and its children import what else they need."""
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__, *imports])
    return context


def _stop_fork_server() -> None:
    """Stop the fork server and reap it (its CPU, and its children's, then counts as this
    process's) once no pool needs it; the next pool starts another. ``_stop`` is the
    standard library's own way, private (its tests use it): without it the server exits
    with this process."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _child(environ: dict[str, str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environ)
