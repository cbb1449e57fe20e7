"""Which items a recovery puts back, and what each holds live now: the differences of a diff
run now or of a diff file, or chosen keys or partitions read from the backup and the table."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from hippolyte.core.diff import Key, key_of
from hippolyte.core.errors import ConfigError, Interrupted
from hippolyte.core.events import Emit
from hippolyte.core.pacing import read_budget
from hippolyte.core.recovery import (
    Action,
    DiffEntry,
    action_for,
    actions_from_diff,
    check_diff_summary,
    diff_entries,
    diff_summary,
    parse_key_line,
)
from hippolyte.engines.conditional import LiveReader, LiveTable, query
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


class Count:
    """How many keys a selection looked at, known once its actions have all been taken."""

    def __init__(self) -> None:
        self.value = 0


def select(
    source: Source,
    *,
    live: LiveTable,
    selection: Selection,
    params: RecoverParams,
    count: Count,
    emit: Emit,
    stop: threading.Event,
) -> Iterator[Action]:
    """The actions, one at a time: a diff file is read as they are taken, never held whole
    (a wrong delete of a whole table is a million actions). Bad input is found before the
    first action is given."""
    if selection.from_diff is not None:
        return _from_diff(selection.from_diff, source=source, live=live, params=params, count=count)
    if selection.keys is not None or selection.partition_keys:
        actions = _from_keys(source, live=live, selection=selection, params=params, stop=stop)
        count.value = len(actions)
        return iter(actions)
    return _from_live_diff(source, live=live, params=params, count=count, emit=emit, stop=stop)


def _from_diff(
    path: Path, *, source: Source, live: LiveTable, params: RecoverParams, count: Count
) -> Iterator[Action]:
    try:
        with open(path, "rb") as f:  # a first pass checks every line and the summary
            summary = diff_summary(f, where=str(path))
        check_diff_summary(summary, backup=source.location, table=live.table, where=str(path))
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    except OSError as exc:
        raise ConfigError(f"--from-diff {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return _actions(f, where=str(path), params=params, count=count)


def _actions(f: BinaryIO, *, where: str, params: RecoverParams, count: Count) -> Iterator[Action]:
    """The actions of a checked diff file, which is closed once they are taken."""
    with f:
        entries = diff_entries(f, where=where)
        yield from actions_from_diff(_counted(entries, count), delete_added=params.delete_added)


def _counted(entries: Iterator[DiffEntry], count: Count) -> Iterator[DiffEntry]:
    for entry in entries:
        count.value += 1
        yield entry


def _from_live_diff(
    source: Source,
    *,
    live: LiveTable,
    params: RecoverParams,
    count: Count,
    emit: Emit,
    stop: threading.Event,
) -> Iterator[Action]:
    diff_params = DiffParams(
        read_percent=params.read_percent,
        on_demand_read_units=params.on_demand_read_units,
        workers=params.workers,
        page_attempts=params.max_attempts,
        limit=0,
        tmp_dir=params.tmp_dir,
    )
    if params.tmp_dir is not None:
        params.tmp_dir.mkdir(parents=True, exist_ok=True)
    out = tempfile.TemporaryFile(dir=params.tmp_dir)  # noqa: SIM115 - closed by _actions
    try:
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
    except BaseException:
        out.close()
        raise
    return _actions(out, where="the diff", params=params, count=count)


def _from_keys(
    source: Source,
    *,
    live: LiveTable,
    selection: Selection,
    params: RecoverParams,
    stop: threading.Event,
) -> list[Action]:
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
    reader = LiveReader(
        live, rate=read_rate(live, params), max_attempts=params.max_attempts, stop=stop
    )
    try:
        current = reader.read(wanted | set(backup))
    finally:
        reader.close()
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
    return actions


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
