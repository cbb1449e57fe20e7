"""Rendering for the CLI: progress events as rich bars on a terminal, JSON lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

from hippolyte.core.events import (
    Event,
    ItemsRead,
    ItemsWritten,
    LoadStarted,
    Note,
    PageDone,
    ReadStarted,
    Step,
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
            if isinstance(event, PageDone | ItemsWritten | ItemsRead):
                t = self._totals.setdefault(event.table, {"items": 0, "bytes": 0, "consumed": 0.0})
                t["items"] += event.items
                t["bytes"] += event.raw_bytes
                t["consumed"] += getattr(event, "consumed", 0.0)
                now = time.monotonic()
                done = isinstance(event, ItemsRead) and event.done
                if not done and now - self._last.get(event.table, 0.0) < self.interval:
                    return
                self._last[event.table] = now
                self.line({"event": "progress", "table": event.table, **t})
            elif isinstance(event, TableStarted):
                self.line({"event": "table_started", **to_plain(event), "ref": str(event.ref)})
            elif isinstance(event, LoadStarted):
                self.line({"event": "load_started", **to_plain(event)})
            elif isinstance(event, ReadStarted):
                self.line({"event": "read_started", **to_plain(event)})
            elif isinstance(event, TableDone):
                r = to_plain(event.result)
                r["ref"] = str(event.result.ref) if event.result.ref else None
                self.line({"event": "table_done", **r})
            elif isinstance(event, Note):
                self.line({"event": "note", **to_plain(event)})
            elif isinstance(event, Step):
                self.line({"event": "step", "text": event.text})

    def line(self, doc: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(doc, default=str).decode() + "\n")
        self.out.flush()

    def close(self) -> None:
        return None


class Bars:
    """A rich progress bar per table: items, bytes, rate, ETA (from DescribeTable's counts).

    Lines (steps, notes, failures) print above the live bars, in the order they come. Before
    each line, the bars of the tables already done leave the live display for the scrollback,
    where they stay: a step's line comes after the bars of the work before it and before its
    own bars."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # Where there is room, fixed widths line up the bars left above the live display with
        # those below; on a narrow terminal each column keeps to its content.
        wide = console.width >= 110

        def col(width: int) -> Column:  # the bar shrinks on a narrow terminal, not the text
            return Column(min_width=width if wide else None, no_wrap=True)

        self.progress = Progress(
            TextColumn("[bold]{task.fields[table]}", table_column=col(22)),
            BarColumn(),
            TextColumn(
                "{task.completed:,.0f}/{task.total:,.0f} items",
                justify="right",
                table_column=col(19),
            ),
            TextColumn("{task.fields[size]}", justify="right", table_column=col(8)),
            TextColumn("{task.fields[rate]}", justify="right", table_column=col(10)),
            TimeElapsedColumn(table_column=col(7)),
            TimeRemainingColumn(table_column=col(7)),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._bytes: dict[str, int] = {}
        self._start: dict[str, float] = {}
        self._exact: dict[str, int] = {}  # a restore's item count, known before it writes
        self._done: set[TaskID] = set()
        self._lock = threading.Lock()
        self.progress.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, TableStarted | LoadStarted | ReadStarted):
                self._add(event)
            elif isinstance(event, PageDone | ItemsWritten | ItemsRead):
                if event.table not in self._tasks:
                    return
                self._advance(event)
                if isinstance(event, ItemsRead) and event.done:
                    self._finish(self._tasks[event.table])
            elif isinstance(event, TableDone) and event.result.table in self._tasks:
                r = event.result
                task = self._tasks[r.table]
                done = max(r.item_count, 1) if r.ok else r.item_count
                self.progress.update(task, total=max(r.item_count, 1), completed=done)
                self._done.add(task)
                if not r.ok:
                    self._say(f"{r.table}: failed: {r.error}", style="red")
            elif isinstance(event, Note):
                style = {"warning": "yellow", "error": "red"}.get(event.level, "dim")
                self._say(f"{event.level}: {event.text}", style=style)
            elif isinstance(event, Step):
                self._say(event.text)

    def _finish(self, task: TaskID) -> None:
        t = next(t for t in self.progress.tasks if t.id == task)
        self.progress.update(task, total=max(t.completed, 1), completed=max(t.completed, 1))
        self._done.add(task)

    def _add(self, event: TableStarted | LoadStarted | ReadStarted) -> None:
        if event.table in self._tasks:  # the same table again: its old bar is over
            self._done.add(self._tasks[event.table])
        self._exact.pop(event.table, None)
        if isinstance(event, LoadStarted) or (isinstance(event, ReadStarted) and event.exact):
            self._exact[event.table] = event.expected_items
        self._start[event.table] = time.monotonic()
        self._bytes[event.table] = 0
        self._tasks[event.table] = task = self.progress.add_task(
            "", total=max(event.expected_items, 1), table=event.table, size="0 B", rate=""
        )
        if event.table in self._exact and event.expected_items == 0:
            self._done.add(task)

    def _advance(self, event: PageDone | ItemsWritten | ItemsRead) -> None:
        task = self._tasks[event.table]
        self._bytes[event.table] += event.raw_bytes
        done = self._bytes[event.table]
        secs = max(time.monotonic() - self._start[event.table], 1e-6)
        t = next(t for t in self.progress.tasks if t.id == task)
        self.progress.update(
            task,
            advance=event.items,
            total=max(t.total or 0, t.completed + event.items),
            size=human_bytes(done),
            rate=f"{human_bytes(done / secs)}/s",
        )
        # A restore knows its count before writing; a backup's is DescribeTable's guess, so
        # only its TableDone ends its bar.
        exact = self._exact.get(event.table)
        if exact is not None and t.completed >= exact:
            self._done.add(task)

    def _say(self, text: str, *, style: str = "") -> None:
        self._settle()
        self.progress.console.print(text, style=style, markup=False, highlight=False)

    def _settle(self) -> None:
        """Move the bars of finished work above the live display, for good."""
        done = [t for t in self.progress.tasks if t.id in self._done]
        if not done:
            return
        for t in done:
            self.progress.remove_task(t.id)
        self._done.clear()
        gone = {t.id for t in done}
        self._tasks = {table: task for table, task in self._tasks.items() if task not in gone}
        self.progress.refresh()
        self.progress.console.print(self.progress.make_tasks_table(done))

    def close(self) -> None:
        self.progress.stop()


def print_results(results: list[Any]) -> None:
    # no side borders, one space between columns: it fits an 80-column terminal
    table = Table(
        Column("table", no_wrap=True),
        Column("backup", no_wrap=True),
        *(Column(name, justify="right") for name in ("items", "data", "stored", "RCU used")),
        Column("time", justify="right"),
        "status",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),
    )
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
    con = Console()
    con.print(table)
    for r in results:
        for warning in r.warnings:
            con.print(f"[yellow]warning[/] {escape(r.table)}: {escape(warning)}", highlight=False)


