"""``hippolyte diff``: a backup against the live table, or two backups, item by item.

Memory does not grow with the table: each side is spilled into partition files by a hash of
its key (a temporary folder on local disk, ``diff_spill``), then the two sides are compared
one partition at a time, the first side's partition held in a dict (``diff_compare``). The
live side is read with the backup's paced parallel Scan (``diff_read``), so a diff never takes
more than ``--read-percent`` of the table's reads.

The temporary folder is removed on success, failure, Ctrl-C and SIGTERM; one left by a killed
process (its name holds the pid) is removed by the next diff.
"""

from __future__ import annotations

import functools
import threading
from typing import BinaryIO

import orjson

from hippolyte.adapters import aws, dynamodb
from hippolyte.core.config import Settings
from hippolyte.core.diff import Summary
from hippolyte.core.errors import BackupCorrupt, ConfigError
from hippolyte.core.events import Emit, discard
from hippolyte.core.model import Json, TableInfo
from hippolyte.engines.pool import run_all
from hippolyte.formats.base import KeySchema, Source, check_values
from hippolyte.ops.context import open_backup
from hippolyte.ops.convert import schema_for
from hippolyte.ops.diff_compare import Check, Difference, DiffResult, compare
from hippolyte.ops.diff_read import DiffParams, backup_bytes, read_again, read_backup, scan
from hippolyte.ops.diff_spill import TMP_PREFIX, Spill, spills, workspace
from hippolyte.ops.diff_stream import stream_backups

__all__ = [
    "OVERLAP_MIN_BYTES",
    "TMP_PREFIX",
    "DiffParams",
    "DiffResult",
    "Difference",
    "Spill",
    "diff_backups",
    "diff_live",
    "diff_refs",
]

OVERLAP_MIN_BYTES = 64 << 20  # a backup this large is read while the live table is scanned


def diff_refs(
    settings: Settings,
    ref: str,
    ref2: str | None,
    *,
    live: str | None,
    schema_from: str | None,
    key_spec: str | None,
    params: DiffParams,
    out: BinaryIO | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> DiffResult:
    """``hippolyte diff``: REF against REF2, else against the live table ``live`` (by default
    the backup's own). The key comes from the backups, else --schema-from/--key, else (live)
    from the live table."""
    before = open_backup(settings, ref, repo=settings.repository)
    given = schema_for(settings, schema_from=schema_from, key_spec=key_spec, table="diff")
    if ref2 is not None:
        after = open_backup(settings, ref2, repo=settings.repository)
        schema = _schema_of(given, before, after)
        if schema is None:
            raise ConfigError(
                f"neither {before.location} nor {after.location} records its key schema: "
                "pass --key pk:S[,sk:N] or --schema-from TABLE"
            )
        return diff_backups(
            before, after, schema=schema, params=params, out=out, emit=emit, stop=stop
        )
    table = live or table_of(before, option="--live TABLE")
    return diff_live(
        before,
        conn=settings.effective_targets()[0].connection(),
        table=table,
        schema=_schema_of(given, before),
        params=params,
        out=out,
        emit=emit,
        stop=stop,
    )


def _schema_of(given: Json | None, *sources: Source) -> KeySchema | None:
    if given is not None:
        return KeySchema.from_description(given)
    return next((s for source in sources if (s := source.schema()) is not None), None)


def table_of(source: Source, *, option: str) -> str:
    """The table a backup was taken of; ConfigError asking for ``option`` when it says none."""
    name = (source.description or {}).get("TableName")
    if not name:
        raise ConfigError(f"{source.location} does not name its table: pass {option}")
    return str(name)


def diff_backups(
    before: Source,
    after: Source,
    *,
    schema: KeySchema,
    params: DiffParams,
    out: BinaryIO | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> DiffResult:
    """Two backups of any format Hippolyte reads; no AWS call."""
    spec = schema.attributes
    estimate = max(backup_bytes(before), backup_bytes(after))
    with workspace(params.tmp_dir) as folder:
        first, second = spills(folder, estimate)
        before_items, after_items, identical = stream_backups(
            before, after, first, second, schema=schema, spec=spec, emit=emit, stop=stop
        )
        summary = Summary(
            before=before.location,
            after=after.location,
            before_items=before_items,
            after_items=after_items,
            identical=identical,
        )
        check = (_value_check(before, schema), _value_check(after, schema))
        return compare(
            first, second, summary, spec=spec, params=params, out=out, stop=stop, check=check
        )


def _value_check(source: Source, schema: KeySchema) -> Check:
    """Check every value of one of ``source``'s items; a bad one is named by its file and line
    (the backup is read again, as a restore's check pass reads it, to find it)."""

    def check(item: bytes) -> None:
        try:
            check_values(orjson.loads(item))
        except ValueError as exc:
            for f in source.files:
                read_again(source, f, schema=schema)  # raises, naming the file and line
            raise BackupCorrupt(f"{source.location}: {exc}") from exc

    return check


def diff_live(
    before: Source,
    *,
    conn: aws.Connection,
    table: str,
    schema: KeySchema | None,
    params: DiffParams,
    out: BinaryIO | None = None,
    emit: Emit = discard,
    stop: threading.Event | None = None,
) -> DiffResult:
    """A backup against the live table ``table``, read with a paced parallel Scan. Without a
    ``schema``, the live table's key is the key."""
    control = dynamodb.control_client(conn)
    info = dynamodb.describe(control, table)
    if schema is None:
        schema = KeySchema.from_description(info.description)
    same_key(schema, info, table=table, backup=before.location)
    spec = schema.attributes
    size = backup_bytes(before)
    with workspace(params.tmp_dir) as folder:
        first, second = spills(folder, max(size, info.size_bytes))
        read = functools.partial(read_backup, before, first, schema=schema, spec=spec, emit=emit)
        live = functools.partial(scan, conn, info, second, spec=spec, params=params, emit=emit)
        if size < OVERLAP_MIN_BYTES:
            read(stop=stop)
            live(stop=stop)
        else:  # the backup is read (CPU) while the table is scanned (waiting on the server)
            run_all(
                lambda side, group_stop: side(stop=group_stop),
                [read, live],
                workers=2,
                stop=stop,
                name="hippolyte-diff-side",
                interrupted=f"{table}: diff interrupted",
            )
        summary = Summary(
            before=before.location,
            after=f"live table {table}",
            before_items=first.items,
            after_items=second.items,
        )
        check = (_value_check(before, schema), None)
        return compare(
            first, second, summary, spec=spec, params=params, out=out, stop=stop, check=check
        )


def same_key(schema: KeySchema, info: TableInfo, *, table: str, backup: str) -> None:
    """The live table ``info`` has ``schema``'s key, else ConfigError naming the attribute."""
    live = KeySchema.from_description(info.description)
    if live.attributes == schema.attributes:
        return
    for (name, kind), (live_name, live_kind) in zip(
        (*schema.attributes, ("", "")), (*live.attributes, ("", "")), strict=False
    ):
        if (name, kind) != (live_name, live_kind):
            raise ConfigError(
                f"table {table!r} has another key than {backup}: "
                f"{_describe(live_name, live_kind)} where the backup has {_describe(name, kind)}"
            )


def _describe(name: str, kind: str) -> str:
    return f"{name!r} ({kind})" if name else "nothing"
