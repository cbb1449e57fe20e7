"""The two scheduled jobs, shared by the CLI, the `serve` daemon and the Lambda handler:
the nightly backup (plan and run it, per target) and the monitor (revert, check, notify)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hippolyte.core.config import Settings, Target
from hippolyte.core.events import Emit, discard
from hippolyte.core.model import MonitorReport
from hippolyte.ops.context import backup_params, storage_for
from hippolyte.ops.monitor import monitor
from hippolyte.ops.plan import plan_target
from hippolyte.ops.run import RunResult, run_plan


def nightly_backup(
    settings: Settings,
    *,
    emit: Emit = discard,
    stop: threading.Event | None = None,
    targets: Sequence[Target] | None = None,
) -> list[RunResult]:
    runs = []
    for target in targets or settings.effective_targets():
        storage = storage_for(settings, target)
        storage.check_writable()
        planned, _ = plan_target(settings, target, storage=storage, at=None)
        runs.append(
            run_plan(
                planned,
                conn=target.connection(),
                storage=storage,
                params=backup_params(settings),
                pipelines_at_once=settings.workers,
                emit=emit,
                stop=stop,
            )
        )
    return runs


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
        elif report.failed or settings.notify_on_success:
            message = messages.for_report(report)
        else:
            continue
        results += send_all(settings.notifications, message)
    return results