def print_demo_summary(summary: dict[str, Any]) -> None:
    """The demo's summary, last: what its narration did not say already (it told the verify,
    restore, status, monitor and diff lines as they happened): the backups, then a verdict."""
    con = Console()
    con.print()
    print_results(summary["results"])
    restores, monitor, diff = summary["restores"], summary["monitor"], summary["diff"]
    proven = sum(1 for p in restores if p["proven"])
    backed_up = sum(1 for r in summary["results"] if r.ok)
    recovered = summary["recover"]["ok"] and summary["history"]["ok"]
    good = proven == len(restores) and monitor["ok"] and diff["matches"] and recovered
    con.print(
        f"[{'green' if good else 'red'}]demo {'done' if good else 'FAILED'}:[/] "
        f"{backed_up} tables backed up, {proven} of {len(restores)} restores identical to "
        f"their backup, monitor {'ok' if monitor['ok'] else 'FAILED'}, "
        f"bad deploy {'found' if diff['matches'] else 'NOT found'} and "
        f"{'put back' if recovered else 'NOT put back'}",
        highlight=False,
    )
    con.print(f"look around: hippolyte list --repo {summary['repository']}", markup=False)


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


def print_diff(result: Any, *, out: str | None, width: int = 60) -> None:
    """The summary of a diff, then its first differences: the key and, for a changed item,
    each attribute that differs with both values (long values shortened)."""
    s = result.summary
    con = Console()
    con.print(
        f"[bold]{s.before}[/bold] ({s.before_items:,} items) -> "
        f"[bold]{s.after}[/bold] ({s.after_items:,} items)",
        highlight=False,
    )
    con.print(
        f"  deleted since {s.deleted:,}   added since {s.added:,}   changed {s.changed:,}   "
        f"identical {s.identical:,}",
        highlight=False,
    )
    if s.attributes:
        most = sorted(s.attributes.items(), key=lambda kv: -kv[1])[:8]
        con.print(
            "  changed attributes: " + ", ".join(f"{n} ({c:,})" for n, c in most), highlight=False
        )
    colour = {"deleted": "red", "added": "green", "changed": "yellow"}
    for d in result.first:
        con.print(f"[{colour[d.kind]}]{d.kind:<8}[/] {escape(d.key.decode())}", highlight=False)
        if d.kind != "changed":
            continue
        before, after = orjson.loads(d.before), orjson.loads(d.after)
        for name in d.attributes:
            old = short_value(before.get(name), width)
            new = short_value(after.get(name), width)
            con.print(f"           {escape(name)}: {escape(old)} -> {escape(new)}", highlight=False)
    shown = len(result.first)
    if s.differences > shown:
        where = f"; all of them in {out}" if out else "; --out FILE writes them all"
        con.print(f"  ... {s.differences - shown:,} more{where}", highlight=False)
    elif s.differences == 0:
        con.print("  [green]identical[/green]")


