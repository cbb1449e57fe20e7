"""The monitor: put capacity back, check every table of the night's run, report.

For the run (``--run ID``, else the newest run that started since the expected night's
backup, per the schedule): revert from its journal (retrying refused decreases), then for
every table the run planned, look for a committed backup of exactly that table made by this
run. Tables match by name exactly: the repository keeps each table in its own folder, never
found by prefix (the original confused ``orders`` with ``orders-archive``). The result is
written to ``@runs/<id>/monitor.json`` (:func:`hippolyte.repo.runs.write_monitor`).

A run started on AWS Data Pipeline (its journal records pipelines) is checked the original's
way: each pipeline's state is read and a done one deleted; capacity goes back for the tables
of done pipelines only; each such table's folder ``<table>/<run-id>/`` must hold the EMR
connector's ``manifest`` and ``_SUCCESS``. A table whose pipeline still runs is reported as
running, not failed, until the plan's window closes.

The tables of the run that have change sets are checked too (all the repository's tables with
change sets when nothing ran): a gap since the table's newest full backup, or changes whose
newest set ended more than ``capture_lag_seconds`` ago, fails the check
(:class:`hippolyte.core.messages.ChangesCheck`, beside the table's backup check), so the
notification tells it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace

from croniter import croniter

from hippolyte.adapters.storage import Storage
from hippolyte.core.config import CAPTURE_LAG_SECONDS
from hippolyte.core.errors import BackupCorrupt, HippolyteError, NotFound
from hippolyte.core.messages import changes_check
from hippolyte.core.model import (
    BackupRef,
    CapacityOutcome,
    CapacityStatus,
    Json,
    MonitorReport,
    TableCheck,
)
from hippolyte.engines import capacity, datapipeline_engine
from hippolyte.formats import datapipeline as formats_datapipeline
from hippolyte.ops.restore_check import check_items
from hippolyte.ops.status import changes_state
from hippolyte.repo import catalog, manifest, runs
from hippolyte.repo.journal import BoostState, Journal
from hippolyte.repo.verify import verify

GRACE = dt.timedelta(hours=1)  # a run may start a little before its scheduled minute
VERIFY_WORKERS = 4  # files read at once by --verify's item check


def expected_since(backup_cron: str, now: dt.datetime) -> dt.datetime:
    """When tonight's run should have started: the schedule's last firing before ``now``."""
    last = croniter(backup_cron, now.astimezone(dt.UTC)).get_prev(dt.datetime)
    return last.replace(tzinfo=dt.UTC) - GRACE


def find_run(storage: Storage, *, run_id: str | None, since: dt.datetime) -> str | None:
    if run_id:
        if not runs.has_plan(storage, run_id):
            raise NotFound(f"no run {run_id!r} in {storage.url}")
        return run_id
    recent = [
        r
        for r in runs.run_ids(storage)
        if manifest.is_backup_id(r) and manifest.parse_backup_id(r) >= since
    ]
    return max(recent) if recent else None


def monitor(
    storage: Storage,
    *,
    target: str,
    run_id: str | None,
    backup_cron: str,
    now: dt.datetime | None = None,
    check_files: bool = False,
    capture_lag_seconds: float = CAPTURE_LAG_SECONDS,
) -> MonitorReport:
    now = now or dt.datetime.now(dt.UTC)
    rid = find_run(storage, run_id=run_id, since=expected_since(backup_cron, now))
    if rid is None:
        return MonitorReport(
            run_id=None,
            checked_at=now,
            ran=False,
            repository=storage.url,
            tables=_changes_checks(
                storage, catalog.tables(storage), target=target, now=now, limit=capture_lag_seconds
            ),
        )
    journal = Journal.open(storage, rid, create=True)
    plan = runs.read_plan(storage, rid)
    if journal.pipelines():
        checks, outcomes = _remote_checks(
            storage, rid, plan, journal, target=target, now=now, check_files=check_files
        )
    else:
        outcomes = capacity.revert(journal)
        pending = {o.table: o.note for o in outcomes if o.status == CapacityStatus.REVERT_PENDING}
        checks = [
            _check(
                storage,
                rid,
                name,
                pipeline=index,
                target=target,
                pending=pending.get(name),
                check_files=check_files,
            )
            for index, name in _planned(plan)
        ]
    checks = _with_errors(_with_warnings(checks, _warnings(storage, rid, journal)), storage, rid)
    planned = list(dict.fromkeys(name for _, name in _planned(plan)))
    report = MonitorReport(
        run_id=rid,
        checked_at=now,
        ran=True,
        repository=storage.url,
        tables=checks
        + _changes_checks(storage, planned, target=target, now=now, limit=capture_lag_seconds),
        capacity=[f"{o.table}: {o.status} {o.note}".strip() for o in outcomes],
        logs=f"{storage.url.rstrip('/')}/{runs.RUNS}{rid}/",
    )
    runs.write_monitor(storage, report)
    return report


def _warnings(storage: Storage, rid: str, journal: Journal) -> dict[str, list[str]]:
    """Each table's warnings: the run's result's (a boost that could not happen, and what it
    cost the window); a run killed before its result: its journal's failed boosts."""
    try:
        result = runs.read_result(storage, rid)
    except (NotFound, BackupCorrupt):
        return {
            str(e["table"]): [str(e.get("note") or "boost failed")]
            for e in journal.entries.values()
            if e.get("status") == BoostState.BOOST_FAILED and "table" in e
        }
    return {r.table: list(r.warnings) for r in result.results if r.warnings}


