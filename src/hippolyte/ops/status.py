"""Status and coverage: per table, the last committed backup and its age; the tables of the
account that have no backup at all; whether every selected table meets its RPO."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.errors import BackupCorrupt, HippolyteError, NotFound
from hippolyte.core.model import Selected, TableResult
from hippolyte.ops.context import storage_for
from hippolyte.ops.discover import discover
from hippolyte.repo import catalog, manifest, runs


@dataclass(frozen=True, kw_only=True)
class TableStatus:
    table: str
    target: str
    selected: bool
    last_backup: str | None = None  # backup id of the newest committed backup
    age_hours: float | None = None
    items: int | None = None
    bytes: int | None = None
    duration_s: float | None = None
    last_run: str | None = None  # e.g. "2026-11-22-00-10-00: ok" / ": failed: ..."
    meets_rpo: bool = False
    note: str = ""


@dataclass(kw_only=True)
class StatusReport:
    rpo_hours: float
    tables: list[TableStatus] = field(default_factory=list)

    @property
    def uncovered(self) -> list[TableStatus]:
        """Tables in the account with no committed backup at all (selected or not)."""
        return [t for t in self.tables if t.last_backup is None]

    @property
    def late(self) -> list[TableStatus]:
        """Selected tables without a committed backup younger than the RPO."""
        return [t for t in self.tables if t.selected and not t.meets_rpo]


def fleet_status(settings: Settings, *, now: dt.datetime | None = None) -> StatusReport:
    """Every target's tables (selected or not) against the repository: the report of
    ``hippolyte status``."""
    report = StatusReport(rpo_hours=settings.rpo_hours)
    now = now or dt.datetime.now(dt.UTC)
    for target in settings.effective_targets():
        storage = storage_for(settings, target)
        last_run = last_run_states(storage)
        control = dynamodb.control_client(target.connection())
        for sel in discover(
            conn=target.connection(),
            rules=settings.selection.rules(),
            max_attempts=settings.max_attempts,
        ):
            report.tables.append(
                table_status(
                    storage,
                    sel,
                    target=target.label,
                    rpo_hours=settings.rpo_hours,
                    last_run=last_run,
                    now=now,
                    is_empty=functools.partial(_is_empty, control),
                )
            )
    return report


def _is_empty(control: Any, table: str) -> bool:
    return not dynamodb.has_items(control, table)


def table_status(
    storage: Storage,
    sel: Selected,
    *,
    target: str,
    rpo_hours: float,
    last_run: dict[str, str],
    now: dt.datetime,
    is_empty: Callable[[str], bool] = lambda name: False,
) -> TableStatus:
    """``is_empty`` tells whether a table without a backup holds nothing (so is not late)."""
    name = sel.table.name
    for ref in reversed(list(catalog.refs(storage, name))):
        if not catalog.is_complete(storage, ref):
            continue
        try:
            summary = catalog.summary(storage, ref)
        except HippolyteError:
            continue
        age = (now - manifest.parse_backup_id(ref.backup_id)).total_seconds() / 3600
        return TableStatus(
            table=name,
            target=target,
            selected=sel.selected,
            last_backup=ref.backup_id,
            age_hours=round(age, 2),
            items=summary.item_count,
            bytes=summary.raw_bytes,
            duration_s=summary.duration_s,
            last_run=last_run.get(name),
            meets_rpo=age <= rpo_hours,
        )
    if sel.selected and is_empty(name):
        return TableStatus(
            table=name,
            target=target,
            selected=True,
            meets_rpo=True,
            last_run=last_run.get(name),
            note="empty: nothing to back up",
        )
    return TableStatus(
        table=name, target=target, selected=sel.selected, last_run=last_run.get(name)
    )


def last_run_states(storage: Storage) -> dict[str, str]:
    """Each table's outcome in the newest run that has a result."""
    for rid in sorted(runs.run_ids(storage), reverse=True):
        try:
            result = runs.read_result(storage, rid)
        except (NotFound, BackupCorrupt):
            continue
        return {r.table: f"{rid}: {_outcome(r)}" for r in result.results}
    return {}


def _outcome(result: TableResult) -> str:
    if result.started_in:
        return f"started in {result.started_in}"
    return "ok" if result.ok else f"failed: {result.error}"
