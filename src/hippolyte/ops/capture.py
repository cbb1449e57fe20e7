"""Capture: read the DynamoDB Streams of the selected tables into change sets in the
repository, one thread per table, until stopped (SIGTERM, Ctrl-C: what was read is committed
and checkpointed) or, with ``once``, until every shard is read to its end.

A table is captured only if its stream carries new images (``NEW_AND_OLD_IMAGES`` or
``NEW_IMAGE``); a table without a stream is reported and left as it is, unless
``enable_stream`` (then UpdateTable turns on a ``NEW_AND_OLD_IMAGES`` stream).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hippolyte.adapters import aws, dynamodb, streams
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import AwsError, HippolyteError
from hippolyte.core.events import Emit, Note
from hippolyte.core.model import Json
from hippolyte.core.selection import Rules
from hippolyte.engines.capture import CaptureSettings, TableCapture
from hippolyte.ops.discover import discover
from hippolyte.repo.capture_state import lock_key
from hippolyte.repo.lock import RepoLock

ENABLE_WAIT_S = 60.0
LEASE_S = 300.0  # a capture's lease on its table, renewed while it runs


@dataclass(frozen=True, kw_only=True)
class CaptureParams:
    flush_seconds: float = 60.0
    flush_bytes: int = 64 << 20
    poll_seconds: float = 1.0
    once: bool = False
    enable_stream: bool = False
    max_attempts: int = 10

    def settings(self) -> CaptureSettings:
        return CaptureSettings(
            flush_seconds=self.flush_seconds,
            flush_bytes=self.flush_bytes,
            poll_seconds=self.poll_seconds,
            once=self.once,
        )


@dataclass(kw_only=True)
class CaptureResult:
    table: str
    # stopped | caught-up | stream-disabled: captured; busy: another capture holds the table;
    # no-stream | unusable-stream: left unchanged; failed: see error
    status: str
    stream_arn: str | None = None
    enabled: bool = False  # the stream was turned on by this run
    records: int = 0
    change_sets: int = 0
    gaps: list[Json] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "no-stream", "unusable-stream")


def capture(
    tables: Sequence[str] = (),
    *,
    conn: aws.Connection,
    storage: Storage,
    params: CaptureParams,
    emit: Emit,
    stop: threading.Event,
    rules: Rules | None = None,
) -> list[CaptureResult]:
    """Capture the named tables, or without names every table ``rules`` select."""
    names = list(tables) or [
        s.table.name
        for s in discover(conn=conn, rules=rules or Rules(), max_attempts=params.max_attempts)
        if s.selected
    ]
    control = dynamodb.control_client(conn, max_attempts=params.max_attempts)
    storage.check_writable()
    results: dict[str, CaptureResult] = {}
    ready: list[tuple[str, str]] = []
    for name in names:
        arn, result = _stream_of(control, name, params=params, emit=emit)
        if result is not None:
            results[name] = result
        if arn is not None:
            ready.append((name, arn))
    if ready:
        client = streams.client(conn, max_attempts=params.max_attempts, pool=len(ready) + 2)
        with ThreadPoolExecutor(len(ready), thread_name_prefix="hippolyte-capture") as pool:
            futures = {
                name: pool.submit(
                    _run_one,
                    name,
                    arn,
                    client=client,
                    storage=storage,
                    params=params,
                    emit=emit,
                    stop=stop,
                )
                for name, arn in ready
            }
            for name, future in futures.items():
                outcome = future.result()
                if name in results:  # enabled by this run
                    outcome.enabled = True
                results[name] = outcome
    return [results[n] for n in names]


def _stream_of(
    control: Any, table: str, *, params: CaptureParams, emit: Emit
) -> tuple[str | None, CaptureResult | None]:
    """The ARN of the table's stream when it can be captured; else a result saying why."""
    desc = dynamodb.describe(control, table).description
    arn, view = streams.table_stream(desc)
    if arn and view in streams.STREAM_VIEWS:
        return arn, None
    if arn:
        text = (
            f"table {table!r}: its stream's view is {view}, which carries no new images; "
            "capture needs NEW_AND_OLD_IMAGES or NEW_IMAGE (left unchanged)"
        )
        emit(Note(text=text, level="warning", table=table))
        return None, CaptureResult(table=table, status="unusable-stream", error=text, exit_code=1)
    if not params.enable_stream:
        text = f"table {table!r} has no stream; left unchanged (--enable-stream turns one on)"
        emit(Note(text=text, level="warning", table=table))
        return None, CaptureResult(table=table, status="no-stream", error=text, exit_code=1)
    streams.enable_stream(control, table)
    emit(Note(text=f"table {table!r}: stream enabled (NEW_AND_OLD_IMAGES)", table=table))
    deadline = time.monotonic() + ENABLE_WAIT_S
    while time.monotonic() < deadline:
        desc = dynamodb.describe(control, table).description
        arn, view = streams.table_stream(desc)
        if arn and desc.get("TableStatus", "ACTIVE") == "ACTIVE":
            return arn, CaptureResult(table=table, status="enabled", stream_arn=arn, enabled=True)
        time.sleep(0.5)
    raise AwsError(f"table {table!r}: its stream was not enabled after {ENABLE_WAIT_S:.0f} s")


def _run_one(
    table: str,
    arn: str,
    *,
    client: Any,
    storage: Storage,
    params: CaptureParams,
    emit: Emit,
    stop: threading.Event,
) -> CaptureResult:
    """One table's capture; its failure is its own (the other tables go on). One capture of
    a table at a time, wherever it runs (the CLI, `serve`, the Lambda function): a lease in
    ``<table>/@capture/lock.json``; a table whose lease another holds is left to it."""
    lock = RepoLock(storage=storage, lease_s=LEASE_S, purpose="capture", key=lock_key(table))
    if not lock.acquire():
        emit(Note(text=f"{table}: another capture holds it; left to that one", table=table))
        return CaptureResult(table=table, status="busy", stream_arn=arn)
    try:
        return _captured(
            table, arn, client=client, storage=storage, params=params, emit=emit, stop=stop
        )
    finally:
        lock.release()


def _captured(
    table: str,
    arn: str,
    *,
    client: Any,
    storage: Storage,
    params: CaptureParams,
    emit: Emit,
    stop: threading.Event,
) -> CaptureResult:
    engine = TableCapture(
        client=client,
        storage=storage,
        table=table,
        stream_arn=arn,
        settings=params.settings(),
        emit=emit,
        stop=stop,
    )
    try:
        summary = engine.run()
    except HippolyteError as exc:
        emit(Note(text=f"capture of {table!r} failed: {exc}", level="error", table=table))
        s = engine.summary
        return CaptureResult(
            table=table,
            status="failed",
            stream_arn=arn,
            records=s.records,
            change_sets=s.change_sets,
            gaps=s.gaps,
            error=str(exc),
            exit_code=int(exc.exit_code),
        )
    return CaptureResult(
        table=table,
        status=summary.ended,
        stream_arn=arn,
        records=summary.records,
        change_sets=summary.change_sets,
        gaps=summary.gaps,
    )
