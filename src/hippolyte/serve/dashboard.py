"""The dashboard of ``serve``: the page at ``/`` (and the newest plan's Gantt at ``/plan``),
regenerated from the repositories at most every ``max_age_s`` and after each job, with the
account's tables discovered at most every ``discover_every_s``; what ``/healthz`` says of it;
and the metrics seeded from the repositories at start, so that a ``serve`` started over a
repository full of backups shows them at once.

Whatever goes wrong while reading (an unreachable repository, a discovery refused, a bug) is
shown on the page and in ``/healthz``; it never stops ``serve``."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from hippolyte.core import dashboard_html, plan_html
from hippolyte.core.config import Settings
from hippolyte.core.errors import HippolyteError
from hippolyte.core.model import Json
from hippolyte.ops import dashboard
from hippolyte.ops.dashboard_coverage import Discovered, discover_all
from hippolyte.repo import manifest
from hippolyte.serve.metrics import Metrics

log = logging.getLogger("hippolyte.serve")

HTML = "text/html; charset=utf-8"
Response = tuple[int, str, bytes]


class Dashboard:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime],
        refresh_s: int = 60,
        max_age_s: float = 30.0,
        discover: bool = True,
        discover_every_s: float = 600.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.refresh_s = refresh_s
        self.max_age_s = max_age_s
        self.discover = discover
        self.discover_every_s = discover_every_s
        self._lock = threading.Lock()
        self._memo: dict[str, Json] = {}  # committed backups' facts: they never change
        self._doc: Json | None = None
        self._seeded: Json | None = None  # the repositories at start, until a page is made
        self._made = 0.0  # time.monotonic() of _doc
        self._discovered: Discovered | None = None
        self._discovered_at = 0.0
        self._failure: str | None = None  # the last generation's unexpected error

    # --- what serve exposes ---------------------------------------------------------------

    def index(self) -> Response:
        doc = self._current()
        if doc is None:
            return 500, HTML, _error_page(self._failure or "unknown error").encode()
        page = dashboard_html.render(doc, refresh_s=self.refresh_s, plan_href="plan")
        return 200, HTML, page.encode()

    def plan(self) -> Response:
        doc = self._current()
        plan = doc.get("plan") if doc else None
        if plan is None:
            return 404, HTML, _error_page("no plan recorded in the repository yet").encode()
        return 200, HTML, plan_html.render(plan["plan"]).encode()

    def health(self) -> dict[str, Any]:
        """For /healthz: whether the repositories could be read at the last generation."""
        with self._lock:
            doc, failure = self._doc or self._seeded, self._failure
        if doc is None:
            return {"ok": failure is None, "errors": [failure] if failure else []}
        errors = list(doc["errors"]) + ([failure] if failure else [])
        states = [t["state"] for t in doc["tables"]]
        return {
            "ok": not errors,
            "generatedAt": doc["generatedAt"],
            "tables": len(states),
            "late": states.count("late"),
            "missing": states.count("missing"),
            "empty": not doc["tables"] and not errors,
            "errors": errors,
        }

    def invalidate(self) -> None:
        """A job just ran: the next page reads the repositories again."""
        with self._lock:
            self._made = 0.0

    def seed(self, metrics: Metrics) -> int:
        """Each table's newest committed backup into the metrics; how many tables."""
        try:  # the repositories alone: discovering the account's tables can wait for a page
            doc = dashboard.gather(self.settings, now=self.clock(), memo=self._memo, runs_shown=0)
        except Exception:
            log.exception("cannot seed the metrics from the repositories")
            return 0
        for error in doc["errors"]:
            log.error("cannot seed the metrics", extra={"error": error})
        with self._lock:
            self._seeded = doc
        seeded = 0
        for row in doc["tables"]:
            if row["lastBackup"] is None or row["unreadable"]:
                continue
            started = manifest.parse_backup_id(row["lastBackup"])
            ended = started.timestamp() + float(row["durationS"] or 0.0)
            metrics.seed(
                row["targets"][0],
                row["table"],
                at=ended,
                items=row["items"] or 0,
                raw_bytes=row["bytes"] or 0,
                duration_s=float(row["durationS"] or 0.0),
            )
            seeded += 1
        return seeded

    # --- the data -------------------------------------------------------------------------

    def _current(self) -> Json | None:
        with self._lock:
            if self._doc is not None and time.monotonic() - self._made < self.max_age_s:
                return self._doc
            try:
                doc = dashboard.gather(
                    self.settings,
                    now=self.clock(),
                    discovered=self._discovery(),
                    memo=self._memo,
                )
            except Exception as exc:  # a bug must not take serve down: shown, logged
                log.exception("dashboard failed")
                self._failure = f"the dashboard could not be generated: {exc!r}"
                return self._doc
            self._doc, self._made, self._failure = doc, time.monotonic(), None
            return doc

    def _discovery(self) -> Discovered | None:
        if not self.discover:
            return None
        stale = time.monotonic() - self._discovered_at >= self.discover_every_s
        if self._discovered is None or stale:
            try:
                self._discovered = discover_all(self.settings)
            except HippolyteError as exc:
                self._discovered = Discovered(errors=[f"discovery failed: {exc}"])
            self._discovered_at = time.monotonic()
        return self._discovered


def _error_page(message: str) -> str:
    from html import escape

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Hippolyte dashboard: error</title></head><body>"
        f'<h1>Hippolyte</h1><div role="alert">{escape(message)}</div></body></html>\n'
    )
