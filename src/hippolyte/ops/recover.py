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
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.diff import Key, key_of
from hippolyte.core.errors import ConfigError, Interrupted
from hippolyte.core.events import Emit, LoadStarted, Note, Step, discard
from hippolyte.core.proof import Digest, digest_of
from hippolyte.core.recovery import RECORD_FORMAT, Action, Tally, recovery_id
from hippolyte.core.version import __version__
from hippolyte.engines.conditional import ConditionalWriter, LiveReader, LiveTable, WriteSettings
from hippolyte.formats.base import KeySchema, Source
from hippolyte.ops.context import open_backup, storage_for
from hippolyte.ops.diff import same_key, table_of
from hippolyte.ops.recover_select import (
    Count,
    RecoverParams,
    Selection,
    read_rate,
    select,
    write_rate,
)

__all__ = ["RecoverParams", "RecoverReport", "Selection", "list_recoveries", "recover", "undo"]
from hippolyte.repo import recoveries


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
    name = table or table_of(source, option="--table TABLE")
    live = _live(settings, name, source.schema(), backup=source.location)
    storage = _storage(settings, source)
    report = RecoverReport(table=name, backup=source.location, repository=storage.url)
    if params.resume and not params.dry_run:
        pending = recoveries.unfinished(
            storage, backup=source.location, where=live.where, discard_saving=True
        )
        if pending:
            emit(Step(text=f"resuming recovery {pending} of {name}"))
            report.recovery_id, report.resumed = pending, True
            doc = recoveries.record(storage, pending)
            return _run(storage, doc, live=live, params=params, report=report, emit=emit, stop=stop)
        emit(Note(text=f"no unfinished recovery of {name} from this backup: starting one"))
    elif not params.dry_run:
        pending = recoveries.unfinished(
            storage, backup=source.location, where=live.where, discard_saving=False
        )
        if pending:
            raise ConfigError(
                f"recovery {pending} of {name} from this backup did not finish: give --resume "
                f"to finish it (or `hippolyte recover --undo {pending}` to take it back)"
            )
    emit(Step(text=f"selecting {selection.describe()} in {name}"))
    count = Count()
    actions = select(
        source, live=live, selection=selection, params=params, count=count, emit=emit, stop=stop
    )
    return _start(
        storage,
        actions,
        live=live,
        params=params,
        report=report,
        count=count,
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
        pending = recoveries.unfinished(
            storage, backup=report.backup, where=live.where, discard_saving=True
        )
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
    skipped = recoveries.skipped_keys(storage, recovery, doc)
    forced = recoveries.forced_by_key(storage, recovery, doc)
    count = Count()

    def actions() -> Iterator[Action]:
        for batch in recoveries.actions(storage, recovery, doc):
            for a in batch:
                canonical = key_of(orjson.loads(a.key), spec)
                if canonical not in skipped:
                    count.value += 1
                    yield forced.get(canonical, a).undone()

    emit(Step(text=f"undoing recovery {recovery} ({doc['planned']:,} actions) in {live.table}"))
    return _start(
        storage,
        actions(),
        live=live,
        params=params,
        report=report,
        count=count,
        extra={"undoes": recovery},
        emit=emit,
        stop=stop,
    )


def list_recoveries(settings: Settings) -> list[recoveries.RecoverySummary]:
    return recoveries.summaries(storage_for(settings))


# -- where -------------------------------------------------------------------------------------


def _live(settings: Settings, table: str, schema: KeySchema | None, *, backup: str) -> LiveTable:
    conn = settings.effective_targets()[0].connection()
    control = dynamodb.control_client(conn)
    info = dynamodb.describe(control, table)
    if schema is not None:
        same_key(schema, info, table=table, backup=backup)
    live = KeySchema.from_description(info.description)
    where = f"{control.meta.endpoint_url} {info.arn or control.meta.region_name + ' ' + table}"
    return LiveTable(conn=conn, info=info, spec=live.attributes, where=where)


def _storage(settings: Settings, source: Source) -> Storage:
    """Recoveries are saved in the repository (--repo), else beside the backup."""
    return storage_for(settings) if settings.repository else source.storage


# -- saving, then writing ------------------------------------------------------------------------


def _start(
    storage: Storage,
    actions: Iterable[Action],
    *,
    live: LiveTable,
    params: RecoverParams,
    report: RecoverReport,
    count: Count | None = None,
    extra: dict[str, Any],
    emit: Emit,
    stop: threading.Event,
) -> RecoverReport:
    if params.dry_run:
        report.plan = list(actions)
        report.selected = count.value if count else report.selected
        puts = sum(1 for a in report.plan if a.target is not None)
        _tell_planned(live, puts, len(report.plan) - puts, report, emit)
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
    emit(Step(text=f"saving the live state of the items to recover as recovery {rid}"))
    try:
        files, puts = recoveries.save_actions(storage, rid, actions)
    except BaseException:
        recoveries.discard(storage, rid)  # nothing was written into the table
        raise
    report.selected = count.value if count else report.selected
    planned = sum(f.count for f in files)
    _tell_planned(live, puts, planned - puts, report, emit)
    if not planned:
        recoveries.discard(storage, rid)
        return report
    doc = {**started, "planned": planned, "files": [f.to_json() for f in files]}
    recoveries.commit(storage, rid, doc)
    report.recovery_id = rid
    return _run(storage, doc, live=live, params=params, report=report, emit=emit, stop=stop)


def _tell_planned(
    live: LiveTable, puts: int, deletes: int, report: RecoverReport, emit: Emit
) -> None:
    emit(
        Step(
            text=f"{live.table}: {puts:,} items to put back, {deletes:,} to delete "
            f"(of {report.selected:,} keys looked at)"
        )
    )


def _run(
    storage: Storage,
    doc: dict[str, Any],
    *,
    live: LiveTable,
    params: RecoverParams,
    report: RecoverReport,
    emit: Emit,
    stop: threading.Event,
) -> RecoverReport:
    rid = str(doc["id"])
    writer = ConditionalWriter(
        storage,
        rid,
        live=live,
        settings=WriteSettings(
            write_rate=write_rate(live, params),
            read_rate=read_rate(live, params),
            workers=params.workers,
            max_attempts=params.max_attempts,
            version_attribute=params.version_attribute,
            force=params.force,
        ),
        stop=stop,
    )
    emit(
        LoadStarted(
            table=f"recover {live.table}",
            source=f"recovery {rid}",
            files=len(doc["files"]),
            expected_items=int(doc["planned"]),
            expected_bytes=0,
            write_budget=writer.bucket.rate,
        )
    )
    try:
        for n, batch in enumerate(recoveries.actions(storage, rid, doc)):
            saved = recoveries.progress(storage, rid, n)
            if saved is not None:
                tally = Tally.from_json(saved)
            else:
                tally = writer.apply(batch, n=n, emit=emit)
                recoveries.save_progress(storage, rid, n, tally.to_json())
            report.tally.merge(tally)
    except Interrupted:
        recoveries.save_result(
            storage, rid, {"status": "interrupted", **report.tally.to_json(), "proven": None}
        )
        raise
    finally:
        writer.close()
    t = report.tally
    emit(Step(text=f"proving: reading back {t.put_back + t.deleted + t.already:,} recovered keys"))
    report.expected, report.found = _prove(
        storage, doc, live=live, params=params, skipped={s.key for s in t.skipped}, stop=stop
    )
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


def _prove(
    storage: Storage,
    doc: dict[str, Any],
    *,
    live: LiveTable,
    params: RecoverParams,
    skipped: set[bytes],
    stop: threading.Event,
) -> tuple[Digest, Digest]:
    """What was put back (the backup's items; deleted keys count as absent) against what the
    table holds for those keys now, read strongly consistent, one actions file at a time."""
    expected, found = Digest(), Digest()
    reader = LiveReader(
        live, rate=read_rate(live, params), max_attempts=params.max_attempts, stop=stop
    )
    try:
        for batch in recoveries.actions(storage, str(doc["id"]), doc):
            done = [a for a in batch if a.key not in skipped]
            expected.merge(digest_of([a.target for a in done if a.target is not None]))
            items = reader.read({key_of(orjson.loads(a.key), live.spec) for a in done})
            found.merge(digest_of(list(items.values())))
    finally:
        reader.close()
    return expected, found
