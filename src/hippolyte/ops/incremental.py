"""``backup --incremental``: each table's changes since the end of its chain, committed as
change sets from DynamoDB's native incremental exports (``engines.incremental``).

A table's chain starts at its newest full backup's start (a scan backup is not a snapshot:
replaying the changes made since its start is what makes it exact) and continues through its
change sets; the next window starts where the chain ends, at the later of the two. From there
up to now (less ``CLOCK_MARGIN``: DynamoDB's clock may differ from ours by about a minute),
windows of at most 24 hours are exported one after another, each starting exactly where the
previous one ended. Less than 15 minutes to export (DynamoDB's shortest window): nothing is
done and the result says so. A window that fails stops the table with its error: nothing of it
is committed, so the chain ends before it, visibly, and the next run retries from there.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.errors import HippolyteError, Interrupted
from hippolyte.core.events import Emit, Note
from hippolyte.core.model import TableInfo
from hippolyte.engines.export import POLL_S, ExportUnavailable
from hippolyte.engines.incremental import (
    Exporter,
    Window,
    export_window,
    restorable_since,
    s3_root,
    start_export,
)
from hippolyte.repo import catalog, changes, manifest

MAX_WINDOW = dt.timedelta(hours=24)
MIN_WINDOW = dt.timedelta(minutes=15)
CLOCK_MARGIN = dt.timedelta(minutes=2)

Clock = Callable[[], dt.datetime]


def next_window(*, start: dt.datetime, now: dt.datetime) -> Window | None:
    """The window to export from ``start``: up to 24 hours, ending at the latest at ``now`` less
    the clock margin (whole seconds); None when that leaves less than 15 minutes."""
    limit = (now - CLOCK_MARGIN).replace(microsecond=0)
    end = min(start + MAX_WINDOW, limit)
    return Window(start=start, end=end) if end - start >= MIN_WINDOW else None


def windows(*, start: dt.datetime, now: dt.datetime) -> list[Window]:
    """Every window from ``start`` to ``now``, chained (each starts where the previous ends);
    what is left (under 15 minutes) waits for the next run."""
    out: list[Window] = []
    while (w := next_window(start=out[-1].end if out else start, now=now)) is not None:
        out.append(w)
    return out


@dataclass(frozen=True, kw_only=True)
class ChainEnd:
    at: dt.datetime
    after: str  # what ends there, for messages


def chain_end(storage: Storage, table: str) -> ChainEnd | None:
    """Where ``table``'s next change set starts: the end of its last change set or the start of
    its newest full backup (to the second), whichever is later; None without either."""
    sets = changes.change_sets(storage, table)
    last = max(sets, key=lambda c: c.end, default=None)
    found = (
        ChainEnd(at=changes.from_micros(last.end), after=f"change set {last.id}") if last else None
    )
    backup = _newest_backup_start(storage, table)
    if backup is not None and (found is None or backup.at > found.at):
        return backup
    return found


def _newest_backup_start(storage: Storage, table: str) -> ChainEnd | None:
    for ref in sorted(catalog.refs(storage, table), key=lambda r: r.backup_id, reverse=True):
        if not catalog.is_complete(storage, ref):
            continue
        try:
            started = str(catalog.load_descriptor(storage, ref)["backup"]["startTime"])
            at = dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
        except HippolyteError:  # the EMR connector's format: no descriptor; the id is the start
            at = manifest.parse_backup_id(ref.backup_id)
        return ChainEnd(at=at.astimezone(dt.UTC).replace(microsecond=0), after=f"backup {ref}")
    return None


@dataclass(frozen=True, kw_only=True)
class IncrementalResult:
    """One table's incremental backup: the change sets committed, or why none."""

    table: str
    ok: bool
    sets: list[dict[str, Any]] = field(default_factory=list)  # id, from, to, changes, exportArn
    changes: int = 0
    note: str | None = None  # e.g. less than 15 minutes to export
    error: str | None = None
    next_from: str | None = None  # where the next run starts (ISO 8601)
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Run:
    """What one table's windows share."""

    client: Any
    storage: Storage
    emit: Emit
    stop: threading.Event | None
    now: dt.datetime
    exporter: Exporter
    poll_s: float
    skip_without_pitr: bool


