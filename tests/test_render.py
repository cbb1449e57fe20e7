"""The CLI's renderers fed a made-up stream of events: on a terminal, what the user finally
sees (lines once, in order, each step's line before its bars); otherwise, JSON lines."""

from __future__ import annotations

import io
import re

import orjson
from rich.console import Console

from hippolyte.cli.render import Bars, JsonLines
from hippolyte.core.events import (
    Event,
    ItemsWritten,
    LoadStarted,
    Note,
    PageDone,
    Step,
    TableDone,
    TableStarted,
)
from hippolyte.core.model import BackupRef, TableResult

_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+")


def terminal_screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: enough of one for rich's live display, which
    redraws itself with carriage returns, erase-line and cursor-up; colours are dropped."""
    lines, row, col = [""], 0, 0
    for token in _CONTROL.findall(raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token.startswith("\x1b["):
            if token.endswith("K"):
                lines[row] = ""
            elif token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


def where(screen: list[str], text: str) -> int:
    """The index of the one line of ``screen`` that starts with ``text``."""
    found = [i for i, line in enumerate(screen) if line.startswith(text)]
    assert len(found) == 1, (text, found, screen)
    return found[0]


def bar(screen: list[str], table: str, items: int) -> int:
    """The index of the one finished bar of ``table`` left on ``screen``."""
    found = [
        i
        for i, line in enumerate(screen)
        if line.split()[0] == table and f"{items:,}/{items:,} items" in line
    ]
    assert len(found) == 1, (table, found, screen)
    return found[0]


def render(events: list[Event]) -> list[str]:
    out = io.StringIO()
    bars = Bars(Console(file=out, force_terminal=True, width=120, color_system="standard"))
    try:
        for event in events:
            bars(event)
    finally:
        bars.close()
    return terminal_screen(out.getvalue())


def started(table: str, items: int) -> TableStarted:
    ref = BackupRef(repo="file:///repo", table=table, backup_id="b1")
    return TableStarted(
        table=table,
        ref=ref,
        segments=2,
        workers=2,
        read_budget=100.0,
        expected_items=items,
        expected_bytes=items * 100,
    )


def page(table: str, items: int) -> PageDone:
    return PageDone(
        table=table, segment=0, items=items, raw_bytes=items * 100, consumed=1.0, retries=0
    )


def done(table: str, items: int, *, ok: bool = True) -> TableDone:
    ref = BackupRef(repo="file:///repo", table=table, backup_id="b1")
    return TableDone(
        result=TableResult(
            table=table,
            ref=ref,
            ok=ok,
            item_count=items,
            raw_bytes=items * 100,
            error=None if ok else "boom",
        )
    )


def test_each_line_once_and_a_steps_line_before_its_bars() -> None:
    screen = render(
        [
            Step(text="running tonight's job ..."),
            started("orders", 10),
            page("orders", 6),
            Note(text="a note while orders runs"),
            page("orders", 4),
            done("orders", 10),
            Step(text="verify orders/b1: ok"),
            Step(text="restoring orders/b1 into orders-restored ..."),
            LoadStarted(
                table="orders-restored",
                source="orders/b1",
                files=1,
                expected_items=10,
                expected_bytes=1000,
                write_budget=100.0,
            ),
            ItemsWritten(table="orders-restored", items=4, raw_bytes=400, consumed=4.0),
            ItemsWritten(table="orders-restored", items=6, raw_bytes=600, consumed=6.0),
            Step(text="restored orders-restored: 10 items = the backup's: identical"),
            Step(text="status orders: last backup b1"),
        ]
    )
    order = [
        where(screen, "running tonight's job"),
        where(screen, "info: a note while orders runs"),
        bar(screen, "orders", 10),
        where(screen, "verify orders/b1"),
        where(screen, "restoring orders/b1"),
        bar(screen, "orders-restored", 10),
        where(screen, "restored orders-restored"),
        where(screen, "status orders"),
    ]
    assert order == sorted(order), screen
    assert len(screen) == len(order), screen  # nothing else: no repeated line, no stray bar


def test_a_finished_bar_moves_above_a_line_while_others_still_run() -> None:
    screen = render(
        [
            started("a", 5),
            started("b", 5),
            page("a", 5),
            done("a", 5),
            Note(text="b goes on", level="warning"),
            page("b", 5),
            done("b", 5, ok=False),
            Step(text="after b"),
        ]
    )
    order = [
        bar(screen, "a", 5),
        where(screen, "warning: b goes on"),  # b still runs: its bar stays live below
        bar(screen, "b", 5),
        where(screen, "b: failed: boom"),
        where(screen, "after b"),
    ]
    assert order == sorted(order), screen
    assert len(screen) == len(order), screen


def test_json_lines_tell_steps_as_events() -> None:
    out = io.StringIO()
    lines = JsonLines(out)
    lines(Step(text="restored t: 3 items"))
    lines(Note(text="careful", level="warning"))
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert docs == [
        {"event": "step", "text": "restored t: 3 items"},
        {"event": "note", "text": "careful", "level": "warning", "table": None},
    ]
