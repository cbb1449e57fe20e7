"""Convert a DynamoDB native export or a Data Pipeline export into a Hippolyte backup.

The result is laid out exactly as a backup (docs/design.md) under ``<table>/<backup id>/``:
``_started``, one or more data files per input file (``data/<file #>-<seq>.json.gz``),
the manifests, ``hippolyte.json`` with the table description given (neither export records
a schema), ``_SUCCESS`` last. Each input file is read in full and checked (checksum, every
line an item with the key attributes, item count) before it is rewritten, so a bad file
stops the conversion before anything is committed; what was written is then removed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable

import orjson

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.errors import ConfigError, HippolyteError
from hippolyte.core.events import Emit, PageDone, TableDone, TableStarted, discard
from hippolyte.core.model import BackupRef, FileEntry, Json, TableInfo, TableResult
from hippolyte.engines.segment import FILE_MAX_RAW_BYTES, DataFileWriter
from hippolyte.formats.base import KeySchema, Source, SourceFile, check_file, iter_items
from hippolyte.repo import manifest, writer

BATCH_ITEMS = 1000
CONSISTENCY = {
    "native-export": "point-in-time snapshot (DynamoDB Export to S3)",
    "datapipeline": "eventually consistent parallel Scan (Data Pipeline / EMR connector export); "
    "not a point-in-time snapshot",
}
NO_EXTRAS: Json = {"timeToLive": None, "tags": None, "pointInTimeRecovery": None}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def schema_from_key(table_name: str, key: KeySchema) -> Json:
    """A minimal DescribeTable-like ``Table`` for ``--key pk:S[,sk:N]``: on-demand, no
    indexes."""
    kinds = ("HASH", "RANGE")
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": name, "KeyType": kinds[i]}
            for i, (name, _) in enumerate(key.attributes)
        ],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind} for name, kind in key.attributes
        ],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }


def convert(
    source: Source,
    *,
    dest: Storage,
    table_name: str,
    schema_description: Json,
    extras: Json | None = None,
    emit: Emit = discard,
    clock: Callable[[], dt.datetime] = _now,
) -> BackupRef:
    """Rewrite ``source`` as a committed backup of ``table_name`` in ``dest``.

    ``schema_description`` is recorded as the table's description (key schema, indexes...);
    ``extras`` (timeToLive, tags, pointInTimeRecovery) too, when known. The backup id is the
    export's time when the export records it, else now; the next free second if taken."""
    if not manifest.TABLE_RE.match(table_name):
        raise ConfigError(f"{table_name!r} is not a valid DynamoDB table name")
    schema = _schema(schema_description)
    began = time.monotonic()
    exported, ended = _export_times(source)
    start = exported or clock()
    dest.check_writable()
    ref = writer.allocate(dest, table=table_name, at=start)
    run = {
        "convertedFrom": {"kind": source.kind, "location": source.location},
        "convertedAt": manifest.iso(clock()),
    }
    written: list[str] = [ref.prefix + manifest.STARTED]
    dest.put_bytes(
        written[0],
        orjson.dumps({"table": table_name, "startTime": manifest.iso(start), "parameters": run}),
    )
    emit(
        TableStarted(
            table=table_name,
            ref=ref,
            segments=len(source.files),
            workers=1,
            read_budget=0.0,
            expected_items=source.item_count or 0,
            expected_bytes=0,
        )
    )
    try:
        files = _rewrite_all(source, dest=dest, ref=ref, schema=schema, emit=emit, out=written)
        info = _table_info(source, table_name=table_name, desc=schema_description, files=files)
        writer.commit(
            dest,
            ref=ref,
            info=info,
            extras={**NO_EXTRAS, **(extras or {})},
            files=files,
            start=start,
            end=max(ended or start, start),
            run=run,
            consumed=0.0,
            source={"kind": source.kind, "location": source.location, "tableArn": info.arn},
            consistency=CONSISTENCY.get(source.kind, source.kind),
        )
    except BaseException:
        committed = (manifest.DESCRIPTOR, manifest.MANIFEST_SUMMARY, manifest.MANIFEST_FILES)
        _remove(dest, [ref.prefix + k for k in committed] + written[::-1])
        raise
    emit(TableDone(result=_result(table_name, ref, files, began)))
    return ref


