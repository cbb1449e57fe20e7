"""What a copy copies: the committed backups and change sets of a repository (``Unit``), which
of them another repository lacks (``lagging``, what ``status`` reports), what the command line
names (``select``), and the refusal of a destination that is the source."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hippolyte.adapters.storage import LocalStorage, S3Storage, Storage
from hippolyte.core.errors import BackupNotFound, ConfigError
from hippolyte.repo import catalog, changes, manifest, proofs

Kind = Literal["backup", "changes"]


@dataclass(frozen=True, kw_only=True)
class Unit:
    """A committed full backup or change set: what is copied, and committed, as a whole."""

    table: str
    kind: Kind
    id: str

    @property
    def prefix(self) -> str:
        if self.kind == "backup":
            return f"{self.table}/{self.id}/"
        return changes.prefix(self.table, self.id)

    @property
    def name(self) -> str:
        return self.prefix.rstrip("/")

    def sort_key(self) -> tuple[str, dt.datetime, str]:
        if self.kind == "backup":
            at = manifest.parse_backup_id(self.id)
        else:
            at = dt.datetime.strptime(self.id, changes.ID_TIME).replace(tzinfo=dt.UTC)
        return self.table, at, self.kind

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "kind": self.kind, "id": self.id}


def committed(storage: Storage, table: str) -> dict[Unit, list[str]]:
    """The committed backups and change sets of ``table``, each with its keys (one listing)."""
    found: dict[Unit, list[str]] = {}
    for key in storage.list(f"{table}/"):
        unit = _unit_of(table, key)
        if unit is not None:
            found.setdefault(unit, []).append(key)
    return {u: keys for u, keys in found.items() if u.prefix + manifest.SUCCESS in keys}


def _unit_of(table: str, key: str) -> Unit | None:
    parts = key[len(table) + 1 :].split("/")
    if parts[1:] == [proofs.PROOF]:  # a restore's record, not part of the backup (repo.proofs)
        return None
    if len(parts) >= 2 and manifest.is_backup_id(parts[0]):
        return Unit(table=table, kind="backup", id=parts[0])
    if len(parts) >= 3 and f"{parts[0]}/" == changes.CHANGES and changes.is_set_id(parts[1]):
        return Unit(table=table, kind="changes", id=parts[1])
    return None


def lagging(source: Storage, dest: Storage, tables: Sequence[str] = ()) -> list[Unit]:
    """The committed backups and change sets of ``source`` that ``dest`` has not committed,
    oldest first per table (all tables when none is named): what a copy would send. Two
    listings per table; nothing is written."""
    out: list[Unit] = []
    for table in list(tables) or catalog.tables(source):
        there = committed(dest, table)
        out += [u for u in committed(source, table) if u not in there]
    return sorted(out, key=Unit.sort_key)


def select(
    source: Storage, refs: Sequence[str] = (), *, only: Callable[[str], bool] | None = None
) -> dict[Unit, list[str]]:
    """``TABLE``, ``TABLE/BACKUP_ID`` or ``TABLE/@changes/ID``, each committed in ``source``
    (every table's, filtered by ``only``, when none is given)."""
    chosen: dict[Unit, list[str]] = {}
    if not refs:
        for table in catalog.tables(source):
            if only is None or only(table):
                chosen.update(committed(source, table))
        return chosen
    listings: dict[str, dict[Unit, list[str]]] = {}
    for ref in refs:
        table, unit = _parse(ref)
        units = listings.setdefault(table, committed(source, table))
        if unit is None and not units:
            raise BackupNotFound(
                f"copy: no committed backup or change set of table {table!r} in {source.url}"
            )
        if unit is None:
            chosen.update(units)
        elif unit in units:
            chosen[unit] = units[unit]
        elif any(True for _ in source.list(unit.prefix)):
            raise BackupNotFound(
                f"copy: {unit.name} in {source.url} is incomplete (no {manifest.SUCCESS}); "
                "only committed backups are copied"
            )
        else:
            raise BackupNotFound(f"copy: no {unit.name} in {source.url}")
    return chosen


def _parse(ref: str) -> tuple[str, Unit | None]:
    parts = ref.strip("/").split("/")
    table = parts[0]
    if manifest.TABLE_RE.match(table):
        if len(parts) == 1:
            return table, None
        if len(parts) == 2 and manifest.is_backup_id(parts[1]):
            return table, Unit(table=table, kind="backup", id=parts[1])
        if len(parts) == 3 and f"{parts[1]}/" == changes.CHANGES and changes.is_set_id(parts[2]):
            return table, Unit(table=table, kind="changes", id=parts[2])
    raise ConfigError(
        f"copy: {ref!r} is not TABLE, TABLE/YYYY-MM-DD-HH-MM-SS or TABLE/@changes/CHANGE_SET_ID"
    )


def refuse_same(source: Storage, dest: Storage) -> None:
    """A destination that is the source, inside it or around it, is refused."""
    (a_where, a_path), (b_where, b_path) = _place(source), _place(dest)
    nested = (
        a_path == b_path
        or not a_path
        or not b_path
        or a_path.startswith(b_path + "/")
        or b_path.startswith(a_path + "/")
    )
    if a_where == b_where and nested:
        raise ConfigError(
            f"copy: the destination {dest.url} is the source repository {source.url} "
            "(or lies inside it, or holds it)"
        )


def _place(storage: Storage) -> tuple[str, str]:
    """(where: the file system or an S3 endpoint and bucket, path within it)."""
    if isinstance(storage, LocalStorage):
        return "file", os.path.realpath(storage.root).rstrip("/")
    endpoint = storage.endpoint() if isinstance(storage, S3Storage) else None
    return f"{endpoint or 'aws'} {storage.bucket}", storage.prefix
