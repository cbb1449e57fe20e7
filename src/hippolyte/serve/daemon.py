"""`hippolyte serve`: run the schedule (cron, UTC), one job at a time through the repository
lock, expose /metrics and /healthz, log as JSON. SIGTERM sets ``stop``: the job in progress
stops between pages, reverts the capacity it boosted (run_plan reverts in a ``finally``),
releases the lock, and the loop exits."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from hippolyte.core.config import Settings
from hippolyte.core.errors import HippolyteError, Interrupted
from hippolyte.ops import context, jobs
from hippolyte.repo.journal import Journal, run_ids
from hippolyte.repo.lock import RepoLock
from hippolyte.serve.metrics import Metrics, start_http

log = logging.getLogger("hippolyte.serve")
JOBS = ("backup", "monitor")


@dataclass
class Daemon:
    settings: Settings
    stop: threading.Event
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    running: str | None = None
    last: dict[str, Any] = field(default_factory=dict)
    next_at: dict[str, dt.datetime] = field(default_factory=dict)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "running": self.running,
            "last": self.last,
            "next": {k: v.isoformat() for k, v in self.next_at.items()},
        }

    def _schedule(self) -> None:
        now = self.clock()
        crons = {"backup": self.settings.schedule.backup, "monitor": self.settings.schedule.monitor}
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
        storage = context.storage_for(self.settings, self.settings.effective_targets()[0])
        lock = RepoLock(storage=storage, lease_s=self.settings.serve.lock_lease_s, purpose=job)
        if not lock.acquire():
            log.warning("job skipped: another run holds the lock", extra={"job": job})
            self.metrics.runs.labels(job, "skipped").inc()
            return
        self.running = job
        started = time.monotonic()
        result = "ok"
        try:
            log.info("job started", extra={"job": job})
            result = self._backup() if job == "backup" else self._monitor()
        except Interrupted:
            result = "interrupted"
        except HippolyteError as exc:
            result = "error"
            log.error("job failed", extra={"job": job, "error": str(exc)})
        finally:
            lock.release()
            self.running = None
            self._count_boosts()
            self.metrics.runs.labels(job, result).inc()
            self.last[job] = {
                "result": result,
                "at": self.clock().isoformat(),
                "seconds": round(time.monotonic() - started, 1),
            }
            log.info("job finished", extra={"job": job, "result": result})

    def _backup(self) -> str:
        runs = jobs.nightly_backup(self.settings, stop=self.stop)
        if self.stop.is_set():
            return "interrupted"
        label = self.settings.effective_targets()[0].label
        for run in runs:
            for r in run.results:
                self.metrics.table(label, r, at=time.time())
        return "ok" if all(r.ok for run in runs for r in run.results) else "failed"

    def _monitor(self) -> str:
        outcome = jobs.nightly_monitor(self.settings, now=self.clock())
        for n in outcome.notifications:
            if not n.ok:
                log.error("notification failed", extra={"channel": n.channel, "detail": n.detail})
        return "ok" if outcome.ok else "failed"

    def _count_boosts(self) -> None:
        try:
            storage = context.storage_for(self.settings, self.settings.effective_targets()[0])
            open_entries = sum(
                len(Journal.open(storage, rid, create=True).open_entries())
                for rid in run_ids(storage)
            )
        except HippolyteError:
            return
        self.metrics.boosts.set(open_entries)


def serve(
    settings: Settings,
    *,
    stop: threading.Event,
    run_now: list[str] | None = None,
    on_listen: Callable[[str], None] | None = None,
) -> None:
    daemon = Daemon(settings=settings, stop=stop)
    http = start_http(
        daemon.metrics, host=settings.serve.host, port=settings.serve.port, health=daemon.health
    )
    host, port = http.server_address[:2]
    url = f"http://{host!s}:{port}"
    log.info("serving", extra={"metrics": f"{url}/metrics", "healthz": f"{url}/healthz"})
    if on_listen:
        on_listen(url)
    try:
        daemon.loop(run_now=run_now)
    finally:
        http.shutdown()
        http.server_close()
        log.info("stopped")
