"""Boost a table's read capacity for its backup and put it back, always through the journal.

``boost`` writes the table's state (RCU, WCU, read autoscaling) to the journal before
changing anything; ``revert`` restores every table of a run whose entry is not final. A
refused decrease stays ``revert-pending`` and is retried by the next ``revert``/``monitor``;
a table deleted since is reported ``gone``.

A boost that cannot happen (autoscaling unreachable or refusing, a refused UpdateTable, a
limit) never costs the backup: what it changed is put back at once and the table is backed up
at its own capacity (``boost-failed``, a warning). Only a failure to put back persists: the
entry stays open and the next ``revert``/``monitor`` retries it.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import asdict
from typing import Any

from hippolyte.adapters import autoscaling, capacity, dynamodb, dynamodb_admin
from hippolyte.adapters.capacity import DecreaseRefused
from hippolyte.core.errors import HippolyteError, Interrupted, TableNotFound
from hippolyte.core.model import CapacityOutcome, CapacityStatus, Connection, Json
from hippolyte.repo.journal import BoostState, Journal

MAX_DECREASES_PER_DAY = 27


def entry_key(conn: Connection, table: str) -> str:
    return f"{conn.account or '-'}/{conn.region or '-'}/{table}"


def boost(
    *, conn: Connection, journal: Journal, table: str, new_rcu: int, min_decreases_left: int = 1
) -> CapacityOutcome:
    control = dynamodb.control_client(conn)
    desc = dynamodb_admin.describe_raw(control, table)
    if desc is None:
        raise TableNotFound(f"table {table!r} does not exist")
    pt = desc.get("ProvisionedThroughput") or {}
    old, write = int(pt.get("ReadCapacityUnits") or 0), int(pt.get("WriteCapacityUnits") or 0)
    key = entry_key(conn, table)
    left = MAX_DECREASES_PER_DAY - int(pt.get("NumberOfDecreasesToday") or 0)
    if old == 0 or new_rcu <= old or left < min_decreases_left:
        why = (
            "on-demand: no RCU to raise"
            if old == 0
            else f"{new_rcu} RCU is not above the current {old}"
            if new_rcu <= old
            else f"only {left} capacity decreases left today: the revert could not happen"
        )
        journal.record(
            key, table=table, target=_plain(conn), status=BoostState.NOT_BOOSTED, note=why
        )
        return CapacityOutcome(table=table, status=CapacityStatus.NOT_BOOSTED, note=why)
    aas = autoscaling.client(conn)
    try:
        scaling = autoscaling.read_scaling(aas, table)
    except Interrupted:
        raise
    except HippolyteError as exc:  # nothing changed yet
        why = f"boost failed, backing up at its own {old} RCU: {exc}"
        journal.record(
            key, table=table, target=_plain(conn), status=BoostState.BOOST_FAILED, note=why
        )
        return CapacityOutcome(table=table, status=CapacityStatus.BOOST_FAILED, note=why)
    journal.record(
        key,
        table=table,
        target=_plain(conn),
        status=BoostState.BOOSTING,
        before={"read": old, "write": write, "autoscaling": scaling},
        boost={"read": new_rcu},
    )
    try:
        if scaling is not None:
            autoscaling.remove(aas, table)
        capacity.set_read_capacity(control, table=table, read=new_rcu, write=write)
        dynamodb_admin.wait_active(control, table)
    except Interrupted:
        raise
    except HippolyteError as exc:
        return _undo(journal, key, table, old=old, error=exc)
    journal.record(key, status=BoostState.BOOSTED)
    return CapacityOutcome(
        table=table, status=CapacityStatus.BOOSTED, note=f"{old} -> {new_rcu} RCU"
    )


def _undo(journal: Journal, key: str, table: str, *, old: int, error: Exception) -> CapacityOutcome:
    """A boost failed midway: put back what it changed, now. Done: ``boost-failed``, the
    backup runs at the table's own capacity. Not done: the entry stays open (pending) for the
    next revert or monitor, and the backup still runs."""
    why = f"boost failed, backing up at its own {old} RCU: {error}"
    try:
        undone = revert_entry(journal, key, journal.entries[key])
    except Interrupted:
        raise
    except HippolyteError as exc:
        note = f"{why}; putting back failed, the monitor retries: {exc}"
        return CapacityOutcome(table=table, status=CapacityStatus.REVERT_PENDING, note=note)
    if undone.status == CapacityStatus.REVERT_PENDING:
        return CapacityOutcome(
            table=table, status=CapacityStatus.REVERT_PENDING, note=f"{why}; {undone.note}"
        )
    journal.record(key, status=BoostState.BOOST_FAILED, note=why)
    return CapacityOutcome(table=table, status=CapacityStatus.BOOST_FAILED, note=why)


def revert(journal: Journal, *, tables: Container[str] | None = None) -> list[CapacityOutcome]:
    """Put back every table of the run that is not final (only ``tables``, if given: those
    whose backup has ended). Idempotent."""
    return [
        revert_entry(journal, key, entry)
        for key, entry in journal.open_entries().items()
        if tables is None or entry.get("table") in tables
    ]


def put_back(journal: Journal, key: str) -> CapacityOutcome:
    """After a boosted table's backup: revert it. A revert that fails after its retries is
    recorded pending for the next ``revert``/``monitor`` and returned, never raised: it costs
    neither the table's backup nor the rest of the run."""
    entry = journal.entries[key]
    try:
        return revert_entry(journal, key, entry)
    except Interrupted:
        raise
    except HippolyteError as exc:
        note = f"putting back failed, the next revert or monitor retries: {exc}"
        journal.record(key, status=BoostState.REVERT_PENDING, note=note)
        return CapacityOutcome(
            table=entry["table"], status=CapacityStatus.REVERT_PENDING, note=note
        )


