"""Status and coverage: per table, the last committed backup and its age; the tables of the
account that have no backup at all; whether every selected table meets its RPO; and, for a
table with change sets, how far its changes reach, their lag, and the gaps that break its
chain since its newest full backup (the monitor checks the same); how many backups it has,
how many ``[retention]`` keeps, and the oldest instant it can be restored to; and for each
``[[copies]]`` destination, what it lacks (late once older than the RPO)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.chain import FullBackup, Gap, Window, covered
from hippolyte.core.config import CAPTURE_LAG_SECONDS, Copy, Retention, Settings
from hippolyte.core.errors import BackupCorrupt, HippolyteError, NotFound
from hippolyte.core.messages import ChangesState, gap_explanation
from hippolyte.core.model import BackupRef, Json, Selected, TableResult
from hippolyte.ops import forget
from hippolyte.ops.context import storage_for
from hippolyte.ops.discover import discover
from hippolyte.ops.forget import TableListing
from hippolyte.ops.pitr import history
from hippolyte.repo import catalog, changes, drills, manifest, runs


@dataclass(frozen=True, kw_only=True)
class TableStatus:
    table: str
    target: str
    selected: bool
    last_backup: str | None = None  # backup id of the newest committed backup
    age_hours: float | None = None
    items: int | None = None
    bytes: int | None = None
    duration_s: float | None = None
    last_run: str | None = None  # e.g. "2026-11-22-00-10-00: ok" / ": failed: ..."
    meets_rpo: bool = False
    note: str = ""
    changes: ChangesState | None = None  # None: the table has no change sets
    backups: int = 0  # committed backups in the repository
    kept: int | None = None  # of those, what [retention] keeps (None: no [retention])
    oldest_restorable: dt.datetime | None = None  # the oldest (kept) committed backup's time
    last_drill: dt.datetime | None = None  # when the table's last restore drill ran
    drill_ok: bool | None = None  # whether it proved the restore (None: never drilled)
    drill_seconds_per_gb: float | None = None  # its measured RTO


@dataclass(frozen=True, kw_only=True)
class CopyLag:
    """What a ``[[copies]]`` destination lacks of the repository's committed backups."""

    destination: str
    behind: int = 0  # backups and change sets not committed there
    oldest: dt.datetime | None = None  # the oldest of them
    late: int = 0  # of them, older than the RPO: the copy job is not keeping up
    error: str = ""  # the destination could not be read

    @property
    def ok(self) -> bool:
        return not self.error and not self.late


