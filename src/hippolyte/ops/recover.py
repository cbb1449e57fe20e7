"""``hippolyte recover``: put back into the live table exactly the items that differ from a
backup, safely and undoably; ``recover --undo`` puts them back as the recovery found them.

Order (docs/design.md, "Recoveries"): open the backup, check the live table has its key ->
select the keys (a diff of the backup against the table, a diff file, a keys file, or whole
partitions) and read what each holds live -> save every action, with the live item it will
replace, under ``@recoveries/<id>/`` and commit it (``_SUCCESS``) -> write, each write
conditional on the item still being what was read, paced at ``--write-percent`` of the
table's write capacity, one actions file at a time, each file's outcomes saved as a checkpoint
-> read every recovered key back (strongly consistent) and compare it with what was put back
-> save the result. An item the application changed in between is skipped and reported with
both versions, unless ``--force`` (which first saves the version it replaces).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters import aws, dynamodb, dynamodb_items
from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.diff import Key, key_of
from hippolyte.core.errors import ConfigError, Interrupted
from hippolyte.core.events import Emit, ItemsWritten, LoadStarted, Note, Step, discard
from hippolyte.core.model import TableInfo
from hippolyte.core.pacing import TokenBucket, read_budget, write_units
from hippolyte.core.proof import Digest, digest_of
from hippolyte.core.recovery import (
    RECORD_FORMAT,
    Action,
    Outcome,
    Skipped,
    Tally,
    Uncheckable,
    action_for,
    actions_from_diff,
    check_diff_summary,
    condition_for,
    needed,
    parse_diff_file,
    parse_key_line,
    recovery_id,
)
from hippolyte.core.retry import retrying
from hippolyte.core.version import __version__
from hippolyte.formats.base import KeySchema, Source, checked_items
from hippolyte.ops.context import open_backup, storage_for
from hippolyte.ops.diff import DiffParams, diff_live
from hippolyte.repo import recoveries

FORCE_ATTEMPTS = 5  # a --force write retried against a key that keeps changing


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which keys (none given: every key that differs)."""

    from_diff: Path | None = None
    keys: Path | None = None
    partition_keys: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.from_diff:
            return f"the differences in {self.from_diff}"
        if self.keys:
            return f"the keys in {self.keys}"
        if self.partition_keys:
            return f"the partitions {', '.join(self.partition_keys)}"
        return "every item that differs from the backup"


@dataclass(frozen=True, kw_only=True)
class RecoverParams:
    write_percent: float = 0.5
    read_percent: float = 0.5
    on_demand_write_units: float = 1000.0
    on_demand_read_units: float = 1000.0
    workers: int = 4
    delete_added: bool = False
    force: bool = False
    dry_run: bool = False
    resume: bool = False
    version_attribute: str | None = None
    max_attempts: int = 8
    tmp_dir: Path | None = None


@dataclass(kw_only=True)
class RecoverReport:
    table: str
    backup: str
    kind: str = "recover"
    recovery_id: str | None = None  # None on a dry run
    repository: str = ""  # where the recovery is saved
    selected: int = 0  # keys looked at
    plan: list[Action] = field(default_factory=list)  # what a dry run would do
    tally: Tally = field(default_factory=Tally)
    expected: Digest = field(default_factory=Digest)
    found: Digest = field(default_factory=Digest)
    proven: bool | None = None  # None: nothing to prove (a dry run, or nothing done)
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return not self.tally.skipped and self.proven is not False

    def to_json(self) -> dict[str, Any]:
        return {
            "recovery_id": self.recovery_id,
            "repository": self.repository,
            "kind": self.kind,
            "table": self.table,
            "backup": self.backup,
            "selected": self.selected,
            "dry_run": self.recovery_id is None,
            "resumed": self.resumed,
            **self.tally.to_json(),
            "proven": self.proven,
            "proof": {
                "expected": {"items": self.expected.count, "digest": self.expected.hex},
                "found": {"items": self.found.count, "digest": self.found.hex},
            },
        }


@dataclass(frozen=True, kw_only=True)
class _Live:
    conn: aws.Connection
    info: TableInfo
    spec: Key

    @property
    def table(self) -> str:
        return self.info.name

    @property
    def where(self) -> str:
        return f"{self.conn.endpoint_url or ''} {self.conn.region or ''} {self.table}".strip()


