"""Processes racing for one repository's lock, through the code paths ``serve`` and the Lambda
take it by: ``Daemon.run_job`` (its job replaced by a short hold) and ``aws_lambda._locked``.
Each holder appends its enter and exit times (CLOCK_MONOTONIC, shared by the processes of a
host) to one file; two holders at once show as overlapping intervals. Used by
tests/test_lock_race.py (a few dozen rounds) and bench/bench_lock.py (100). Test code: it stays
out of the wheel.

Network latency is simulated in each process: every storage call on ``@locks/`` waits before it
is sent and before its answer arrives, 0..``latency`` s, and one time in five 3 to 8 times that,
as S3's tail latencies do. A lock whose correctness rests on timing (write, wait 50 ms, read
back) then fails; one that rests on compare-and-swap does not.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAIL = 0.2  # the share of slow answers
HOLD_S = 0.2  # how long a holder keeps the lock each round (a job, much longer)
SLOWED = (
    "get_bytes",
    "put_bytes",
    "delete",
    "exists",
    "get_tagged",
    "put_if_absent",
    "replace_if",
    "delete_if",
)

_inside = threading.local()  # a storage call made by another (a folder's compare-and-swap)


@dataclass(frozen=True)
class Outcome:
    rounds: int
    holds: int  # rounds in which someone held the lock
    overlaps: list[tuple[str, str]]  # pairs of holders ("kind pid") that held it at once

    @property
    def per_round(self) -> float:
        return self.holds / self.rounds if self.rounds else 0.0


def race(
    url: str,
    *,
    kinds: Sequence[str] = ("serve", "serve", "lambda"),
    rounds: int,
    latency: float,
    record: Path,
    hold: float = HOLD_S,
    env: dict[str, str] | None = None,
) -> Outcome:
    """``len(kinds)`` processes, each trying once a round (rounds start together). Forked,
    with the front-ends imported first: a spawned process takes seconds to import them."""
    import hippolyte.aws_lambda
    import hippolyte.serve.daemon  # noqa: F401

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(kinds))
    procs = [
        ctx.Process(
            target=_contender,
            args=(kind, url, dict(env or {}), barrier, rounds, latency, hold, str(record)),
        )
        for kind in kinds
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=60 + rounds * 2)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"a contender failed (exit codes {failed}); see its stderr")
    intervals = sorted(_intervals(record))
    overlaps = [
        (a[2], b[2])
        for i, a in enumerate(intervals)
        for b in intervals[i + 1 :]
        if b[0] < a[1]  # b entered before a left
    ]
    return Outcome(rounds=rounds, holds=len(intervals), overlaps=overlaps)


def _intervals(record: Path) -> Iterator[tuple[int, int, str]]:
    entered: dict[str, int] = {}
    for line in record.read_text().splitlines():
        who, what, at = line.rsplit(" ", 2)
        if what == "enter":
            entered[who] = int(at)
        else:
            yield entered.pop(who), int(at), who


def _contender(
    kind: str,
    url: str,
    env: dict[str, str],
    barrier: Any,
    rounds: int,
    latency: float,
    hold: float,
    record: str,
) -> None:
    os.environ.update(env)
    _slow_storage(latency)
    take = _path_of(kind, url, functools.partial(_hold, f"{kind} {os.getpid()}", record, hold))
    for _ in range(rounds):
        barrier.wait(timeout=120)
        time.sleep(random.uniform(0, latency))
        take()


def _hold(who: str, record: str, hold: float) -> None:
    _append(record, f"{who} enter {time.monotonic_ns()}")
    time.sleep(hold)
    _append(record, f"{who} exit {time.monotonic_ns()}")


def _append(record: str, line: str) -> None:
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _path_of(kind: str, url: str, hold: Callable[[], None]) -> Callable[[], object]:
    """How ``kind`` takes the lock, with ``hold`` as its job."""
    from hippolyte import aws_lambda
    from hippolyte.core import config
    from hippolyte.core.errors import HippolyteError
    from hippolyte.serve.daemon import Daemon

    settings = config.validate(
        {"repository": url, "targets": [{"region": "us-east-1"}], "serve": {"lock_lease_s": 30}},
        source="lock race",
    )
    if kind == "serve":
        daemon = Daemon(settings=settings, stop=threading.Event())

        def job() -> str:
            hold()
            return "ok"

        daemon._backup = job
        return functools.partial(daemon.run_job, "backup")

    def run(_lost: threading.Event) -> dict[str, Any]:
        hold()
        return {}

    def invoke() -> object:
        try:
            return aws_lambda._locked(settings, "backup", run)
        except HippolyteError:  # "skipped: another run holds the lock"
            return None

    return invoke


def _slow_storage(latency: float) -> None:
    """Every storage call on ``@locks/`` lags on its way there and back (``_lag``)."""
    from hippolyte.adapters import storage

    for cls in (storage.LocalStorage, storage.S3Storage):
        for name in SLOWED:
            original = getattr(cls, name, None)
            if original is not None:
                setattr(cls, name, _slowed(original, latency))
        cls.list = _slowed_list(cls.list, latency)


def _slowed(original: Callable[..., Any], latency: float) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if "@locks/" not in key or getattr(_inside, "call", False):
            return original(self, key, *args, **kwargs)  # one request: lags once
        _inside.call = True
        _lag(latency)
        try:
            return original(self, key, *args, **kwargs)
        finally:
            _lag(latency)
            _inside.call = False

    return call


def _slowed_list(original: Callable[..., Any], latency: float) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(self: Any, prefix: str = "") -> Iterator[str]:
        if "@locks/" not in prefix:
            return original(self, prefix)
        _lag(latency)
        keys = list(original(self, prefix))
        _lag(latency)
        return iter(keys)

    return call


def _lag(latency: float) -> None:
    tail = random.random() < TAIL
    time.sleep(random.uniform(3 * latency, 8 * latency) if tail else random.uniform(0, latency))