def short_value(value: Any, width: int) -> str:
    if value is None:
        return "(absent)"
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def status_doc(report: Any) -> dict[str, Any]:
    """``status --json``: a table without change sets has no ``changes`` key."""
    rows = []
    for t in report.tables:
        row = to_plain(t)
        if row.get("changes") is None:
            row.pop("changes", None)
        rows.append(row)
    return {
        "rpoHours": report.rpo_hours,
        "captureLagSeconds": report.capture_lag_seconds,
        "tables": rows,
        "uncovered": [t.table for t in report.uncovered],
        "late": [t.table for t in report.late],
        "changesProblems": [t.table for t in report.broken_changes],
        "copies": [to_plain(c) for c in report.copies],
        "ok": report.ok,
    }


def print_status(report: Any) -> None:
    """``status``: the backups' table; then, when some table has change sets, the changes'
    table (how far they reach, the lag, the gaps since the newest full backup) and one line
    per gap or lag."""
    con = Console()
    out = Table(
        "target",
        "table",
        "selected",
        "last backup",
        "age",
        "items",
        "data",
        "took",
        "last run",
        "RPO",
        "backups",
        "restorable since",
        "last drill",
    )
    for t in report.tables:
        out.add_row(
            t.target,
            t.table,
            "yes" if t.selected else "no",
            t.last_backup or "-",
            f"{t.age_hours:.1f} h" if t.age_hours is not None else "-",
            f"{t.items:,}" if t.items is not None else "-",
            human_bytes(t.bytes),
            f"{t.duration_s:.0f} s" if t.duration_s is not None else "-",
            t.last_run or "-",
            "[green]ok" if t.meets_rpo else ("[red]late" if t.selected else "-"),
            f"{t.backups:,}" + (f" ({t.kept:,} kept)" if t.kept is not None else ""),
            t.oldest_restorable.strftime("%Y-%m-%d %H:%M") if t.oldest_restorable else "-",
            _drill_cell(t),
        )
    con.print(out)
    if report.uncovered:
        con.print(
            "no backup at all: " + ", ".join(t.table for t in report.uncovered), highlight=False
        )
    captured = [t for t in report.tables if t.changes is not None]
    if captured:
        _print_changes(con, captured, now=report.checked_at)
    for c in report.copies:
        con.print(_copy_line(c), highlight=False)


