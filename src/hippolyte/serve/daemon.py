"""`hippolyte serve`: run the schedule (cron, UTC), one job at a time through the repository
locks, expose /metrics and /healthz, log as JSON. SIGTERM sets ``stop``: the job in progress
stops between pages, reverts the capacity it boosted (run_plan reverts in a ``finally``),
releases the locks, and the loop exits.

Targets may each have their own repository: a job takes the lock of every distinct one it
writes to (all of them, in the order of their URLs) or runs not at all, and each table's
metrics carry the label of the target it belongs to."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.errors import HippolyteError, Interrupted
from hippolyte.engines.pool import relayed
from hippolyte.ops import context, jobs
from hippolyte.repo.journal import Journal, run_ids
from hippolyte.repo.lock import RepoLock
from hippolyte.serve.dashboard import Dashboard
from hippolyte.serve.metrics import Metrics, start_http

log = logging.getLogger("hippolyte.serve")
JOBS = ("backup", "monitor", "drill")


@dataclass
class Daemon:
    settings: Settings
    stop: threading.Event
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    running: str | None = None
    last: dict[str, Any] = field(default_factory=dict)
    next_at: dict[str, dt.datetime] = field(default_factory=dict)
    dashboard: Dashboard | None = None  # the page at /, read from the repositories
    # The running job's stop: ``stop``, or one of its locks taken over by another run.
    job_stop: threading.Event = field(default_factory=threading.Event)

    def health(self) -> dict[str, Any]:
        """``status`` is "degraded" when the dashboard could not read a repository (the
        reasons under ``dashboard.errors``): serve still runs its schedule."""
        board = self.dashboard.health() if self.dashboard else None
        return {
            "status": "ok" if board is None or board["ok"] else "degraded",
            "running": self.running,
            "last": self.last,
            "next": {k: v.isoformat() for k, v in self.next_at.items()},
            **({"dashboard": board} if board is not None else {}),
        }

    def _schedule(self) -> None:
        now = self.clock()
        crons = {"backup": self.settings.schedule.backup, "monitor": self.settings.schedule.monitor}
        if self.settings.drills is not None:  # [drills]
            crons["drill"] = self.settings.drills.schedule
        for job, expr in crons.items():
            if job not in self.next_at or self.next_at[job] <= now:
                nxt = croniter(expr, now).get_next(dt.datetime)
                self.next_at[job] = nxt.replace(tzinfo=dt.UTC) if nxt.tzinfo is None else nxt

    def loop(self, *, run_now: list[str] | None = None) -> None:
        for job in run_now or []:
            self.run_job(job)
        while not self.stop.is_set():
            self._schedule()
            job, due = min(self.next_at.items(), key=lambda kv: (kv[1], JOBS.index(kv[0])))
            if self.stop.wait(max(0.0, (due - self.clock()).total_seconds())):
                break
            self.next_at.pop(job)
            self.run_job(job)

    def run_job(self, job: str) -> None:
        self.job_stop = threading.Event()
        try:
            locks = self._lock_all(job)
        except HippolyteError as exc:
            log.error("job failed", extra={"job": job, "error": str(exc)})
            self.metrics.runs.labels(job, "error").inc()
            return
        if locks is None:
            self.metrics.runs.labels(job, "skipped").inc()
            return
        self.running = job
        started = time.monotonic()
        result = "ok"
        try:
            log.info("job started", extra={"job": job})
            jobs_ = {"backup": self._backup, "monitor": self._monitor, "drill": self._drill}
            with relayed(self.stop, self.job_stop, name="hippolyte-job-stop"):
                result = jobs_[job]()
            if any(lock.lost for lock in locks):
                result = "lock-lost"
        except Interrupted:
            result = "lock-lost" if any(lock.lost for lock in locks) else "interrupted"
        except HippolyteError as exc:
            result = "error"
            log.error("job failed", extra={"job": job, "error": str(exc)})
        finally:
            _release(locks)
            self.running = None
            self._count_boosts()
            if self.dashboard:
                self.dashboard.invalidate()
            self.metrics.runs.labels(job, result).inc()
            self.last[job] = {
                "result": result,
                "at": self.clock().isoformat(),
                "seconds": round(time.monotonic() - started, 1),
            }
            log.info("job finished", extra={"job": job, "result": result})
        if job == "monitor" and self.settings.retention is not None and not self.stop.is_set():
            self._forget()
        if job == "monitor" and self.settings.copies and not self.stop.is_set():
            self._copy()

    def _forget(self) -> None:
        """``[retention]``: after each monitor, forget what the rules do not keep, in every
        repository (each under its own lock, taken by forget)."""
        from hippolyte.ops.forget import forget_by_config

        retention = self.settings.retention
        assert retention is not None
        for storage in self._repositories():
            try:
                report = forget_by_config(storage, retention)
            except HippolyteError as exc:
                log.error("forget failed", extra={"repository": storage.url, "error": str(exc)})
                self.metrics.runs.labels("forget", "error").inc()
                continue
            removed = [e for e in report.decision.entries if e.action == "remove"]
            log.info(
                "forget finished",
                extra={
                    "repository": storage.url,
                    "removed": len(removed),
                    "kept": len(report.decision.entries) - len(removed),
                },
            )
            self.metrics.runs.labels("forget", "ok").inc()

    def _copy(self) -> None:
        """``[[copies]]``: after each monitor (and forget), copy every committed backup and
        change set a destination lacks, from every repository."""
        from hippolyte.ops.copy import copy_by_config

        for storage in self._repositories():
            for report in copy_by_config(storage, self.settings.copies):
                ok = "ok" if report.ok else "error"
                facts = {k: v for k, v in report.to_json().items() if k != "copies"}
                if report.ok:
                    log.info("copy finished", extra={"repository": storage.url, **facts})
                else:
                    log.error("copy failed", extra={"repository": storage.url, **facts})
                self.metrics.runs.labels("copy", ok).inc()

    def _repositories(self) -> list[Storage]:
        """Every distinct repository the targets write to, in the order of their URLs."""
        storages: dict[str, Storage] = {}
        for target in self.settings.effective_targets():
            storage = context.storage_for(self.settings, target)
            storages.setdefault(storage.url, storage)
        return [storages[url] for url in sorted(storages)]

    def _lock_all(self, job: str) -> list[RepoLock] | None:
        """The lock of every repository, or None (and none kept) if another run holds one.
        Taken in a stable order, two daemons sharing repositories contend for the same first
        lock: one of them gets every lock, rather than each a part and both skipping."""
        taken: list[RepoLock] = []
        try:
            for storage in self._repositories():
                lock = RepoLock(
                    storage=storage,
                    lease_s=self.settings.serve.lock_lease_s,
                    purpose=job,
                    on_lost=self.job_stop,
                )
                if not lock.acquire():
                    log.warning(
                        "job skipped: another run holds the lock",
                        extra={"job": job, "repository": storage.url},
                    )
                    _release(taken)
                    return None
                taken.append(lock)
        except BaseException:
            _release(taken)
            raise
        return taken

    def _backup(self) -> str:
        targets = self.settings.effective_targets()
        runs = jobs.nightly_backup(self.settings, stop=self.job_stop, targets=targets)
        if self.job_stop.is_set():
            return "interrupted"
        for target, run in zip(targets, runs, strict=True):  # one run per target, in order
            for r in run.results:
                self.metrics.table(target.label, r, at=time.time())
        return "ok" if all(r.ok for run in runs for r in run.results) else "failed"

    def _monitor(self) -> str:
        outcome = jobs.nightly_monitor(self.settings, now=self.clock())
        for n in outcome.notifications:
            if not n.ok:
                log.error("notification failed", extra={"channel": n.channel, "detail": n.detail})
        return "ok" if outcome.ok else "failed"

    def _drill(self) -> str:
        """``[drills]``: a sample of each target's fleet restored, proven, deleted, recorded;
        a failed drill notified."""
        from hippolyte.ops.drill import scheduled

        outcome = scheduled(self.settings, stop=self.job_stop, emit=_log_capture, now=self.clock())
        for record, target in zip(outcome.drills, self._drilled(outcome), strict=True):
            for t in record.tables:
                self.metrics.drill(
                    target,
                    t.table,
                    at=record.at.timestamp(),
                    ok=t.ok,
                    seconds_per_gb=t.seconds_per_gb,
                )
                if not t.ok:
                    log.error("drill failed", extra={"table": t.table, "error": t.error})
        for n in outcome.notifications:
            if not n.ok:
                log.error("notification failed", extra={"channel": n.channel, "detail": n.detail})
        return "ok" if outcome.ok else "failed"

    def _drilled(self, outcome: Any) -> list[str]:
        """The target label of each drill, by its repository."""
        labels = {
            context.storage_for(self.settings, t).url: t.label
            for t in self.settings.effective_targets()
        }
        return [labels.get(d.repository, "default") for d in outcome.drills]

    def seed_drills(self) -> int:
        """Each table's last drill into the metrics, from the drill records (at start)."""
        from hippolyte.repo.drills import last_drills

        seeded = 0
        for target in self.settings.effective_targets():
            try:
                found = last_drills(context.storage_for(self.settings, target))
            except HippolyteError as exc:
                log.warning("cannot read the drill records", extra={"error": str(exc)})
                continue
            for table, (record, t) in found.items():
                self.metrics.drill(
                    target.label,
                    table,
                    at=record.at.timestamp(),
                    ok=t.ok,
                    seconds_per_gb=t.seconds_per_gb,
                )
                seeded += 1
        return seeded

    def _count_boosts(self) -> None:
        """Open journal entries across every repository; unchanged if one cannot be read
        (a partial count would look like boosts reverted)."""
        try:
            open_entries = sum(
                len(Journal.open(storage, rid, create=True).open_entries())
                for storage in self._repositories()
                for rid in run_ids(storage)
            )
        except HippolyteError as exc:
            log.warning("cannot count open boosts", extra={"error": str(exc)})
            return
        self.metrics.boosts.set(open_entries)


