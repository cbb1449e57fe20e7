"""``hippolyte copy``: committed backups and change sets copied to another repository (another
account, region, or a local disk), as ``[[copies]]`` makes ``serve`` and the Lambda do after
each monitor.

Per backup or change set, in this order: the destination's folder is listed; if it holds a
``_SUCCESS``, the copy is skipped when it holds the same files and the same manifest, and left
alone (failed) when it holds another; files of an earlier attempt that the source does not
have are removed; every other file is sent and proven to have arrived (``copy_send``), files
already there and matching are not sent again; ``_SUCCESS`` is written last, only once every
file is proven. A copy killed at any point leaves at most an uncommitted folder, which readers
ignore and the next copy completes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.config import Copy, ObjectLock
from hippolyte.core.errors import (
    BackupCorrupt,
    CredentialsError,
    HippolyteError,
    Interrupted,
    RepositoryError,
)
from hippolyte.core.events import Emit, ItemsRead, Note, ReadStarted, Step, discard
from hippolyte.core.model import BackupRef, Connection
from hippolyte.ops.copy_send import FileJob, Sender, Sent
from hippolyte.ops.copy_units import Unit, committed, lagging, refuse_same, select
from hippolyte.repo import catalog, changes, manifest, proofs

__all__ = [
    "CopyReport",
    "Copied",
    "Unit",
    "committed",
    "copy",
    "copy_by_config",
    "lagging",
    "open_destination",
    "select",
]
Action = Literal["copied", "skipped", "failed"]
WORKERS = 8  # files in flight; as many parts of big files besides
FATAL = (CredentialsError, RepositoryError)  # the next backup would fail the same way


@dataclass(kw_only=True)
class Copied:
    unit: Unit
    action: Action
    files: int = 0  # files sent
    bytes: int = 0  # bytes sent
    reused: int = 0  # files the destination already held, from a copy that stopped
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.unit.to_json(),
            "action": self.action,
            "files": self.files,
            "bytes": self.bytes,
            "reusedFiles": self.reused,
            "error": self.error,
        }


@dataclass(kw_only=True)
class CopyReport:
    source: str
    destination: str
    results: list[Copied] = field(default_factory=list)
    error: str | None = None  # the destination could not be used at all ([[copies]])

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.action != "failed" for r in self.results)

    def count(self, action: Action) -> int:
        return sum(1 for r in self.results if r.action == action)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "ok": self.ok,
            "error": self.error,
            "copied": self.count("copied"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "bytes": sum(r.bytes for r in self.results),
            "copies": [r.to_json() for r in self.results],
        }


def open_destination(
    url: str,
    *,
    conn: Connection,
    endpoint_url: str | None = None,
    object_lock: ObjectLock | None = None,
) -> Storage:
    """The destination repository; with ``object_lock`` every object is written with that
    retention, and a bucket without Object Lock is refused before anything is written."""
    return open_storage(url, conn=conn, s3_endpoint_url=endpoint_url, object_lock=object_lock)


# -- copying -------------------------------------------------------------------------------------


def copy(
    source: Storage,
    dest: Storage,
    *,
    refs: Sequence[str] = (),
    only: Callable[[str], bool] | None = None,
    workers: int = WORKERS,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> CopyReport:
    """Copy the committed backups and change sets ``refs`` names (all, filtered by ``only``,
    when none) from ``source`` to ``dest``. Refused before anything is written: the same
    repository (ConfigError), an unknown table or backup (BackupNotFound), a destination that
    cannot be written (RepositoryError, CredentialsError)."""
    refuse_same(source, dest)
    chosen = select(source, refs, only=only)
    dest.check_writable()
    units = sorted(chosen, key=Unit.sort_key)
    emit(Step(text=f"copy {source.url} -> {dest.url}: {len(units):,} backups and change sets"))
    report = CopyReport(source=source.url, destination=dest.url)
    with _Run(source, dest, workers=workers, emit=emit, stop=stop) as run:
        report.results = run.all(units, chosen)
    emit(
        Step(
            text=f"copy: {report.count('copied'):,} copied, {report.count('skipped'):,} "
            f"already there, {report.count('failed'):,} failed"
        )
    )
    return report


def copy_by_config(
    storage: Storage, copies: Sequence[Copy], *, emit: Emit = discard
) -> list[CopyReport]:
    """``[[copies]]`` for one repository, as ``serve`` and the Lambda run it after each
    monitor: every destination gets what it lacks of the tables it wants. A destination that
    cannot be used is reported, and the next one is still copied to."""
    reports = []
    for c in copies:
        try:
            dest = open_destination(
                c.to, conn=c.connection(), endpoint_url=c.endpoint_url, object_lock=c.object_lock
            )
            reports.append(copy(storage, dest, only=c.wants, emit=emit))
        except HippolyteError as exc:
            reports.append(CopyReport(source=storage.url, destination=c.to, error=str(exc)))
    return reports


@dataclass(kw_only=True)
class _Pending:
    unit: Unit
    futures: list[Future[Sent]]


class _Run:
    """The copy's pools: files of up to ``workers`` backups in flight, committed in order."""

    def __init__(
        self,
        source: Storage,
        dest: Storage,
        *,
        workers: int,
        emit: Emit,
        stop: threading.Event | None,
    ) -> None:
        self.source, self.dest, self.emit, self.workers = source, dest, emit, max(1, workers)
        self.stop = stop or threading.Event()
        self.sender = Sender(source, dest, parts=self.workers, stop=self.stop)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="copy-file")
        self.fatal: HippolyteError | None = None

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.stop.set()  # the files in flight stop before their next part
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.sender.close()

    def all(self, units: list[Unit], keys: dict[Unit, list[str]]) -> list[Copied]:
        results: list[Copied] = []
        window: deque[Copied | _Pending] = deque()
        for unit in units:
            if self.stop.is_set():
                raise Interrupted("copy stopped; nothing half-committed")
            window.append(self._start(unit, keys[unit]))
            while len(window) > self.workers:
                results.append(self._finish(window.popleft()))
        while window:
            results.append(self._finish(window.popleft()))
        return results

    def _start(self, unit: Unit, keys: list[str]) -> Copied | _Pending:
        if self.fatal is not None:
            return _failed(unit, self.fatal, prefix="not attempted: ")
        try:
            there = [k for k in self.dest.list(unit.prefix) if k != unit.prefix + proofs.PROOF]
            if unit.prefix + manifest.SUCCESS in there:
                return self._already(unit, keys, there)
            jobs = _jobs(self.source, unit, keys)
            for key in set(there) - set(keys):  # left by an earlier attempt: not the source's
                self.dest.delete(key)
        except HippolyteError as exc:
            return self._failure(unit, exc)
        items = sum(j.items for j in jobs)
        self.emit(ReadStarted(table=unit.name, expected_items=items, exact=True))
        maybe = set(there)
        futures = [self.pool.submit(self._one, unit, j, j.key in maybe) for j in jobs]
        return _Pending(unit=unit, futures=futures)

    def _one(self, unit: Unit, job: FileJob, maybe_there: bool) -> Sent:
        sent = self.sender.send(job, maybe_there=maybe_there)
        self.emit(ItemsRead(table=unit.name, items=job.items, raw_bytes=sent.size))
        return sent

    def _finish(self, pending: Copied | _Pending) -> Copied:
        if isinstance(pending, Copied):
            return pending
        unit, sent = pending.unit, []
        try:
            for f in pending.futures:
                sent.append(f.result())
            success = unit.prefix + manifest.SUCCESS
            self.dest.put_bytes(success, self.source.get_bytes(success))  # last
        except Interrupted:
            raise
        except HippolyteError as exc:
            for f in pending.futures:
                f.cancel()
            return self._failure(unit, exc)
        self.emit(ItemsRead(table=unit.name, items=0, raw_bytes=0, done=True))
        return Copied(
            unit=unit,
            action="copied",
            files=sum(1 for s in sent if s.sent),
            bytes=sum(s.size for s in sent if s.sent),
            reused=sum(1 for s in sent if not s.sent),
        )

    def _already(self, unit: Unit, keys: list[str], there: list[str]) -> Copied:
        own = unit.prefix + (manifest.DESCRIPTOR if unit.kind == "backup" else changes.MANIFEST)
        same = set(there) == set(keys) and (
            own not in keys or self.source.get_bytes(own) == self.dest.get_bytes(own)
        )
        if same:
            return Copied(unit=unit, action="skipped")
        conflict = BackupCorrupt(
            f"{self.dest.url}/{unit.name} is committed with other files or another manifest "
            "than the source's; left as it is"
        )
        return self._failure(unit, conflict)

    def _failure(self, unit: Unit, exc: HippolyteError) -> Copied:
        if isinstance(exc, FATAL):
            self.fatal = exc
        self.emit(Note(text=f"{unit.name}: not copied: {exc}", level="error", table=unit.table))
        return _failed(unit, exc)


