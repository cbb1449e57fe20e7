"""Rendering for the CLI: progress events as rich bars on a terminal, JSON lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hippolyte.core.events import (
    Event,
    ItemsWritten,
    LoadStarted,
    Note,
    PageDone,
    TableDone,
    TableStarted,
)
from hippolyte.core.formatting import size as human_bytes
from hippolyte.core.model import to_plain


def dumps(obj: Any) -> str:
    return orjson.dumps(to_plain(obj), default=str).decode()


class JsonLines:
    """Events as JSON lines (to stderr, so stdout stays one result document). Page events are
    folded into one progress line per table per second."""

    def __init__(self, out: TextIO | None = None, interval: float = 1.0) -> None:
        self.out = out or sys.stderr
        self.interval = interval
        self._lock = threading.Lock()
        self._totals: dict[str, dict[str, float]] = {}
        self._last: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, PageDone | ItemsWritten):
                t = self._totals.setdefault(event.table, {"items": 0, "bytes": 0, "consumed": 0.0})
                t["items"] += event.items
                t["bytes"] += event.raw_bytes
                t["consumed"] += event.consumed
                now = time.monotonic()
                if now - self._last.get(event.table, 0.0) < self.interval:
                    return
                self._last[event.table] = now
                self.line({"event": "progress", "table": event.table, **t})
            elif isinstance(event, TableStarted):
                self.line({"event": "table_started", **to_plain(event), "ref": str(event.ref)})
            elif isinstance(event, LoadStarted):
                self.line({"event": "load_started", **to_plain(event)})
            elif isinstance(event, TableDone):
                r = to_plain(event.result)
                r["ref"] = str(event.result.ref) if event.result.ref else None
                self.line({"event": "table_done", **r})
            elif isinstance(event, Note):
                self.line({"event": "note", **to_plain(event)})

    def line(self, doc: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(doc, default=str).decode() + "\n")
        self.out.flush()

    def close(self) -> None:
        return None


class Bars:
    """A rich progress bar per table: items, bytes, rate, ETA (from DescribeTable's counts)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.fields[table]}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} items"),
            TextColumn("{task.fields[size]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._bytes: dict[str, int] = {}
        self._start: dict[str, float] = {}
        self._lock = threading.Lock()
        self.progress.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, TableStarted | LoadStarted):
                self._start[event.table] = time.monotonic()
                self._bytes[event.table] = 0
                self._tasks[event.table] = self.progress.add_task(
                    "", total=max(event.expected_items, 1), table=event.table, size="0 B", rate=""
                )
            elif isinstance(event, PageDone | ItemsWritten) and event.table in self._tasks:
                task = self._tasks[event.table]
                self._bytes[event.table] += event.raw_bytes
                done = self._bytes[event.table]
                secs = max(time.monotonic() - self._start[event.table], 1e-6)
                t = self.progress.tasks[task]
                total = max(t.total or 0, t.completed + event.items)
                self.progress.update(
                    task,
                    advance=event.items,
                    total=total,
                    size=human_bytes(done),
                    rate=f"{human_bytes(done / secs)}/s",
                )
            elif isinstance(event, TableDone) and event.result.table in self._tasks:
                task = self._tasks[event.result.table]
                r = event.result
                done = max(r.item_count, 1) if r.ok else r.item_count
                self.progress.update(task, total=max(r.item_count, 1), completed=done)
                if not r.ok:
                    self.progress.console.print(f"[red]{r.table}: failed: {r.error}")
            elif isinstance(event, Note):
                self.progress.console.print(f"{event.level}: {event.text}", highlight=False)

    def close(self) -> None:
        self.progress.stop()
