"""Restore drills, the decisions: a drill's id and its scratch tables' names, which tables a
sample picks (weighted to those not drilled longest), the measured RTO, whether a table may
be deleted (the guard), and what a failed drill tells people. Pure."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hippolyte.core.messages import Message, subject_line
from hippolyte.core.model import Json

TAG = "hippolyte:drill"  # the scratch table's tag: its value is the drill's id
INFIX = "-drill-"
GB = 1_000_000_000  # the RTO is told per GB (10^9 bytes) of the backup's item data
NEVER_HOURS = 24.0 * 3650  # a table never drilled weighs as one last drilled ten years ago
MIN_HOURS = 1.0  # a table drilled a moment ago still has a chance
MAX_TABLE_NAME = 255
_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")


def drill_id(now: dt.datetime, *, token: str) -> str:
    """``20261130-021500-3fa9``: the UTC second the drill started and 4 hex digits, so that
    two drills started in the same second never share a scratch name."""
    return f"{now.astimezone(dt.UTC):%Y%m%d-%H%M%S}-{token}"


def is_drill_id(text: str) -> bool:
    return bool(_ID.match(text))


def drill_time(drill: str) -> dt.datetime:
    return dt.datetime.strptime(drill[:15], "%Y%m%d-%H%M%S").replace(tzinfo=dt.UTC)


def scratch_name(table: str, drill: str) -> str:
    """``<table>-drill-<id>``: never the source's name; refused (ValueError) when too long."""
    name = f"{table}{INFIX}{drill}"
    if len(name) > MAX_TABLE_NAME:
        raise ValueError(
            f"table {table!r}: its drill table {name[:40]}... would be longer than "
            f"{MAX_TABLE_NAME} characters"
        )
    return name


@dataclass(frozen=True, kw_only=True)
class Pick:
    """A table a sample picked, and why: the hours since its last drill and its weight."""

    table: str
    last_drill: dt.datetime | None
    weight: float

    @property
    def reason(self) -> str:
        if self.last_drill is None:
            return "never drilled"
        return f"last drilled {self.last_drill:%Y-%m-%d %H:%M} UTC"


def sample(
    fleet: Mapping[str, dt.datetime | None], *, n: int, now: dt.datetime, rng: random.Random
) -> list[Pick]:
    """``n`` tables of ``fleet`` (table -> its last drill, None if never) drawn without
    replacement, each with a weight of the hours since its last drill (Efraimidis-Spirakis:
    the ``n`` largest ``u ** (1 / weight)``). Raises ValueError when ``n`` is larger than
    the fleet."""
    if n > len(fleet):
        raise ValueError(f"a sample of {n} tables from a fleet of {len(fleet)}")
    picks = []
    for table in sorted(fleet):
        last = fleet[table]
        hours = NEVER_HOURS if last is None else (now - last).total_seconds() / 3600
        weight = max(hours, MIN_HOURS)
        key = math.log(rng.random() or 1e-300) / weight  # log(u ** (1 / w)): larger wins
        picks.append((key, Pick(table=table, last_drill=last, weight=round(weight, 2))))
    picks.sort(key=lambda kp: kp[0], reverse=True)
    return [p for _, p in picks[:n]]


def seconds_per_gb(seconds: float, raw_bytes: int) -> float | None:
    """The measured RTO: restore seconds per GB of item data (None for an empty backup)."""
    if raw_bytes <= 0:
        return None
    return round(seconds * GB / raw_bytes, 1)


# -- the guard ----------------------------------------------------------------------------------


def identity(desc: Json) -> str:
    """What tells one table from another of the same name created at another time: its
    TableId (DynamoDB, dynalite), else its ARN and creation time (DynamoDB Local has no id)."""
    if desc.get("TableId"):
        return f"id {desc['TableId']}"
    created = desc.get("CreationDateTime")
    when = created.timestamp() if isinstance(created, dt.datetime) else created
    return f"{desc.get('TableArn')} created {when}"