# -- the entry points ------------------------------------------------------------------------


def recover(
    settings: Settings,
    ref: str,
    *,
    table: str | None,
    selection: Selection,
    params: RecoverParams,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> RecoverReport:
    stop = stop or threading.Event()
    source = open_backup(settings, ref, repo=settings.repository)
    name = table or _table_name(source)
    live = _live(settings, name, source.schema(), backup=source.location)
    storage = _storage(settings, source)
    report = RecoverReport(table=name, backup=source.location, repository=storage.url)
    if params.resume and not params.dry_run:
        pending = _unfinished(storage, backup=source.location, live=live, discard_saving=True)
        if pending:
            emit(Step(text=f"resuming recovery {pending} of {name}"))
            report.recovery_id, report.resumed = pending, True
            doc = recoveries.record(storage, pending)
            return _run(storage, doc, live=live, params=params, report=report, emit=emit, stop=stop)
        emit(Note(text=f"no unfinished recovery of {name} from this backup: starting one"))
    elif not params.dry_run:
        pending = _unfinished(storage, backup=source.location, live=live, discard_saving=False)
        if pending:
            raise ConfigError(
                f"recovery {pending} of {name} from this backup did not finish: give --resume "
                f"to finish it (or `hippolyte recover --undo {pending}` to take it back)"
            )
    emit(Step(text=f"selecting {selection.describe()} in {name}"))
    actions, report.selected = _select(
        source, live=live, selection=selection, params=params, emit=emit, stop=stop
    )
    return _start(
        storage,
        actions,
        live=live,
        params=params,
        report=report,
        extra={"selection": selection.describe()},
        emit=emit,
        stop=stop,
    )


def undo(
    settings: Settings,
    recovery: str,
    *,
    params: RecoverParams,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> RecoverReport:
    """Put every key a recovery wrote back to the state the recovery saved (deleting the
    items it created), under the same safety rules: an undo is itself a recovery."""
    stop = stop or threading.Event()
    storage = storage_for(settings)
    doc = recoveries.record(storage, recovery)
    spec: Key = tuple((str(n), str(k)) for n, k in doc["key"])
    live = _live(
        settings, str(doc["table"]), KeySchema(attributes=spec), backup=f"recovery {recovery}"
    )
    report = RecoverReport(
        table=live.table, backup=f"recovery {recovery}", kind="undo", repository=storage.url
    )
    if params.resume and not params.dry_run:
        pending = _unfinished(storage, backup=report.backup, live=live, discard_saving=True)
        if pending:
            report.recovery_id, report.resumed = pending, True
            return _run(
                storage,
                recoveries.record(storage, pending),
                live=live,
                params=params,
                report=report,
                emit=emit,
                stop=stop,
            )
    skipped = _skipped_keys(storage, recovery, doc)
    forced = _forced(storage, recovery, doc)
    actions = []
    for batch in recoveries.actions(storage, recovery, doc):
        for a in batch:
            canonical = key_of(orjson.loads(a.key), spec)
            if canonical in skipped:
                continue
            actions.append(forced.get(canonical, a).undone())
    report.selected = len(actions)
    emit(Step(text=f"undoing recovery {recovery}: {len(actions):,} keys of {live.table}"))
    return _start(
        storage,
        actions,
        live=live,
        params=params,
        report=report,
        extra={"undoes": recovery},
        emit=emit,
        stop=stop,
    )


def list_recoveries(settings: Settings) -> list[recoveries.RecoverySummary]:
    return recoveries.summaries(storage_for(settings))


# -- where -------------------------------------------------------------------------------------


def _table_name(source: Source) -> str:
    name = (source.description or {}).get("TableName")
    if not name:
        raise ConfigError(f"{source.location} does not name its table: pass --table TABLE")
    return str(name)


def _live(settings: Settings, table: str, schema: KeySchema | None, *, backup: str) -> _Live:
    conn = settings.effective_targets()[0].connection()
    info = dynamodb.describe(dynamodb.control_client(conn), table)
    live = KeySchema.from_description(info.description)
    if schema is not None and schema.attributes != live.attributes:
        for (name, kind), (live_name, live_kind) in zip(
            (*schema.attributes, ("", "")), (*live.attributes, ("", "")), strict=False
        ):
            if (name, kind) != (live_name, live_kind):
                raise ConfigError(
                    f"table {table!r} has another key than {backup}: "
                    f"{_describe(live_name, live_kind)} where the backup has "
                    f"{_describe(name, kind)}"
                )
    return _Live(conn=conn, info=info, spec=live.attributes)


def _describe(name: str, kind: str) -> str:
    return f"{name!r} ({kind})" if name else "nothing"


def _storage(settings: Settings, source: Source) -> Storage:
    """Recoveries are saved in the repository (--repo), else beside the backup."""
    return storage_for(settings) if settings.repository else source.storage


def _unfinished(storage: Storage, *, backup: str, live: _Live, discard_saving: bool) -> str | None:
    """The last recovery of this backup into this table that did not finish; ones that never
    finished saving (they wrote nothing) are removed when ``discard_saving``."""
    found = None
    for rid in recoveries.ids(storage):
        started = recoveries.started(storage, rid)
        if started is None or started.get("backup") != backup or started.get("where") != live.where:
            continue
        if not recoveries.is_committed(storage, rid):
            if discard_saving:
                recoveries.discard(storage, rid)
            continue
        result = recoveries.result(storage, rid)
        if result is None or result.get("status") == "interrupted":
            found = rid
    return found


# -- selecting ---------------------------------------------------------------------------------


def _select(
    source: Source,
    *,
    live: _Live,
    selection: Selection,
    params: RecoverParams,
    emit: Emit,
    stop: threading.Event,
) -> tuple[list[Action], int]:
    """The actions, and how many keys were looked at."""
    if selection.from_diff is not None:
        return _from_diff(selection.from_diff, source=source, live=live, params=params)
    if selection.keys is not None or selection.partition_keys:
        return _from_keys(source, live=live, selection=selection, params=params, stop=stop)
    return _from_live_diff(source, live=live, params=params, emit=emit, stop=stop)


def _from_diff(
    path: Path, *, source: Source, live: _Live, params: RecoverParams
) -> tuple[list[Action], int]:
    try:
        with open(path, "rb") as f:
            entries, summary = parse_diff_file(iter(f), where=str(path))
        check_diff_summary(summary, backup=source.location, table=live.table, where=str(path))
    except OSError as exc:
        raise ConfigError(f"--from-diff {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return actions_from_diff(entries, delete_added=params.delete_added), len(entries)


def _from_live_diff(
    source: Source, *, live: _Live, params: RecoverParams, emit: Emit, stop: threading.Event
) -> tuple[list[Action], int]:
    import tempfile

    diff_params = DiffParams(
        read_percent=params.read_percent,
        on_demand_read_units=params.on_demand_read_units,
        workers=params.workers,
        page_attempts=params.max_attempts,
        limit=0,
        tmp_dir=params.tmp_dir,
    )
    with tempfile.TemporaryFile(dir=params.tmp_dir) as out:
        diff_live(
            source,
            conn=live.conn,
            table=live.table,
            schema=KeySchema(attributes=live.spec),
            params=diff_params,
            out=out,
            emit=emit,
            stop=stop,
        )
        out.seek(0)
        entries, _ = parse_diff_file(iter(out), where="the diff")
    return actions_from_diff(entries, delete_added=params.delete_added), len(entries)


def _from_keys(
    source: Source,
    *,
    live: _Live,
    selection: Selection,
    params: RecoverParams,
    stop: threading.Event,
) -> tuple[list[Action], int]:
    spec = live.spec
    wanted = _read_keys(selection.keys, spec) if selection.keys else set()
    partitions = {_partition_value(v, spec) for v in selection.partition_keys}
    backup: dict[bytes, bytes] = {}
    schema = KeySchema(attributes=spec)
    for f in source.files:
        for item in checked_items(source, f, schema=schema):
            if stop.is_set():
                raise Interrupted("recover interrupted while reading the backup; nothing written")
            doc = orjson.loads(item)
            key = key_of(doc, spec)
            if key in wanted or (partitions and key_of(doc, spec[:1]) in partitions):
                backup[key] = item
    current = _read_live(live, keys=wanted | set(backup), params=params, stop=stop)
    for value in partitions:
        for item in _query(live, value, params=params):
            current.setdefault(key_of(orjson.loads(item), spec), item)
    actions = []
    for key in sorted(wanted | set(backup) | set(current)):
        action = action_for(
            spec=spec,
            target=backup.get(key),
            seen=current.get(key),
            delete_added=params.delete_added,
        )
        if action is not None:
            actions.append(action)
    return actions, len(wanted | set(backup) | set(current))


def _read_keys(path: Path, spec: Key) -> set[bytes]:
    keys = set()
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    keys.add(parse_key_line(line, spec, where=f"{path} line {n}"))
    except OSError as exc:
        raise ConfigError(f"--keys {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return keys


def _partition_value(text: str, spec: Key) -> bytes:
    name, kind = spec[0]
    try:
        return key_of({name: {kind: text}}, spec[:1])
    except ValueError as exc:
        raise ConfigError(f"--partition-key {text!r}: {exc}") from None


def _read_live(
    live: _Live, *, keys: Iterable[bytes], params: RecoverParams, stop: threading.Event
) -> dict[bytes, bytes]:
    """Each key's live item (strongly consistent), by canonical key."""
    client = dynamodb_items.item_client(live.conn, pool=params.workers + 2)
    bucket = TokenBucket(rate=_read_rate(live, params))
    ordered = [_key_doc(k, live.spec) for k in sorted(keys)]
    found: dict[bytes, bytes] = {}
    for at in range(0, len(ordered), dynamodb_items.MAX_GET_KEYS):
        if stop.is_set():
            raise Interrupted("recover interrupted while reading the live table; nothing written")
        batch = ordered[at : at + dynamodb_items.MAX_GET_KEYS]
        bucket.acquire(len(batch), stop=stop)
        items = retrying(
            functools.partial(dynamodb_items.get_many, client, table=live.table, keys=batch),
            attempts=params.max_attempts,
            stop=stop,
        )
        for item in items:
            found[key_of(orjson.loads(item), live.spec)] = item
    return found


def _key_doc(key: bytes, spec: Key) -> bytes:
    """A canonical key (``core.diff.key_of``) as DynamoDB JSON of its attributes."""
    return orjson.dumps(
        {name: {kind: text} for (name, kind), text in zip(spec, orjson.loads(key), strict=True)}
    )


def _query(live: _Live, value: bytes, *, params: RecoverParams) -> Iterator[bytes]:
    client = dynamodb_items.item_client(live.conn, pool=2)
    name, kind = live.spec[0]
    (text,) = orjson.loads(value)
    bucket = TokenBucket(rate=_read_rate(live, params))
    for item, units in dynamodb_items.query_partition(
        client, table=live.table, name=name, value={kind: text}
    ):
        if units:
            bucket.acquire(units)
        yield item


def _read_rate(live: _Live, params: RecoverParams) -> float:
    return read_budget(
        on_demand=live.info.on_demand,
        read_capacity=live.info.read_capacity,
        read_percent=params.read_percent,
        on_demand_units=params.on_demand_read_units,
        max_read_request_units=live.info.max_read_request_units,
    )


def _write_rate(live: _Live, params: RecoverParams) -> float:
    if live.info.on_demand or live.info.write_capacity <= 0:
        return params.on_demand_write_units
    return max(live.info.write_capacity * params.write_percent, 0.5)


# -- saving, then writing ------------------------------------------------------------------------


def _start(
    storage: Storage,
    actions: list[Action],
    *,
    live: _Live,
    params: RecoverParams,
    report: RecoverReport,
    extra: dict[str, Any],
    emit: Emit,
    stop: threading.Event,
) -> RecoverReport:
    puts = sum(1 for a in actions if a.target is not None)
    emit(
        Step(
            text=f"{live.table}: {puts:,} items to put back, {len(actions) - puts:,} to delete "
            f"(of {report.selected:,} keys looked at)"
        )
    )
    if params.dry_run:
        report.plan = actions
        return report
    if not actions:
        return report
    rid = recovery_id(dt.datetime.now(dt.UTC))
    started = {
        "format": RECORD_FORMAT,
        "id": rid,
        "kind": report.kind,
        "backup": report.backup,
        "table": live.table,
        "where": live.where,
        "key": [list(k) for k in live.spec],
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "hippolyteVersion": __version__,
        "options": {
            "deleteAdded": params.delete_added,
            "force": params.force,
            "versionAttribute": params.version_attribute,
            "writePercent": params.write_percent,
        },
        **extra,
    }
    recoveries.start(storage, rid, started)
    emit(Step(text=f"saving the live state of {len(actions):,} items as recovery {rid}"))
    files = recoveries.save_actions(storage, rid, actions)
    doc = {**started, "planned": len(actions), "files": [f.to_json() for f in files]}
    recoveries.commit(storage, rid, doc)
    report.recovery_id = rid
    return _run(storage, doc, live=live, params=params, report=report, emit=emit, stop=stop)


def _run(
    storage: Storage,
    doc: dict[str, Any],
    *,
    live: _Live,
    params: RecoverParams,
    report: RecoverReport,
    emit: Emit,
    stop: threading.Event,
) -> RecoverReport:
    rid = str(doc["id"])
    writer = _Writer(storage, rid, live=live, params=params, stop=stop)
    emit(
        LoadStarted(
            table=live.table,
            source=f"recovery {rid}",
            files=len(doc["files"]),
            expected_items=int(doc["planned"]),
            expected_bytes=0,
            write_budget=writer.bucket.rate,
        )
    )
    done: list[Action] = []
    try:
        for n, batch in enumerate(recoveries.actions(storage, rid, doc)):
            saved = recoveries.progress(storage, rid, n)
            if saved is not None:
                tally = Tally.from_json(saved)
            else:
                tally = writer.apply(batch, n=n, emit=emit)
                recoveries.save_progress(storage, rid, n, tally.to_json())
            report.tally.merge(tally)
            skipped = {s.key for s in tally.skipped}
            done += [a for a in batch if a.key not in skipped]
    except Interrupted:
        recoveries.save_result(
            storage, rid, {"status": "interrupted", **report.tally.to_json(), "proven": None}
        )
        raise
    finally:
        writer.close()
    emit(Step(text=f"proving: reading back {len(done):,} recovered keys of {live.table}"))
    report.expected, report.found = _prove(done, live=live, params=params, stop=stop)
    report.proven = (
        report.expected.count == report.found.count and report.expected.value == report.found.value
    )
    status = "done" if report.ok else "incomplete"
    recoveries.save_result(
        storage,
        rid,
        {"status": status, **report.to_json(), "finished": dt.datetime.now(dt.UTC).isoformat()},
    )
    return report


class _Writer:
    """Conditional writes, paced by the table's write budget, retried, never blind."""

    def __init__(
        self,
        storage: Storage,
        rid: str,
        *,
        live: _Live,
        params: RecoverParams,
        stop: threading.Event,
    ) -> None:
        self.storage, self.rid, self.live, self.params, self.stop = storage, rid, live, params, stop
        self.client = dynamodb_items.item_client(live.conn, pool=params.workers + 2)
        self.bucket = TokenBucket(rate=_write_rate(live, params))
        self._forced = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def apply(self, batch: list[Action], *, n: int, emit: Emit) -> Tally:
        tally = Tally()
        with ThreadPoolExecutor(max_workers=self.params.workers) as pool:
            for outcome, skipped, forced in pool.map(lambda a: self._one(a, n=n), batch):
                tally.add(outcome)
                tally.forced += forced
                if skipped is not None:
                    tally.skipped.append(skipped)
        emit(ItemsWritten(table=self.live.table, items=len(batch), raw_bytes=0, consumed=0.0))
        return tally

    def _one(self, a: Action, *, n: int) -> tuple[Outcome, Skipped | None, int]:
        if self.stop.is_set():
            raise Interrupted("recover interrupted; run it again with --resume to finish")
        done = Outcome.PUT_BACK if a.target is not None else Outcome.DELETED
        try:
            condition = condition_for(
                a.seen, spec=self.live.spec, version_attribute=self.params.version_attribute
            )
        except Uncheckable as exc:
            if not self.params.force:
                return (
                    Outcome.UNCHECKABLE,
                    Skipped(key=a.key, outcome=Outcome.UNCHECKABLE, reason=str(exc), seen=a.seen),
                    0,
                )
            return self._force(a, current=self._get(a.key), n=n)
        if self._write(a, condition):
            return done, None, 0
        current = self._get(a.key)
        if not needed(a.target, current):
            return Outcome.ALREADY, None, 0
        if not needed(a.seen, current):  # unchanged, yet the server refused the condition:
            flat = condition_for(a.seen, spec=self.live.spec, flat=True)  # it cannot compare
            if self._write(a, flat):  # a map or a list; compare their leaves instead
                return done, None, 0
            current = self._get(a.key)
            if not needed(a.target, current):
                return Outcome.ALREADY, None, 0
        if self.params.force:
            return self._force(a, current=current, n=n)
        return (
            Outcome.CHANGED_SINCE,
            Skipped(
                key=a.key,
                outcome=Outcome.CHANGED_SINCE,
                reason="changed since the recovery read it (give --force to overwrite it)",
                seen=a.seen,
                current=current,
            ),
            0,
        )

    def _force(
        self, a: Action, *, current: bytes | None, n: int
    ) -> tuple[Outcome, Skipped | None, int]:
        """Save the version about to be replaced, then replace it if it is still that one."""
        done = Outcome.PUT_BACK if a.target is not None else Outcome.DELETED
        for _ in range(FORCE_ATTEMPTS):
            if not needed(a.target, current):
                return Outcome.ALREADY, None, 0
            forced = Action(key=a.key, target=a.target, seen=current)
            with self._lock:
                self._forced += 1
                k = self._forced
            recoveries.save_forced(self.storage, self.rid, n, k, forced)
            try:
                condition = condition_for(current, spec=self.live.spec, flat=True)
            except Uncheckable:
                condition = None  # --force on an item no condition can describe: as asked
            if self._write(a, condition):
                return done, None, 1
            current = self._get(a.key)
        return (
            Outcome.CHANGED_SINCE,
            Skipped(
                key=a.key,
                outcome=Outcome.CHANGED_SINCE,
                reason=f"changed again each of {FORCE_ATTEMPTS} times --force tried to replace it",
                seen=a.seen,
                current=current,
            ),
            0,
        )

    def _write(self, a: Action, condition: Any) -> bool:
        size = len(a.target) if a.target is not None else len(a.seen or a.key)
        self.bucket.acquire(write_units(size), stop=self.stop)
        if self.stop.is_set():
            raise Interrupted("recover interrupted; run it again with --resume to finish")

        def call() -> float | None:
            if a.target is not None:
                return dynamodb_items.put(
                    self.client, table=self.live.table, item=a.target, condition=condition
                )
            return dynamodb_items.delete(
                self.client, table=self.live.table, key=a.key, condition=condition
            )

        return retrying(call, attempts=self.params.max_attempts, stop=self.stop) is not None

    def _get(self, key: bytes) -> bytes | None:
        self.bucket.acquire(1, stop=self.stop)
        items = retrying(
            lambda: dynamodb_items.get_many(self.client, table=self.live.table, keys=[key]),
            attempts=self.params.max_attempts,
            stop=self.stop,
        )
        return items[0] if items else None


def _prove(
    done: list[Action], *, live: _Live, params: RecoverParams, stop: threading.Event
) -> tuple[Digest, Digest]:
    """What was put back (the backup's items; deleted keys count as absent) against what the
    table holds for those keys now, read strongly consistent."""
    expected = digest_of([a.target for a in done if a.target is not None])
    found_items = _read_live(
        live, keys={key_of(orjson.loads(a.key), live.spec) for a in done}, params=params, stop=stop
    )
    return expected, digest_of(list(found_items.values()))


def _skipped_keys(storage: Storage, recovery: str, doc: dict[str, Any]) -> set[bytes]:
    spec: Key = tuple((str(n), str(k)) for n, k in doc["key"])
    keys = set()
    for n in range(len(doc["files"])):
        saved = recoveries.progress(storage, recovery, n)
        for s in (saved or {}).get("skipped_items", []):
            keys.add(key_of(s["key"], spec))
    return keys


def _forced(storage: Storage, recovery: str, doc: dict[str, Any]) -> dict[bytes, Action]:
    """The versions --force replaced, by key: an undo puts those back, not the first read."""
    spec: Key = tuple((str(n), str(k)) for n, k in doc["key"])
    return {key_of(orjson.loads(a.key), spec): a for a in recoveries.forced(storage, recovery)}
