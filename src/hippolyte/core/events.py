"""Progress as events. The core emits them; the CLI renders them (rich bars on a terminal,
JSON lines otherwise); monitoring can subscribe to the same stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hippolyte.core.model import BackupRef, TableResult


@dataclass(frozen=True, kw_only=True)
class TableStarted:
    table: str
    ref: BackupRef
    segments: int
    workers: int
    read_budget: float  # read units per second
    expected_items: int  # DescribeTable's ItemCount (refreshed by DynamoDB every ~6 h)
    expected_bytes: int


@dataclass(frozen=True, kw_only=True)
class PageDone:
    table: str
    segment: int
    items: int
    raw_bytes: int
    consumed: float
    retries: int


@dataclass(frozen=True, kw_only=True)
class TableDone:
    result: TableResult


@dataclass(frozen=True, kw_only=True)
class LoadStarted:
    """A restore begins writing into ``table``."""

    table: str
    source: str
    files: int
    expected_items: int
    expected_bytes: int
    write_budget: float  # write units per second


@dataclass(frozen=True, kw_only=True)
class ItemsWritten:
    table: str
    items: int
    raw_bytes: int
    consumed: float


@dataclass(frozen=True, kw_only=True)
class ReadStarted:
    """An operation begins reading a backup or a live table (``table``: what progress shows)."""

    table: str
    expected_items: int  # a backup's count, or DescribeTable's estimate
    exact: bool  # the count is known (a backup's), not an estimate


@dataclass(frozen=True, kw_only=True)
class ItemsRead:
    table: str
    items: int
    raw_bytes: int
    done: bool = False  # the last event of this read


@dataclass(frozen=True, kw_only=True)
class Note:
    """Something the user should read: a warning or a decision."""

    text: str
    level: str = "info"
    table: str | None = None


@dataclass(frozen=True, kw_only=True)
class Step:
    """A line of an operation's narration, told as it happens: a step beginning, or what it
    found. Renderers show it in order with the progress around it (the demo tells its story
    with these)."""

    text: str


Event = (
    TableStarted
    | PageDone
    | TableDone
    | LoadStarted
    | ItemsWritten
    | ReadStarted
    | ItemsRead
    | Note
    | Step
)
Emit = Callable[[Event], None]


def discard(_: Event) -> None:
    return None