def _release(locks: list[RepoLock]) -> None:
    """Release every lock, even if one repository cannot be reached (its lease then ends)."""
    for lock in reversed(locks):
        try:
            lock.release()
        except HippolyteError as exc:
            log.warning(
                "cannot release the lock", extra={"repository": lock.storage.url, "error": str(exc)}
            )


def _capture_forever(
    settings: Settings, target: Any, *, stop: threading.Event, daemon: Daemon
) -> None:
    """``[capture]``: capture the target's tables until ``stop``; when it ends otherwise (a
    table that could not be captured, an error, a stream turned off), again after
    ``restart_seconds``."""
    from hippolyte.ops.capture import CaptureParams, capture

    config = settings.capture
    assert config is not None
    params = CaptureParams(
        flush_seconds=config.flush_seconds,
        enable_stream=config.enable_stream,
        max_attempts=settings.max_attempts,
    )
    while not stop.is_set():
        try:
            results = capture(
                config.tables,
                conn=target.connection(),
                storage=context.storage_for(settings, target),
                params=params,
                emit=_log_capture,
                stop=stop,
                rules=settings.selection.rules(),
            )
            failed = [r for r in results if not r.ok]
            daemon.last["capture"] = {
                "at": daemon.clock().isoformat(),
                "tables": {r.table: r.status for r in results},
            }
            for r in failed:
                log.error(
                    "capture failed",
                    extra={"table": r.table, "status": r.status, "error": r.error},
                )
        except HippolyteError as exc:
            log.error("capture failed", extra={"target": target.label, "error": str(exc)})
        stop.wait(config.restart_seconds)