def _failed(unit: Unit, exc: HippolyteError, *, prefix: str = "") -> Copied:
    return Copied(unit=unit, action="failed", error=prefix + str(exc), exit_code=exc.exit_code)


def _jobs(source: Storage, unit: Unit, keys: list[str]) -> list[FileJob]:
    """Every file of the unit but ``_SUCCESS``, with what its manifest records of it; data
    files first (the biggest)."""
    recorded = _recorded(source, unit, keys)
    missing = sorted(set(recorded) - set(keys))
    if missing:
        raise BackupCorrupt(f"{source.url}/{missing[0]}: in its manifest but not in the source")
    success = unit.prefix + manifest.SUCCESS
    jobs = [recorded.get(k) or FileJob(key=k) for k in keys if k != success]
    return sorted(jobs, key=lambda j: (j.sha256 is None, j.key))


def _recorded(source: Storage, unit: Unit, keys: list[str]) -> dict[str, FileJob]:
    base = unit.prefix
    if unit.kind == "changes":
        return {
            base + f.key: FileJob(
                key=base + f.key, size=f.size, sha256=f.sha256, md5=f.md5, items=f.count
            )
            for f in changes.load(source, unit.table, unit.id).files
        }
    if base + manifest.DESCRIPTOR not in keys:  # the EMR connector's format: no descriptor
        return {}
    ref = BackupRef(repo=source.url, table=unit.table, backup_id=unit.id)
    return {
        base + f.key: FileJob(
            key=base + f.key, size=f.size, sha256=f.sha256, md5=f.md5, items=f.item_count
        )
        for f in catalog.load_descriptor(source, ref)["files"]
    }