def _with_warnings(checks: list[TableCheck], warned: dict[str, list[str]]) -> list[TableCheck]:
    return [
        replace(c, reason="; ".join([c.reason, *(f"warning: {w}" for w in warned[c.table])]))
        if c.table in warned
        else c
        for c in checks
    ]


def _with_errors(checks: list[TableCheck], storage: Storage, rid: str) -> list[TableCheck]:
    """A failed table's reason says why its backup failed, as the run recorded it (a table
    deleted mid-run, a call that failed after its retries), not only that none exists."""
    try:
        errors = {r.table: r.error for r in runs.read_result(storage, rid).results if r.error}
    except (NotFound, BackupCorrupt):  # killed before its result: the folders tell
        return checks
    return [
        replace(c, reason=f"{c.reason}: {errors[c.table]}") if not c.ok and c.table in errors else c
        for c in checks
    ]


def _changes_checks(
    storage: Storage, tables: Iterable[str], *, target: str, now: dt.datetime, limit: float
) -> list[TableCheck]:
    """A check of each table's change sets, for the tables that have any."""
    out: list[TableCheck] = []
    for table in tables:
        state = changes_state(storage, table, now=now, lag_limit_s=limit)
        if state is not None:
            out.append(changes_check(table=table, target=target, state=state, now=now))
    return out


def _planned(plan: Json) -> Iterable[tuple[int | None, str]]:
    for p in plan.get("pipelines", []):
        for t in p["tables"]:
            yield p["index"], t["table"]
    for e in plan.get("exports", []):
        yield None, e["table"]  # DynamoDB's export: no pipeline


def _check(
    storage: Storage,
    rid: str,
    table: str,
    *,
    pipeline: int | None,
    target: str,
    pending: str | None,
    check_files: bool,
) -> TableCheck:
    def verdict(ok: bool, reason: str, ref: BackupRef | None = None) -> TableCheck:
        return TableCheck(
            table=table,
            target=target,
            ok=ok,
            reason=reason,
            pipeline=pipeline,
            backup=str(ref) if ref else None,
        )

    if pending:
        return verdict(False, f"capacity not reverted: {pending}")
    ours = [r for r in catalog.refs(storage, table) if r.backup_id >= rid]  # exact folder
    if not ours:
        return verdict(False, "no backup")
    complete = [r for r in ours if catalog.is_complete(storage, r)]
    if not complete:
        return verdict(False, f"incomplete (no _SUCCESS): {ours[-1]}", ours[-1])
    ref = complete[-1]
    if check_files:
        try:
            result = verify(storage, ref, read_files=False)  # the check pass reads them
        except HippolyteError as exc:
            return verdict(False, f"verify failed: {exc}", ref)
        if not result.ok:
            return verdict(False, f"verify failed: {result.problems[0]}", ref)
        # every file read once: checksums, every item as a restore checks it, recorded (the
        # backup's first restore then only hashes its files)
        problems = check_items(storage, ref, workers=VERIFY_WORKERS)
        if problems:
            return verdict(False, f"verify failed: {problems[0]}", ref)
    return verdict(True, f"committed {ref.backup_id}", ref)


# --- runs on AWS Data Pipeline ----------------------------------------------------------------


def window_closes(plan: Json, run_id: str) -> dt.datetime:
    """When the run's window closes: the plan's window end, first reached after the start."""
    start = manifest.parse_backup_id(run_id)
    end = dt.time.fromisoformat(plan["settings"]["window_end"])
    close = dt.datetime.combine(start.date(), end, tzinfo=dt.UTC)
    return close if close > start else close + dt.timedelta(days=1)


def _remote_checks(
    storage: Storage,
    rid: str,
    plan: Json,
    journal: Journal,
    *,
    target: str,
    now: dt.datetime,
    check_files: bool,
) -> tuple[list[TableCheck], list[CapacityOutcome]]:
    outcomes, views = datapipeline_engine.revert_done(journal)
    pending = {o.table: o.note for o in outcomes if o.status == CapacityStatus.REVERT_PENDING}
    by_table = {t: v for v in views for t in v.tables}
    closes = window_closes(plan, rid)
    checks = [
        _remote_check(
            storage,
            rid,
            name,
            pipeline=index,
            view=by_table.get(name),
            target=target,
            pending=pending.get(name),
            inside_window=now < closes,
            closes=closes,
            check_files=check_files,
        )
        for index, name in _planned(plan)
    ]
    return checks, outcomes


def _remote_check(
    storage: Storage,
    rid: str,
    table: str,
    *,
    pipeline: int | None,
    view: datapipeline_engine.PipelineView | None,
    target: str,
    pending: str | None,
    inside_window: bool,
    closes: dt.datetime,
    check_files: bool,
) -> TableCheck:
    def verdict(ok: bool, reason: str, *, running: bool = False) -> TableCheck:
        return TableCheck(
            table=table,
            target=target,
            ok=ok,
            reason=reason,
            pipeline=pipeline,
            backup=f"{table}/{rid}" if ok else None,
            running=running,
        )

    if view is None:
        return verdict(False, "no pipeline: the run stopped before creating it")
    if not view.done:
        when = f"the window closes at {closes:%Y-%m-%d %H:%M} UTC"
        if inside_window:
            return verdict(
                False, f"still running in {view.summary}; not a failure before {when}", running=True
            )
        return verdict(False, f"still running in {view.summary} after {when}")
    if pending:
        return verdict(False, f"capacity not reverted: {pending}")
    prefix = datapipeline_engine.folder(table, rid)
    where = f"{storage.url.rstrip('/')}/{prefix}"
    ok, why = formats_datapipeline.check_folder(storage, prefix, location=where, verify=check_files)
    return verdict(ok, f"committed {rid} ({why})" if ok else f"{why}; {view.summary}")
