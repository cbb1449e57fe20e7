"""The two scheduled jobs, shared by the CLI, the `serve` daemon and the Lambda handler:
the nightly backup (plan and run it, per target) and the monitor (revert, check, notify).
There is no other copy: the CLI's `backup --all`, `serve` and the Lambda all run these."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hippolyte.core import planning
from hippolyte.core.config import Settings, Target
from hippolyte.core.events import Emit, discard
from hippolyte.core.model import MonitorReport
from hippolyte.ops.backup import BackupParams
from hippolyte.ops.context import backup_params, storage_for, storage_if_any
from hippolyte.ops.monitor import monitor
from hippolyte.ops.plan import plan_target
from hippolyte.ops.run import RunResult, actions, run_plan

Fit = Callable[[planning.Plan], planning.Plan]  # the plan cut to what this runner has time for


def run_target(
    settings: Settings,
    target: Target,
    *,
    params: BackupParams | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
    now: dt.datetime | None = None,
    fit: Fit | None = None,
) -> tuple[planning.Plan, RunResult]:
    """Tonight's plan for one target, run: (the whole plan, the run of what ``fit`` kept)."""
    storage = storage_for(settings, target)
    storage.check_writable()
    planned, _ = plan_target(settings, target, storage=storage, at=None)
    run = run_plan(
        fit(planned) if fit else planned,
        conn=target.connection(),
        storage=storage,
        params=params or backup_params(settings),
        pipelines_at_once=settings.workers,
        emit=emit,
        stop=stop,
        now=now,
    )
    return planned, run


def nightly_backup(
    settings: Settings,
    *,
    params: BackupParams | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
    targets: Sequence[Target] | None = None,
) -> list[RunResult]:
    """Every target's plan, run one target after another; one RunResult per target."""
    return [
        run_target(settings, target, params=params, emit=emit, stop=stop)[1]
        for target in targets or settings.effective_targets()
    ]


def planned_actions(settings: Settings) -> list[str]:
    """``backup --dry-run``: what tonight's run would do, per target, changing nothing."""
    lines = []
    for target in settings.effective_targets():
        storage = storage_if_any(settings, target)
        planned, _ = plan_target(settings, target, storage=storage, at=None)
        lines += [f"{target.label}: {line}" for line in actions(planned)]
    return lines


@dataclass(kw_only=True)
class MonitorOutcome:
    reports: list[MonitorReport]
    notifications: list[Any] = field(default_factory=list)  # adapters.notify.ChannelResult

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)


def nightly_monitor(
    settings: Settings,
    *,
    run_id: str | None = None,
    now: dt.datetime | None = None,
    check_files: bool = False,
    notify: bool = True,
) -> MonitorOutcome:
    reports = [
        monitor(
            storage_for(settings, t),
            target=t.label,
            run_id=run_id,
            backup_cron=settings.schedule.backup,
            now=now,
            check_files=check_files,
            capture_lag_seconds=settings.capture_lag_seconds,
        )
        for t in settings.effective_targets()
    ]
    outcome = MonitorOutcome(reports=reports)
    if notify and settings.notifications:
        outcome.notifications = send_reports(settings, reports, now=now)
    return outcome


def send_reports(
    settings: Settings, reports: Sequence[MonitorReport], *, now: dt.datetime | None
) -> list[Any]:
    from hippolyte.adapters.notify import send_all
    from hippolyte.core import messages

    results = []
    for report in reports:
        if not report.ran:
            night = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")
            message = messages.nothing_ran(expected_night=night, repository=report.repository)
            if messages.broken_changes(report):  # the tables' changes are checked all the same
                results += send_all(settings.notifications, message)
                message = messages.changes_only(report)
        elif report.failed or settings.notify_on_success:
            message = messages.for_report(report)
        else:
            continue
        results += send_all(settings.notifications, message)
    return results