def revert_entry(journal: Journal, key: str, entry: Json) -> CapacityOutcome:
    table = entry["table"]
    conn = Connection(**entry["target"])
    before = entry.get("before")
    if before is None:  # recorded as not boosted
        journal.record(key, status=BoostState.NOT_BOOSTED)
        return CapacityOutcome(table=table, status=CapacityStatus.NOT_BOOSTED)
    control = dynamodb.control_client(conn)
    desc = dynamodb_admin.describe_raw(control, table)
    if desc is None:
        return _gone(journal, key, table, note="table deleted since the boost")
    current = int((desc.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits") or 0)
    try:
        if current != before["read"]:
            capacity.set_read_capacity(
                _updater(conn),
                table=table,
                read=before["read"],
                write=int(desc["ProvisionedThroughput"]["WriteCapacityUnits"]),
            )
            dynamodb_admin.wait_active(control, table)
    except DecreaseRefused as exc:
        journal.record(key, status=BoostState.REVERT_PENDING, note=str(exc))
        return CapacityOutcome(table=table, status=CapacityStatus.REVERT_PENDING, note=str(exc))
    except TableNotFound:
        return _gone(journal, key, table, note="table deleted during the revert")
    if before.get("autoscaling"):
        autoscaling.put_back(autoscaling.client(conn), table, before["autoscaling"])
    journal.record(key, status=BoostState.REVERTED)
    note = f"{current} -> {before['read']} RCU"
    return CapacityOutcome(table=table, status=CapacityStatus.REVERTED, note=note)


def _gone(journal: Journal, key: str, table: str, *, note: str) -> CapacityOutcome:
    journal.record(key, status=BoostState.GONE, note=note)
    return CapacityOutcome(table=table, status=CapacityStatus.GONE, note=note)


def _updater(conn: Connection) -> Any:
    """botocore counts LimitExceededException as throttling and would retry a refused
    decrease for a minute; a refusal lasts hours, so ask few times and mark it pending."""
    return dynamodb.control_client(conn, max_attempts=3)


def _plain(conn: Connection) -> Json:
    return asdict(conn)