def _drill_cell(t: Any) -> str:
    """``ok 2026-11-29 03:30, 95 s/GB`` (the RTO measured), ``FAILED ...``, or ``-``."""
    if t.last_drill is None:
        return "-"
    rto = f", {t.drill_seconds_per_gb:g} s/GB" if t.drill_seconds_per_gb is not None else ""
    verdict = "[green]ok" if t.drill_ok else "[red]FAILED"
    return f"{verdict} {t.last_drill:%Y-%m-%d %H:%M}{rto}"


def _copy_line(c: Any) -> str:
    where = f"copies to {escape(c.destination)}: "
    if c.error:
        return where + f"[red]cannot be read: {escape(c.error)}"
    if not c.behind:
        return where + "[green]up to date"
    colour = "red" if c.late else "yellow"
    late = f", {c.late:,} older than the RPO" if c.late else ""
    return where + f"[{colour}]{c.behind:,} behind (oldest {c.oldest:%Y-%m-%d %H:%M}){late}"


def _print_changes(con: Console, captured: list[Any], *, now: Any) -> None:
    from hippolyte.core.messages import changes_problems

    out = Table("target", "table", "change sets", "changes until (UTC)", "lag", "gaps", "changes")
    for t in captured:
        c = t.changes
        verdict = ", ".join(w for w, bad in (("gap", c.gaps), ("late", c.late)) if bad)
        out.add_row(
            t.target,
            t.table,
            str(c.change_sets),
            c.changes_until.strftime("%Y-%m-%d %H:%M:%S"),
            f"{c.lag_seconds:,.0f} s",
            str(len(c.gaps)),
            f"[red]{verdict}" if verdict else "[green]ok",
        )
    con.print(out)
    for t in captured:
        for line in changes_problems(t.table, t.changes, now=now):
            con.print(escape(line), highlight=False)


def print_monitor(outcome: Any) -> None:
    """``monitor``: per report, the run's line, each table's backup check, each captured
    table's changes check, capacity, then the notifications."""
    from hippolyte.core.messages import ChangesCheck

    con = Console()
    for r in outcome.reports:
        changes = [t for t in r.tables if isinstance(t, ChangesCheck)]
        backups = [t for t in r.tables if not isinstance(t, ChangesCheck)]
        if not r.ran:
            con.print(f"[red]nothing ran[/red]: no run record for tonight in {r.repository}")
        else:
            failed = [t for t in backups if not t.ok and not t.running]
            running = f", {len(r.running)} still running" if r.running else ""
            con.print(
                f"run {r.run_id}: {len(backups) - len(failed) - len(r.running)} ok, "
                f"{len(failed)} failed{running}; logs: {r.logs}",
                highlight=False,
            )
        for t in backups:
            mark = (
                "[green]ok  [/green]"
                if t.ok
                else "[yellow]RUN [/yellow]"
                if t.running
                else "[red]FAIL[/red]"
            )
            con.print(
                f"  {mark} pipeline {t.pipeline} {t.table}: {escape(t.reason)}", highlight=False
            )
        for t in changes:
            mark = "[green]ok  [/green]" if t.ok else "[red]FAIL[/red]"
            con.print(f"  {mark} changes {t.table}: {escape(t.reason)}", highlight=False)
        for line in r.capacity:
            con.print(f"  capacity {line}", highlight=False)
    for n in outcome.notifications:
        con.print(
            f"  notify {n.channel}: {'sent' if n.ok else 'FAILED ' + n.detail}", highlight=False
        )
