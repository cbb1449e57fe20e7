"""`hippolyte drill`: prove that backups restore, and measure how fast (the RTO).

Order, per drill: choose the tables (those named, each with a committed backup, else exit 3;
or a sample weighted to those not drilled longest) -> refuse, touching nothing, if a scratch
table's name is already taken -> per table: create ``<table>-drill-<id>`` shaped like the
backup and tagged ``hippolyte:drill=<id>`` -> restore the table's newest committed backup
into it (every file checked before a write) and prove it (count and digest against the
backup's) -> the restore's seconds per GB of item data -> unless ``keep``, delete the scratch
table, only if a fresh DescribeTable and ListTagsOfResource show it is the very table this
drill created and tagged (:func:`hippolyte.adapters.dynamodb_scratch.delete_scratch`) ->
the record, ``@drills/<id>/drill.json`` -> a failed drill is notified.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hippolyte.adapters import aws, dynamodb, dynamodb_admin, dynamodb_scratch
from hippolyte.adapters.storage import Storage
from hippolyte.core import drill as decide
from hippolyte.core.config import Settings, Target
from hippolyte.core.drill import Drill, TableDrill
from hippolyte.core.errors import ConfigError, HippolyteError, Interrupted, NotFound
from hippolyte.core.events import Emit, Note, discard
from hippolyte.core.model import BackupRef
from hippolyte.core.restore_plan import create_table_request
from hippolyte.formats.open import open_source
from hippolyte.ops.context import storage_for
from hippolyte.ops.restore import RestoreParams, restore
from hippolyte.repo import catalog, drills


@dataclass(frozen=True, kw_only=True)
class DrillParams:
    sample: int | None = None  # None: the tables named
    keep: bool = False  # keep the scratch tables
    endpoint_url: str | None = None  # where to restore, when not the source's connection
    region: str | None = None
    profile: str | None = None
    write_capacity: int = 1000  # temporary RCU and WCU of a provisioned scratch table
    workers: int = 4
    max_attempts: int = 10


# What a front-end keeps of a drill's chosen backups, and the tables it leaves out (recorded as
# failed, with the reason): the Lambda keeps those whose restore fits the time it has left.
Fit = Callable[[list[BackupRef], Storage], tuple[list[BackupRef], list[TableDrill]]]


@dataclass(kw_only=True)
class DrillOutcome:
    """The drills of a scheduled job (one per target with a fleet) and the notifications."""

    drills: list[Drill] = field(default_factory=list)
    notifications: list[Any] = field(default_factory=list)  # adapters.notify.ChannelResult

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.drills)


def target_connection(source: aws.Connection, params: DrillParams) -> aws.Connection:
    """The source's connection with the drill's --target-* overrides."""
    over = {
        k: v
        for k, v in (
            ("endpoint_url", params.endpoint_url),
            ("region", params.region),
            ("profile", params.profile),
        )
        if v is not None
    }
    return dataclasses.replace(source, **over) if over else source


def newest_committed(storage: Storage, table: str) -> BackupRef | None:
    for ref in reversed(list(catalog.refs(storage, table))):
        if catalog.is_complete(storage, ref):
            return ref
    return None


def fleet(storage: Storage) -> dict[str, BackupRef]:
    """Every table of the repository that has a committed backup: its newest one."""
    found = {t: newest_committed(storage, t) for t in catalog.tables(storage)}
    return {t: ref for t, ref in found.items() if ref is not None}


def choose(
    storage: Storage,
    tables: Sequence[str],
    *,
    sample: int | None,
    now: dt.datetime,
    rng: random.Random,
) -> list[BackupRef]:
    """The backups to drill: the newest committed one of each table named (NotFound when one
    has none), or of a sample of the repository's tables weighted to those not drilled
    longest (ConfigError when the sample is larger than the fleet)."""
    if sample is None:
        refs = [(t, newest_committed(storage, t)) for t in dict.fromkeys(tables)]
        missing = [t for t, ref in refs if ref is None]
        if missing:
            raise NotFound(f"no committed backup of {', '.join(missing)} in {storage.url}")
        return [ref for _, ref in refs if ref is not None]
    backups = fleet(storage)
    if tables:
        backups = {t: ref for t, ref in backups.items() if t in tables}
    if sample > len(backups):
        raise ConfigError(
            f"--sample {sample}: the repository {storage.url} holds committed backups of "
            f"only {len(backups)} tables"
        )
    last = {t: d.at for t, (d, _) in drills.last_drills(storage).items()}
    history = {t: last.get(t) for t in backups}
    return [backups[p.table] for p in decide.sample(history, n=sample, now=now, rng=rng)]


def drill(
    settings: Settings,
    *,
    tables: Sequence[str] = (),
    params: DrillParams,
    target: Target | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
    now: dt.datetime | None = None,
    rng: random.Random | None = None,
    fit: Fit | None = None,
) -> Drill:
    """One drill of ``target``'s repository (default: the first target's), recorded;
    ``fit`` may leave chosen tables out, each recorded failed with its reason."""
    now = now or dt.datetime.now(dt.UTC)
    target = target or settings.effective_targets()[0]
    storage = storage_for(settings, target)
    refs = choose(storage, tables, sample=params.sample, now=now, rng=rng or random.Random())
    refs, left_out = fit(refs, storage) if fit is not None else (refs, [])
    source_conn = target.connection()
    conn = target_connection(source_conn, params)
    client = dynamodb.control_client(conn, max_attempts=params.max_attempts)
    drill_id = decide.drill_id(now, token=secrets.token_hex(2))
    scratch = _scratch_names(refs, drill_id=drill_id)
    _refuse_taken(client, scratch, same=conn == source_conn)
    where = f"{client.meta.endpoint_url} {client.meta.region_name}"
    record = Drill(id=drill_id, at=now, repository=storage.url, target=where)
    try:
        for ref in refs:
            if stop is not None and stop.is_set():
                raise Interrupted("the drill was stopped")
            record.tables.append(
                _drill_table(
                    ref,
                    scratch=scratch[ref.table],
                    drill_id=drill_id,
                    storage=storage,
                    client=client,
                    conn=conn,
                    params=params,
                    emit=emit,
                    stop=stop or threading.Event(),
                )
            )
    finally:
        record.tables.extend(left_out)
        if record.tables:
            drills.write_drill(storage, record)
    return record


def _scratch_names(refs: Sequence[BackupRef], *, drill_id: str) -> dict[str, str]:
    try:
        return {ref.table: decide.scratch_name(ref.table, drill_id) for ref in refs}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _refuse_taken(client: Any, scratch: dict[str, str], *, same: bool) -> None:
    """A scratch name already taken: refused before anything is created or written."""
    for table, name in scratch.items():
        if dynamodb_admin.describe_raw(client, name) is not None:
            where = "the source's own connection" if same else "the drill's target"
            raise ConfigError(
                f"the drill table {name!r} for {table!r} already exists in {where}; "
                "nothing was changed (give another --target-endpoint-url/--target-region)"
            )


def _drill_table(
    ref: BackupRef,
    *,
    scratch: str,
    drill_id: str,
    storage: Storage,
    client: Any,
    conn: aws.Connection,
    params: DrillParams,
    emit: Emit,
    stop: threading.Event,
) -> TableDrill:
    created: list[str] = []  # the scratch table's identity, once this drill created it
    result = TableDrill(table=ref.table, backup=str(ref), scratch=scratch, ok=False)
    try:
        result = _restore_and_prove(
            ref,
            scratch=scratch,
            drill_id=drill_id,
            storage=storage,
            client=client,
            conn=conn,
            params=params,
            emit=emit,
            stop=stop,
            created=created,
        )
    except HippolyteError as exc:
        if isinstance(exc, Interrupted):
            _clean_up(result, client=client, drill_id=drill_id, created=created, params=params)
            raise
        result = dataclasses.replace(result, error=str(exc))
    emit(Note(text=f"drill {ref.table}: {decide.outcome_line(result)}", table=ref.table))
    return _clean_up(result, client=client, drill_id=drill_id, created=created, params=params)


def _restore_and_prove(
    ref: BackupRef,
    *,
    scratch: str,
    drill_id: str,
    storage: Storage,
    client: Any,
    conn: aws.Connection,
    params: DrillParams,
    emit: Emit,
    stop: threading.Event,
    created: list[str],
) -> TableDrill:
    source = open_source(storage, ref.prefix, location=str(ref))
    desc = source.description
    if desc is None:
        raise ConfigError(f"{ref} records no key schema: it cannot be drilled")
    started = time.monotonic()
    request = create_table_request(desc, table_name=scratch, load_capacity=params.write_capacity)
    emit(Note(text=f"creating {scratch!r} tagged {decide.TAG}={drill_id}", table=ref.table))
    made, note = dynamodb_scratch.create_tagged(client, request, drill=drill_id)
    created.append(decide.identity(made))
    if note:
        emit(Note(text=f"{scratch}: {note}", level="warning", table=ref.table))
    with tempfile.TemporaryDirectory(prefix="hippolyte-drill-") as state_dir:
        report = restore(
            source,
            conn=conn,
            table=scratch,
            params=RestoreParams(
                write_capacity=params.write_capacity,
                workers=params.workers,
                max_attempts=params.max_attempts,
                into_existing=True,  # the table the drill just created, tagged
                state_dir=Path(state_dir),
            ),
            description=desc,
            emit=emit,
            stop=stop,
        )
    seconds = time.monotonic() - started
    raw = catalog.summary(storage, ref).raw_bytes or 0
    return TableDrill(
        table=ref.table,
        backup=str(ref),
        scratch=scratch,
        ok=report.proven,
        items=report.restored.count,
        bytes=raw,
        seconds=round(seconds, 2),
        seconds_per_gb=decide.seconds_per_gb(seconds, raw),
        error=None
        if report.proven
        else (
            f"not proven: the table holds {report.restored.count} items "
            f"(digest {report.restored.hex[:16]}), the backup {report.backup.count} "
            f"({report.backup.hex[:16]})"
        ),
    )


def _clean_up(
    result: TableDrill, *, client: Any, drill_id: str, created: list[str], params: DrillParams
) -> TableDrill:
    """Delete the scratch table this drill created, if the guard allows; else say why not."""
    if not created:
        return result
    if params.keep:
        return dataclasses.replace(result, kept="--keep")
    try:
        refused = dynamodb_scratch.delete_scratch(
            client, name=result.scratch, drill=drill_id, created=created[0]
        )
    except HippolyteError as exc:
        refused = f"DeleteTable failed: {exc}"
    if refused is not None:
        return dataclasses.replace(result, kept=f"not deleted: {refused}")
    return dataclasses.replace(result, deleted=True)


# -- the scheduled job and its notification -----------------------------------------------------


def notify(settings: Settings, record: Drill) -> list[Any]:
    """A failed drill is a failure: told on every channel (a good one with notify_on_success)."""
    if not settings.notifications or (record.ok and not settings.notify_on_success):
        return []
    from hippolyte.adapters.notify import send_all

    return send_all(settings.notifications, decide.message(record))


def scheduled(
    settings: Settings,
    *,
    emit: Emit = discard,
    stop: threading.Event | None = None,
    now: dt.datetime | None = None,
    fit: Fit | None = None,
) -> DrillOutcome:
    """``[drills]``: a sample of each target's fleet (at most the fleet), drilled and notified
    (``fit``: as :func:`drill`'s)."""
    config = settings.drills
    if config is None:
        raise ConfigError("no [drills] in the config")
    outcome = DrillOutcome()
    for target in settings.effective_targets():
        size = len(fleet(storage_for(settings, target)))
        if size == 0:
            continue
        params = DrillParams(
            sample=min(config.sample, size),
            endpoint_url=config.target_endpoint_url,
            region=config.target_region,
            profile=config.target_profile,
            workers=settings.workers,
            max_attempts=settings.max_attempts,
        )
        record = drill(
            settings, params=params, target=target, emit=emit, stop=stop, now=now, fit=fit
        )
        outcome.drills.append(record)
        outcome.notifications += notify(settings, record)
    return outcome