def incremental_backup(
    tables: Sequence[str],
    *,
    conn: aws.Connection,
    storage: Storage,
    emit: Emit,
    stop: threading.Event | None = None,
    clock: Clock = lambda: dt.datetime.now(dt.UTC),
    exporter: Exporter = start_export,
    poll_s: float = POLL_S,
    max_attempts: int = 10,
    skip_without_pitr: bool = False,
) -> list[IncrementalResult]:
    """Export and commit each table's changes since its chain's end, table after table. A local
    repository, or a table that does not exist, fails the command before anything starts."""
    s3_root(storage)
    client = dynamodb.control_client(conn, max_attempts=max_attempts)
    infos = [dynamodb.describe(client, name) for name in tables]
    storage.check_writable()
    return [
        _table(
            info,
            Run(
                client=client,
                storage=storage,
                emit=emit,
                stop=stop,
                now=clock(),
                exporter=exporter,
                poll_s=poll_s,
                skip_without_pitr=skip_without_pitr,
            ),
        )
        for info in infos
    ]


def _table(info: TableInfo, run: Run) -> IncrementalResult:
    began, sets = time.monotonic(), []
    start: dt.datetime | None = None
    try:
        start, note = _start(info, run)
        while start is not None and (w := next_window(start=start, now=run.now)) is not None:
            sets.append(_window(info, w, run))
            start = dt.datetime.fromisoformat(sets[-1]["to"])
        if note is None and not sets and start is not None:
            note = (
                f"less than {MIN_WINDOW.seconds // 60} minutes since {start.isoformat()} "
                "(the end of the chain): nothing to export yet"
            )
    except Interrupted:
        raise
    except HippolyteError as exc:
        retry = f" (the next run starts again from {start.isoformat()})" if start else ""
        return _result(info, sets, began, ok=False, error=f"{exc}{retry}", start=start)
    if note:
        run.emit(Note(text=note, table=info.name))
    return _result(info, sets, began, ok=True, note=note, start=start)


def _start(info: TableInfo, run: Run) -> tuple[dt.datetime | None, str | None]:
    """Where this table's export starts, or (None, why not) for a table left out."""
    try:
        earliest = restorable_since(run.client, info.name)
    except ExportUnavailable as exc:
        if not run.skip_without_pitr:
            raise
        return None, f"{exc}: left out"
    end = chain_end(run.storage, info.name)
    if end is None:
        raise HippolyteError(
            f"{info.name} has no full backup in {run.storage.url} to build on: back it up "
            "first (`hippolyte backup TABLE`)"
        )
    if end.at < earliest:
        raise HippolyteError(
            f"a gap: the chain ends at {end.at.isoformat()} ({end.after}) but DynamoDB can "
            f"export only from {earliest.isoformat()} (point-in-time recovery's earliest "
            "restorable time); the changes in between are lost to exports, and the next full "
            "backup starts a new chain"
        )
    return end.at, None


def _window(info: TableInfo, w: Window, run: Run) -> dict[str, Any]:
    span = f"[{w.start.isoformat()}, {w.end.isoformat()})"
    run.emit(Note(text=f"incremental export of {span}", table=info.name))
    committed = export_window(
        client=run.client,
        storage=run.storage,
        table=info.name,
        table_arn=info.arn,
        window=w,
        stop=run.stop,
        exporter=run.exporter,
        poll_s=run.poll_s,
    )
    done = {
        "id": committed.id,
        "from": changes.from_micros(committed.start).isoformat(),
        "to": changes.from_micros(committed.end).isoformat(),
        "changes": committed.count,
        "exportArn": committed.source.get("exportArn"),
    }
    run.emit(
        Note(
            text=f"committed change set {committed.id}: {committed.count} changes",
            table=info.name,
        )
    )
    return done


def _result(
    info: TableInfo,
    sets: list[dict[str, Any]],
    began: float,
    *,
    ok: bool,
    start: dt.datetime | None,
    note: str | None = None,
    error: str | None = None,
) -> IncrementalResult:
    return IncrementalResult(
        table=info.name,
        ok=ok,
        sets=sets,
        changes=sum(int(s["changes"]) for s in sets),
        note=note,
        error=error,
        next_from=start.isoformat() if start else None,
        duration_s=time.monotonic() - began,
    )


def incremental_selected(
    settings: Settings, *, emit: Emit, stop: threading.Event | None = None
) -> list[IncrementalResult]:
    """``backup --incremental --all``: every selected table of every target that has
    point-in-time recovery (the others are reported and left out)."""
    from hippolyte.ops.context import storage_for
    from hippolyte.ops.discover import discover

    results: list[IncrementalResult] = []
    for target in settings.effective_targets():
        conn = target.connection()
        rules = settings.selection.rules()
        selected = discover(conn=conn, rules=rules, max_attempts=settings.max_attempts)
        results += incremental_backup(
            [s.table.name for s in selected if s.selected],
            conn=conn,
            storage=storage_for(settings, target),
            emit=emit,
            stop=stop,
            max_attempts=settings.max_attempts,
            skip_without_pitr=True,
        )
    return results