@dataclass(kw_only=True)
class StatusReport:
    rpo_hours: float
    capture_lag_seconds: float = CAPTURE_LAG_SECONDS
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    tables: list[TableStatus] = field(default_factory=list)
    copies: list[CopyLag] = field(default_factory=list)

    @property
    def uncovered(self) -> list[TableStatus]:
        """Tables in the account with no committed backup at all (selected or not)."""
        return [t for t in self.tables if t.last_backup is None]

    @property
    def late(self) -> list[TableStatus]:
        """Selected tables without a committed backup younger than the RPO."""
        return [t for t in self.tables if t.selected and not t.meets_rpo]

    @property
    def broken_changes(self) -> list[TableStatus]:
        """Selected tables with change sets that have a gap since their newest full backup, or
        whose changes lag more than the threshold (a table left out of the backups has no
        full backup to bring forward: its changes are shown, not judged)."""
        return [t for t in self.tables if t.selected and t.changes is not None and not t.changes.ok]

    @property
    def late_copies(self) -> list[CopyLag]:
        return [c for c in self.copies if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.late and not self.broken_changes and not self.late_copies


def fleet_status(settings: Settings, *, now: dt.datetime | None = None) -> StatusReport:
    """Every target's tables (selected or not) against the repository: the report of
    ``hippolyte status``."""
    now = now or dt.datetime.now(dt.UTC)
    report = StatusReport(
        rpo_hours=settings.rpo_hours,
        capture_lag_seconds=settings.capture_lag_seconds,
        checked_at=now,
    )
    for target in settings.effective_targets():
        storage = storage_for(settings, target)
        last_run = last_run_states(storage)
        drilled = drills.last_drills(storage)
        control = dynamodb.control_client(target.connection())
        for sel in discover(
            conn=target.connection(),
            rules=settings.selection.rules(),
            max_attempts=settings.max_attempts,
        ):
            listed = forget.table_listing(storage, sel.table.name)  # once for all three
            status = table_status(
                storage,
                sel,
                listed,
                target=target.label,
                rpo_hours=settings.rpo_hours,
                last_run=last_run,
                now=now,
                is_empty=functools.partial(_is_empty, control),
            )
            state = changes_state(
                storage,
                sel.table.name,
                now=now,
                lag_limit_s=settings.capture_lag_seconds,
                listed=listed,
            )
            backups, kept, oldest = retention_state(
                storage, sel.table.name, settings.retention, now=now, listed=listed
            )
            status = replace(
                status, changes=state, backups=backups, kept=kept, oldest_restorable=oldest
            )
            if sel.table.name in drilled:
                drill, table_drill = drilled[sel.table.name]
                status = replace(
                    status,
                    last_drill=drill.at,
                    drill_ok=table_drill.ok,
                    drill_seconds_per_gb=table_drill.seconds_per_gb,
                )
            report.tables.append(status)
        names = [t.table for t in report.tables if t.target == target.label]
        report.copies += [
            copy_lag(storage, c, tables=names, rpo_hours=settings.rpo_hours, now=now)
            for c in settings.copies
        ]
    return report


def copy_lag(
    storage: Storage,
    copy: Copy,
    *,
    tables: Sequence[str],
    rpo_hours: float,
    now: dt.datetime,
) -> CopyLag:
    """What ``copy``'s destination lacks of ``tables`` (those it wants)."""
    from hippolyte.ops import copy as copying

    wanted = [t for t in tables if copy.wants(t)]
    try:
        dest = copying.open_destination(
            copy.to, conn=copy.connection(), endpoint_url=copy.endpoint_url
        )
        missing = copying.lagging(storage, dest, wanted) if wanted else []
    except HippolyteError as exc:
        return CopyLag(destination=copy.to, error=str(exc))
    times = [u.sort_key()[1] for u in missing]
    limit = now - dt.timedelta(hours=rpo_hours)
    return CopyLag(
        destination=dest.url,
        behind=len(missing),
        oldest=min(times, default=None),
        late=sum(t < limit for t in times),
    )


def _is_empty(control: Any, table: str) -> bool:
    return not dynamodb.has_items(control, table)


def table_status(
    storage: Storage,
    sel: Selected,
    listed: TableListing,
    *,
    target: str,
    rpo_hours: float,
    last_run: dict[str, str],
    now: dt.datetime,
    is_empty: Callable[[str], bool] = lambda name: False,
) -> TableStatus:
    """``listed``: what the repository holds of the table; ``is_empty`` tells whether a table
    without a backup holds nothing (so is not late)."""
    name = sel.table.name
    for bid in sorted((b.id for b in listed.backups if b.complete), reverse=True):
        ref = BackupRef(repo=storage.url, table=name, backup_id=bid)
        try:
            summary = catalog.summary(storage, ref)
        except HippolyteError:
            continue
        age = (now - manifest.parse_backup_id(ref.backup_id)).total_seconds() / 3600
        return TableStatus(
            table=name,
            target=target,
            selected=sel.selected,
            last_backup=ref.backup_id,
            age_hours=round(age, 2),
            items=summary.item_count,
            bytes=summary.raw_bytes,
            duration_s=summary.duration_s,
            last_run=last_run.get(name),
            meets_rpo=age <= rpo_hours,
        )
    if sel.selected and is_empty(name):
        return TableStatus(
            table=name,
            target=target,
            selected=True,
            meets_rpo=True,
            last_run=last_run.get(name),
            note="empty: nothing to back up",
        )
    return TableStatus(
        table=name, target=target, selected=sel.selected, last_run=last_run.get(name)
    )


def last_run_states(storage: Storage) -> dict[str, str]:
    """Each table's outcome in the newest run that has a result."""
    for rid in sorted(runs.run_ids(storage), reverse=True):
        try:
            result = runs.read_result(storage, rid)
        except (NotFound, BackupCorrupt):
            continue
        return {r.table: f"{rid}: {_outcome(r)}" for r in result.results}
    return {}


def _outcome(result: TableResult) -> str:
    if result.started_in:
        return f"started in {result.started_in}"
    return "ok" if result.ok else f"failed: {result.error}"


def retention_state(
    storage: Storage,
    table: str,
    retention: Retention | None,
    *,
    now: dt.datetime,
    listed: TableListing | None = None,
) -> tuple[int, int | None, dt.datetime | None]:
    """(committed backups, how many ``retention`` keeps or None, the oldest restorable time:
    the oldest committed backup the policy keeps). The policy is decided, nothing removed.
    ``listed``: the table's listing when already read."""
    if listed is None:
        listed = forget.table_listing(storage, table)
    backups, windows = listed.backups, ({table: listed.windows} if listed.windows else {})
    complete = sorted(b.start for b in backups if b.complete)
    if not complete:
        return 0, (0 if retention is not None else None), None
    if retention is None:
        return len(complete), None, complete[0]
    decision = forget.decide_with(
        backups,
        windows,
        forget.configured(retention),
        now=now,
        incomplete_after=dt.timedelta(hours=retention.incomplete_after_hours),
    )
    kept = {e.id for e in decision.kept("backup")}
    starts = sorted(b.start for b in backups if b.complete and b.id in kept)
    return len(complete), len(starts), (starts[0] if starts else None)


# --- a table's changes ----------------------------------------------------------------------


def changes_state(
    storage: Storage,
    table: str,
    *,
    now: dt.datetime,
    lag_limit_s: float = CAPTURE_LAG_SECONDS,
    listed: TableListing | None = None,
) -> ChangesState | None:
    """How far ``table``'s change sets reach, their lag at ``now`` and the gaps since its
    newest full backup; None when it has no change set. ``listed``: the table's listing
    when already read."""
    if listed is not None:
        backups, windows = listed.full, listed.windows
    elif not storage.list_dirs(f"{table}/{changes.CHANGES}"):
        return None  # never captured: its backups need not be read
    else:
        backups, windows = history(storage, table)
    if not windows:
        return None
    newest = max(w.end for w in windows)
    return ChangesState(
        change_sets=len(windows),
        changes_until=changes.from_micros(newest),
        lag_seconds=round((changes.micros(now) - newest) / 1e6, 1),
        lag_limit_seconds=lag_limit_s,
        gaps=tuple(_gap_doc(g) for g in gaps_since_newest(backups, windows)),
    )


def gaps_since_newest(backups: Sequence[FullBackup], windows: Sequence[Window]) -> list[Gap]:
    """The gaps that keep the newest full backup from being brought forward: every gap of
    the chain that ends after its start, and the time from its start to the first change
    set when the changes begin after it. With no full backup, every gap. Pure."""
    runs_, gaps = covered(windows)
    if not backups:
        return gaps
    since = max(b.start for b in backups)
    found = [g for g in gaps if g.end > since]
    if runs_ and since < runs_[0][0]:
        first = runs_[0][0]
        found.append(Gap(start=since, end=first, cause="the changes begin after the backup"))
    return sorted(found, key=lambda g: (g.start, g.end))


def _gap_doc(gap: Gap) -> Json:
    """A gap for people and machines; the capture records its cause as a document
    (``{"cause": "trimmed", "detail": ...}``), a chain's own gaps as a sentence."""
    cause = gap.cause
    doc: Json = {
        "from": manifest.iso(changes.from_micros(gap.start)),
        "to": manifest.iso(changes.from_micros(gap.end)),
        "cause": cause,
        "explanation": gap_explanation(cause),
    }
    if gap.detail:
        doc["detail"] = gap.detail
    return doc
