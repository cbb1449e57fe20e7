"""Which items a recovery puts back, and what each holds live now: the differences of a diff
run now or of a diff file, or chosen keys or partitions read from the backup and the table."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

from hippolyte.core.diff import Key, key_of
from hippolyte.core.errors import ConfigError, Interrupted
from hippolyte.core.events import Emit
from hippolyte.core.pacing import read_budget
from hippolyte.core.recovery import (
    Action,
    action_for,
    actions_from_diff,
    check_diff_summary,
    parse_diff_file,
    parse_key_line,
)
from hippolyte.engines.conditional import LiveTable, query, read_live
from hippolyte.formats.base import KeySchema, Source, checked_items
from hippolyte.ops.diff import DiffParams, diff_live


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which keys (none given: every key that differs)."""

    from_diff: Path | None = None
    keys: Path | None = None
    partition_keys: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.from_diff:
            return f"the differences in {self.from_diff}"
        if self.keys:
            return f"the keys in {self.keys}"
        if self.partition_keys:
            return f"the partitions {', '.join(self.partition_keys)}"
        return "every item that differs from the backup"


# -- selecting ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RecoverParams:
    write_percent: float = 0.5
    read_percent: float = 0.5
    on_demand_write_units: float = 1000.0
    on_demand_read_units: float = 1000.0
    workers: int = 4
    delete_added: bool = False
    force: bool = False
    dry_run: bool = False
    resume: bool = False
    version_attribute: str | None = None
    max_attempts: int = 8
    tmp_dir: Path | None = None


def select(
    source: Source,
    *,
    live: LiveTable,
    selection: Selection,
    params: RecoverParams,
    emit: Emit,
    stop: threading.Event,
) -> tuple[list[Action], int]:
    """The actions, and how many keys were looked at."""
    if selection.from_diff is not None:
        return _from_diff(selection.from_diff, source=source, live=live, params=params)
    if selection.keys is not None or selection.partition_keys:
        return _from_keys(source, live=live, selection=selection, params=params, stop=stop)
    return _from_live_diff(source, live=live, params=params, emit=emit, stop=stop)


def _from_diff(
    path: Path, *, source: Source, live: LiveTable, params: RecoverParams
) -> tuple[list[Action], int]:
    try:
        with open(path, "rb") as f:
            entries, summary = parse_diff_file(iter(f), where=str(path))
        check_diff_summary(summary, backup=source.location, table=live.table, where=str(path))
    except OSError as exc:
        raise ConfigError(f"--from-diff {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return actions_from_diff(entries, delete_added=params.delete_added), len(entries)


def _from_live_diff(
    source: Source, *, live: LiveTable, params: RecoverParams, emit: Emit, stop: threading.Event
) -> tuple[list[Action], int]:
    diff_params = DiffParams(
        read_percent=params.read_percent,
        on_demand_read_units=params.on_demand_read_units,
        workers=params.workers,
        page_attempts=params.max_attempts,
        limit=0,
        tmp_dir=params.tmp_dir,
    )
    with tempfile.TemporaryFile(dir=params.tmp_dir) as out:
        diff_live(
            source,
            conn=live.conn,
            table=live.table,
            schema=KeySchema(attributes=live.spec),
            params=diff_params,
            out=out,
            emit=emit,
            stop=stop,
        )
        out.seek(0)
        entries, _ = parse_diff_file(iter(out), where="the diff")
    return actions_from_diff(entries, delete_added=params.delete_added), len(entries)


def _from_keys(
    source: Source,
    *,
    live: LiveTable,
    selection: Selection,
    params: RecoverParams,
    stop: threading.Event,
) -> tuple[list[Action], int]:
    spec = live.spec
    wanted = _read_keys(selection.keys, spec) if selection.keys else set()
    partitions = {_partition_value(v, spec) for v in selection.partition_keys}
    backup: dict[bytes, bytes] = {}
    schema = KeySchema(attributes=spec)
    for f in source.files:
        for item in checked_items(source, f, schema=schema):
            if stop.is_set():
                raise Interrupted("recover interrupted while reading the backup; nothing written")
            doc = orjson.loads(item)
            key = key_of(doc, spec)
            if key in wanted or (partitions and key_of(doc, spec[:1]) in partitions):
                backup[key] = item
    current = read_live(
        live,
        keys=wanted | set(backup),
        rate=read_rate(live, params),
        workers=params.workers,
        max_attempts=params.max_attempts,
        stop=stop,
    )
    for value in partitions:
        for item in query(live, value, rate=read_rate(live, params)):
            current.setdefault(key_of(orjson.loads(item), spec), item)
    actions = []
    for key in sorted(wanted | set(backup) | set(current)):
        action = action_for(
            spec=spec,
            target=backup.get(key),
            seen=current.get(key),
            delete_added=params.delete_added,
        )
        if action is not None:
            actions.append(action)
    return actions, len(wanted | set(backup) | set(current))


def _read_keys(path: Path, spec: Key) -> set[bytes]:
    keys = set()
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    keys.add(parse_key_line(line, spec, where=f"{path} line {n}"))
    except OSError as exc:
        raise ConfigError(f"--keys {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return keys


def _partition_value(text: str, spec: Key) -> bytes:
    name, kind = spec[0]
    try:
        return key_of({name: {kind: text}}, spec[:1])
    except ValueError as exc:
        raise ConfigError(f"--partition-key {text!r}: {exc}") from None


def read_rate(live: LiveTable, params: RecoverParams) -> float:
    return read_budget(
        on_demand=live.info.on_demand,
        read_capacity=live.info.read_capacity,
        read_percent=params.read_percent,
        on_demand_units=params.on_demand_read_units,
        max_read_request_units=live.info.max_read_request_units,
    )


def write_rate(live: LiveTable, params: RecoverParams) -> float:
    if live.info.on_demand or live.info.write_capacity <= 0:
        return params.on_demand_write_units
    return max(live.info.write_capacity * params.write_percent, 0.5)
