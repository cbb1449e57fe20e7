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
from rich.table import Table

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


def print_results(results: list[Any]) -> None:
    table = Table("table", "backup", "items", "data", "stored", "RCU used", "time", "status")
    for r in results:
        backup = str(r.ref.backup_id if r.ref else "-")
        if r.started_in:  # runs remotely: nothing measured here
            table.add_row(r.table, backup, *["-"] * 5, f"[yellow]started in {r.started_in}")
            continue
        table.add_row(
            r.table,
            backup,
            f"{r.item_count:,}",
            human_bytes(r.raw_bytes),
            human_bytes(r.stored_bytes),
            f"{r.consumed_read_units:,.0f}",
            f"{r.duration_s:.1f}s",
            "[green]complete" if r.ok else f"[red]failed: {r.error}",
        )
    Console().print(table)


def print_show(doc: dict[str, Any]) -> None:
    con = Console()
    con.print(f"[bold]{doc['ref']}[/bold]  {doc['status']}")
    if doc["status"] != "complete":
        return
    b, t = doc["backup"], doc["table"]["description"]
    keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in t.get("KeySchema", []))
    con.print(f"  time      {b['startTime']} -> {b['endTime']} ({b['durationSeconds']} s)")
    con.print(
        f"  items     {b['itemCount']:,}   data {human_bytes(b['rawBytes'])}   "
        f"stored {human_bytes(b['storedBytes'])}   RCU used {b['consumedReadUnits']:,}"
    )
    con.print(f"  keys      {keys}")
    billing = (t.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    con.print(f"  billing   {billing}")
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for idx in t.get(kind, []):
            con.print(f"  {kind[:-7].lower()} {idx['IndexName']}")
    con.print(f"  files     {len(doc['files'])}")


def print_plan(doc: dict[str, Any]) -> None:
    con = Console()
    out = Table("pipeline", "table", "starts", "ends", "estimate", "boost", "why")
    for p in doc["pipelines"]:
        for t in p["tables"]:
            b = t["boost"]
            boost = f"{b['old_rcu']} -> {b['new_rcu']} RCU" if b else ""
            out.add_row(
                str(p["index"]),
                t["table"],
                t["starts_at"],
                t["ends_at"],
                f"{t['estimate']['seconds']:,.0f} s",
                boost,
                t["estimate"]["why"],
            )
    con.print(out)
    for s in doc["skipped"]:
        con.print(f"skipped {s['table']}: {s['reason']}", highlight=False)
    for d in doc["decisions"]:
        con.print(d, highlight=False)