def refusal(
    *,
    name: str,
    drill: str,
    created: str,
    desc: Json | None,
    tags: Mapping[str, str] | None,
) -> str | None:
    """Why the table ``name`` must not be deleted by drill ``drill``, or None: it is the
    drill's scratch table (``<table>-drill-<id>``), it is the very table this drill created
    (``created``: its :func:`identity` then), and its tag ``hippolyte:drill`` names the
    drill. ``tags`` is None only when the server has no tagging at all (DynamoDB Local):
    the table's identity then stands alone."""
    if not name.endswith(INFIX + drill):
        return f"{name!r} is not a table of drill {drill}"
    if desc is None:
        return f"{name!r} no longer exists"
    if desc.get("TableName") != name:
        return f"DescribeTable answered for {desc.get('TableName')!r}, not {name!r}"
    if identity(desc) != created:
        return f"{name!r} is not the table this drill created ({identity(desc)}, not {created})"
    if tags is not None and tags.get(TAG) != drill:
        found = tags.get(TAG)
        return f"{name!r} is not tagged {TAG}={drill}" + (f" (tagged {found!r})" if found else "")
    return None


# -- what a drill tells people -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TableDrill:
    """One table's drill: the backup restored, the proof, the measured RTO, the cleanup."""

    table: str
    backup: str | None  # TABLE/BACKUP_ID
    scratch: str
    ok: bool
    items: int = 0
    bytes: int = 0
    seconds: float = 0.0
    seconds_per_gb: float | None = None
    error: str | None = None
    deleted: bool = False
    kept: str | None = None  # why the scratch table is still there (--keep, the guard)


@dataclass(frozen=True, kw_only=True)
class Drill:
    """A drill: its id, where it restored to, every table's outcome."""

    id: str
    at: dt.datetime
    repository: str
    target: str  # the connection restored into: "endpoint region"
    tables: list[TableDrill] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def failed(self) -> list[TableDrill]:
        return [t for t in self.tables if not t.ok]


def message(drill: Drill) -> Message:
    """A drill's outcome for the notification channels (a failed drill is a failure)."""
    failed = drill.failed
    if failed:
        subject = f"Hippolyte DRILL FAILED: {len(failed)} of {len(drill.tables)} tables"
        head = f"Hippolyte: the restore drill {drill.id} failed for {len(failed)} tables."
    else:
        subject = f"Hippolyte drill OK: {len(drill.tables)} tables restored and proven"
        head = f"Hippolyte: the restore drill {drill.id} restored and proved every table."
    lines = [head, "", f"Repository: {drill.repository}", f"Restored into: {drill.target}", ""]
    for t in drill.tables:
        lines.append(f"  {'OK  ' if t.ok else 'FAIL'} {t.table}: {outcome_line(t)}")
    lines += [
        "",
        "A drill restores a table's newest committed backup into a scratch table, proves it",
        "against the backup, then deletes the scratch table. Run it again:",
        f"  hippolyte drill {' '.join(t.table for t in failed or drill.tables)}",
        "\n-- \nSent by Hippolyte (DynamoDB backups).",
    ]
    worst = failed[0] if failed else None
    slack = (
        f":x: *Hippolyte* drill {drill.id}: {len(failed)} failed, first {worst.table}: "
        f"{outcome_line(worst)}"
        if worst
        else f":white_check_mark: *Hippolyte* drill {drill.id}: {len(drill.tables)} proven"
    )
    return Message(
        subject=subject_line(f"{subject}, drill {drill.id}"),
        text="\n".join(lines),
        slack_text=slack,
        data={
            "kind": "drill",
            "drill": drill.id,
            "ok": drill.ok,
            "repository": drill.repository,
            "failed": [{"table": t.table, "error": t.error} for t in failed],
            "tables": [
                {"table": t.table, "ok": t.ok, "secondsPerGb": t.seconds_per_gb}
                for t in drill.tables
            ],
        },
    )


def outcome_line(t: TableDrill) -> str:
    """One table's drill in a line: the proof and the RTO, or what failed."""
    if not t.ok:
        return t.error or "not proven"
    rto = f", {t.seconds_per_gb:g} s/GB" if t.seconds_per_gb is not None else ""
    return f"{t.items:,} items proven in {t.seconds:.1f} s{rto} ({t.backup})"
