"""``hippolyte forget``: remove the backups and change sets a retention policy does not keep.

The decision is ``core.retention.decide`` over a listing of the repository (full backups by
their id's time, complete or not; committed change sets); the removal is crash-safe: a
backup's ``_SUCCESS`` goes first (it is then incomplete and never offered again), then its
other files; a killed forget leaves only incomplete folders, which the next one removes. It
runs under the repository's lock, so never while a backup writes. A backup or change set
that S3 Object Lock protects is kept, with the lock's mode and end as its reason (a delete in
a versioned bucket would only hide it behind a delete marker); an append-only repository
refuses forget altogether.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from hippolyte.adapters.storage import Storage
from hippolyte.core.chain import FullBackup, Window
from hippolyte.core.config import Keep, KeepFor, Retention
from hippolyte.core.errors import ConfigError, HippolyteError, NotFound
from hippolyte.core.events import Emit, Step, discard
from hippolyte.core.retention import Backup, Decision, Entry, KeepPolicy, decide
from hippolyte.ops.pitr import history
from hippolyte.repo import catalog, changes, manifest
from hippolyte.repo.lock import RepoLock

LEASE_S = 600.0


@dataclass(kw_only=True)
class ForgetReport:
    decision: Decision
    dry_run: bool
    removed_files: int = 0
    errors: list[str] = field(default_factory=list)


def listing(
    storage: Storage, tables: Sequence[str] = ()
) -> tuple[list[Backup], dict[str, list[Window]]]:
    """Every full backup folder (complete or not) and the change windows of ``tables`` (all
    the repository's when none is named)."""
    backups: list[Backup] = []
    windows: dict[str, list[Window]] = {}
    for table in list(tables) or catalog.tables(storage):
        listed = table_listing(storage, table)
        backups += listed.backups
        if listed.windows:
            windows[table] = listed.windows
    return backups, windows


@dataclass(frozen=True)
class TableListing:
    """What the repository holds of one table, read once for all that asks (``status`` and
    the dashboard ask for a table's retention, changes and newest backup)."""

    backups: list[Backup]  # every full backup folder, complete or not
    full: list[FullBackup]  # beside change sets only: the complete ones, with their times
    windows: list[Window]  # its change sets


def table_listing(storage: Storage, table: str) -> TableListing:
    complete = catalog.completeness(storage, table)
    # a backup's end matters only beside change sets: read the descriptors only then
    has_changes = bool(storage.list_dirs(f"{table}/{changes.CHANGES}"))
    full, sets = history(storage, table, complete=complete) if has_changes else ([], [])
    ends = {b.id: changes.from_micros(b.end) for b in full}
    backups = [
        Backup(
            table=table,
            id=bid,
            start=manifest.parse_backup_id(bid),
            complete=done,
            end=ends.get(bid),
        )
        for bid, done in complete.items()
    ]
    return TableListing(backups=backups, full=full, windows=sets)


Policies = KeepPolicy | Callable[[str], KeepPolicy]  # one for all tables, or per table


def policy_of(rules: Keep) -> KeepPolicy:
    """The keep rules of the configuration as a policy (ValueError when there is none)."""
    return KeepPolicy(
        keep_last=rules.keep_last,
        keep_hourly=rules.keep_hourly,
        keep_daily=rules.keep_daily,
        keep_weekly=rules.keep_weekly,
        keep_monthly=rules.keep_monthly,
        keep_yearly=rules.keep_yearly,
        keep_within=rules.keep_within,
    )


def configured(retention: Retention) -> Callable[[str], KeepPolicy]:
    """``[retention]``'s policy for a table: its first matching ``tables`` entry, else the
    default. Every one is checked now, so a bad rule stops forget before it lists anything."""
    for rules in (retention, *retention.tables):
        try:
            policy_of(rules)
        except ValueError as exc:
            where = (
                f"[[retention.tables]] match = {rules.match!r}"
                if isinstance(rules, KeepFor)
                else "[retention]"
            )
            raise ConfigError(f"{where}: {exc}") from None
    return lambda table: policy_of(retention.rules_for(table))


def forget(
    storage: Storage,
    policy: Policies,
    *,
    tables: Sequence[str] = (),
    dry_run: bool = False,
    now: dt.datetime | None = None,
    incomplete_after: dt.timedelta = dt.timedelta(hours=48),
    emit: Emit = discard,
) -> ForgetReport:
    now = now or dt.datetime.now(dt.UTC)
    if not dry_run and storage.append_only:
        raise ConfigError(
            f"forget: repository {storage.url} is append-only for this process "
            "(append_only = true); nothing was removed"
        )
    if not dry_run:
        storage.check_writable()
    lock = RepoLock(storage=storage, lease_s=LEASE_S, purpose="forget")
    if not dry_run and not lock.acquire():
        raise HippolyteError(
            f"forget: a run holds the lock of {storage.url}; nothing was removed (try later)"
        )
    try:
        backups, windows = listing(storage, tables)
        if tables:
            missing = [t for t in tables if not any(b.table == t for b in backups)]
            if missing and not any(t in windows for t in missing):
                raise ConfigError(f"forget: no backup of {missing[0]!r} in {storage.url}")
        decision = decide_with(backups, windows, policy, now=now, incomplete_after=incomplete_after)
        decision = honour_locks(storage, decision)
        report = ForgetReport(decision=decision, dry_run=dry_run)
        removing = [e for e in decision.entries if e.action == "remove"]
        emit(
            Step(
                text=f"forget: {len(decision.entries) - len(removing):,} kept, "
                f"{len(removing):,} to remove" + (" (dry run: nothing removed)" if dry_run else "")
            )
        )
        if not dry_run:
            for entry in removing:
                report.removed_files += _remove(storage, entry.table, entry.kind, entry.id)
        return report
    finally:
        if not dry_run:
            lock.release()


def decide_with(
    backups: list[Backup],
    windows: dict[str, list[Window]],
    policy: Policies,
    *,
    now: dt.datetime,
    incomplete_after: dt.timedelta,
) -> Decision:
    """The pure decision over a listing, with one policy for all or a policy per table."""
    if isinstance(policy, KeepPolicy):
        return decide(backups, windows, policy, now=now, incomplete_after=incomplete_after)
    out = Decision()
    for table in sorted({b.table for b in backups} | set(windows)):
        one = decide(
            [b for b in backups if b.table == table],
            {table: windows[table]} if table in windows else {},
            policy(table),
            now=now,
            incomplete_after=incomplete_after,
        )
        out.entries.extend(one.entries)
        out.lost.extend(one.lost)
    return out


def honour_locks(storage: Storage, decision: Decision) -> Decision:
    """Every removal S3 Object Lock forbids becomes a keep, its reason the lock's mode and
    end; the ranges it would have lost are not lost. Without Object Lock on the bucket (a
    folder too) nothing can be locked: unchanged, and no object is asked about."""
    removing = [e for e in decision.entries if e.action == "remove"]
    if not removing or not storage.lock_enabled():
        return decision
    with ThreadPoolExecutor(max_workers=16) as pool:
        locks = dict(zip(removing, pool.map(lambda e: _lock_of(storage, e), removing), strict=True))
    entries: list[Entry] = []
    held: set[tuple[str, str]] = set()
    for e in decision.entries:
        lock = locks.get(e)
        if lock is not None:
            mode, until = lock
            when = until.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            e = e._replace(action="keep", reasons=(f"object-locked ({mode}) until {when}",))
            held.add((e.table, e.id))
        entries.append(e)
    lost = [r for r in decision.lost if (r.table, r.backup) not in held]
    return Decision(entries=entries, lost=lost)


def _folder(table: str, kind: str, ident: str) -> str:
    return f"{table}/{ident}/" if kind == "backup" else changes.prefix(table, ident)


def _lock_of(storage: Storage, e: Entry) -> tuple[str, dt.datetime] | None:
    """The lock on a backup's ``_SUCCESS``, else (incomplete) on its first file: all of a
    backup's objects are written within its run, with the same retention."""
    folder = _folder(e.table, e.kind, e.id)
    try:
        return storage.locked_until(folder + manifest.SUCCESS)
    except NotFound:
        first = next(iter(storage.list(folder)), None)
        return storage.locked_until(first) if first is not None else None


def _remove(storage: Storage, table: str, kind: str, ident: str) -> int:
    """``_SUCCESS`` first, then every other file of the folder."""
    folder = _folder(table, kind, ident)
    keys = list(storage.list(folder))
    success = folder + manifest.SUCCESS
    if success in keys:
        storage.delete(success)
    storage.delete_many([k for k in keys if k != success])
    return len(keys)


def forget_by_config(storage: Storage, retention: Retention) -> ForgetReport:
    """``[retention]`` applied to one repository, as ``serve`` and the Lambda do after each
    monitor."""
    return forget(
        storage,
        configured(retention),
        incomplete_after=dt.timedelta(hours=retention.incomplete_after_hours),
    )