def _schema(desc: Json) -> KeySchema:
    try:
        return KeySchema.from_description(desc)
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"the table description has no usable KeySchema/AttributeDefinitions ({exc!r})"
        ) from exc


def _export_times(source: Source) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(the export's time, its end time) as the export records them."""
    at = _parse_time(source.extras.get("exportTime") or source.extras.get("startTime"))
    return at, _parse_time(source.extras.get("endTime"))


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _rewrite_all(
    source: Source,
    *,
    dest: Storage,
    ref: BackupRef,
    schema: KeySchema,
    emit: Emit,
    out: list[str],
) -> list[FileEntry]:
    files: list[FileEntry] = []
    for n, f in enumerate(source.files):
        check_file(source, f, schema=schema)
        files += _rewrite(source, f, n=n, dest=dest, ref=ref, schema=schema, emit=emit, out=out)
    if not files:  # every backup has at least one data file, as segment 0 guarantees
        writer = DataFileWriter(dest, prefix=ref.prefix, key=manifest.data_key(0, 0))
        out.append(ref.prefix + writer.key)
        files.append(writer.commit())
    return files


def _rewrite(
    source: Source,
    f: SourceFile,
    *,
    n: int,
    dest: Storage,
    ref: BackupRef,
    schema: KeySchema,
    emit: Emit,
    out: list[str],
) -> list[FileEntry]:
    """One input file -> data/<n>-<seq>.json.gz, a new file after FILE_MAX_RAW_BYTES."""
    done: list[FileEntry] = []
    writer = DataFileWriter(dest, prefix=ref.prefix, key=manifest.data_key(n, 0))
    batch: list[bytes] = []
    try:
        for item in iter_items(source, f, schema=schema):
            batch.append(item)
            if len(batch) >= BATCH_ITEMS:
                _write(writer, batch, table=ref.table, n=n, emit=emit)
                batch = []
                if writer.raw_bytes >= FILE_MAX_RAW_BYTES:
                    out.append(ref.prefix + writer.key)
                    done.append(writer.commit())
                    writer = DataFileWriter(
                        dest, prefix=ref.prefix, key=manifest.data_key(n, len(done))
                    )
        _write(writer, batch, table=ref.table, n=n, emit=emit)
    except BaseException as exc:
        writer.abort(exc)
        raise
    if writer.items:
        out.append(ref.prefix + writer.key)
        done.append(writer.commit())
    else:
        writer.discard()
    return done


def _write(writer: DataFileWriter, batch: list[bytes], *, table: str, n: int, emit: Emit) -> None:
    if batch:
        raw = writer.write_items(batch)
        emit(
            PageDone(
                table=table, segment=n, items=len(batch), raw_bytes=raw, consumed=0.0, retries=0
            )
        )


def _table_info(
    source: Source, *, table_name: str, desc: Json, files: list[FileEntry]
) -> TableInfo:
    info = TableInfo.from_description({"TableName": table_name, **desc})
    arn = info.arn or str(source.extras.get("tableArn") or "")
    return dataclasses.replace(
        info, name=table_name, arn=arn, size_bytes=sum(f.raw_bytes for f in files)
    )


def _remove(storage: Storage, keys: list[str]) -> None:
    """Best effort: a failed conversion leaves nothing behind (it never wrote _SUCCESS)."""
    for key in keys:
        try:
            storage.delete(key)
        except HippolyteError:
            pass


def _result(table: str, ref: BackupRef, files: list[FileEntry], began: float) -> TableResult:
    return TableResult(
        table=table,
        ref=ref,
        ok=True,
        item_count=sum(f.item_count for f in files),
        raw_bytes=sum(f.raw_bytes for f in files),
        stored_bytes=sum(f.size for f in files),
        duration_s=time.monotonic() - began,
    )


def schema_for(
    settings: Settings, *, schema_from: str | None, key_spec: str | None, table: str
) -> Json | None:
    """The table description a restore or conversion creates from: an existing table's
    (``--schema-from``), one built from a key spec (``--key pk:S[,sk:N]``), or None (the
    backup's own)."""
    if schema_from:
        client = dynamodb.control_client(settings.effective_targets()[0].connection())
        return dynamodb.describe(client, schema_from).description
    if key_spec:
        return schema_from_key(table, KeySchema.parse(key_spec))
    return None