def _log_capture(event: Any) -> None:
    from hippolyte.core.events import Note

    if isinstance(event, Note):
        log.info(event.text, extra={"table": event.table, "level": event.level})


def serve(
    settings: Settings,
    *,
    stop: threading.Event,
    run_now: list[str] | None = None,
    on_listen: Callable[[str], None] | None = None,
) -> None:
    daemon = Daemon(settings=settings, stop=stop)
    daemon.dashboard = Dashboard(settings, clock=daemon.clock)
    http = start_http(
        daemon.metrics,
        host=settings.serve.host,
        port=settings.serve.port,
        health=daemon.health,
        pages={"/": daemon.dashboard.index, "/plan": daemon.dashboard.plan},
    )
    host, port = http.server_address[:2]
    url = f"http://{host!s}:{port}"
    # the repositories' backups into /metrics before serve says it listens (it already
    # answers /healthz meanwhile): a slow or unreachable repository delays only this
    seeded = daemon.dashboard.seed(daemon.metrics)
    daemon.seed_drills()
    daemon._count_boosts()
    log.info(
        "serving",
        extra={
            "dashboard": f"{url}/",
            "metrics": f"{url}/metrics",
            "healthz": f"{url}/healthz",
            "seeded": seeded,
        },
    )
    if on_listen:
        on_listen(url)
    capturing = [
        threading.Thread(
            target=_capture_forever,
            args=(settings, target),
            kwargs={"stop": stop, "daemon": daemon},
            name=f"hippolyte-capture-{target.label}",
        )
        for target in (settings.effective_targets() if settings.capture else [])
    ]
    for thread in capturing:
        thread.start()
    try:
        daemon.loop(run_now=run_now)
    finally:
        stop.set()
        for thread in capturing:  # each commits what it has read, then returns
            thread.join()
        http.shutdown()
        http.server_close()
        log.info("stopped")
