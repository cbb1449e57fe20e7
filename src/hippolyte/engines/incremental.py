"""The incremental export engine: one window of DynamoDB's ``INCREMENTAL_EXPORT`` committed as
a change set (``repo.changes``).

DynamoDB writes the export into a staging folder of an ``s3://`` repository
(``<table>/@changes/@staging/<set id>/AWSDynamoDB/...``). When it reports COMPLETED, the
export's manifests are read (``formats.native.incremental``), its window must be the one asked
for, and every data file is read once: its md5 against the manifest's, its line count against
the manifest's, every line parsed as a change line. The changes go through ``ChangeSetWriter``
as they are read; only when every file has passed is the set committed (``_SUCCESS`` last), so
a bad export commits nothing. The staging folder is deleted afterwards, and on failure too.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, ConfigError, HippolyteError
from hippolyte.engines.export import POLL_S, ExportUnavailable, pitr_error, wait_for_export
from hippolyte.formats import native
from hippolyte.formats.base import SourceFile
from hippolyte.repo import changes, datafile
from hippolyte.repo.changes import Change, ChangeSet, ChangeSetWriter

VIEW = "NEW_AND_OLD_IMAGES"
STAGING = "@staging/"  # under <table>/@changes/: never a change set's id

# starts an export with these request parameters; returns DynamoDB's ExportDescription
Exporter = Callable[[Any, dict[str, Any]], dict[str, Any]]


def start_export(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    desc: dict[str, Any] = client.export_table_to_point_in_time(**request)["ExportDescription"]
    return desc


@dataclass(frozen=True, kw_only=True)
class Window:
    start: dt.datetime  # inclusive
    end: dt.datetime  # exclusive


def s3_root(storage: Storage) -> tuple[str, str]:
    """(bucket, key prefix of the repository root); DynamoDB exports to S3 only."""
    bucket = getattr(storage, "bucket", None)
    if not bucket:
        raise ConfigError(
            f"incremental exports need an s3:// repository (DynamoDB writes them to S3), "
            f"not {storage.url}"
        )
    root = getattr(storage, "prefix", "")
    return bucket, (f"{root}/" if root else "")


def staging(table: str, window: Window) -> str:
    return f"{table}/{changes.CHANGES}{STAGING}{changes.set_id(window.start)}/"


def restorable_since(client: Any, table: str) -> dt.datetime:
    """The earliest time DynamoDB can export from (PITR's EarliestRestorableDateTime). Raises
    ExportUnavailable when PITR is off or the server has no such API."""
    try:
        desc = client.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    except botocore.exceptions.ClientError as exc:
        error = pitr_error(exc, table=table)
        raise (error or ExportUnavailable(f"{table}: this server has no PITR API")) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"point-in-time recovery state of {table!r}") from exc
    pitr = desc.get("PointInTimeRecoveryDescription") or {}
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        raise ExportUnavailable(
            f"{table}: point-in-time recovery is off (incremental exports need it)"
        )
    earliest = pitr.get("EarliestRestorableDateTime")
    if not isinstance(earliest, dt.datetime):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return earliest.astimezone(dt.UTC)


def request(*, table_arn: str, bucket: str, prefix: str, window: Window) -> dict[str, Any]:
    """ExportTableToPointInTime's parameters for one window."""
    return {
        "TableArn": table_arn,
        "S3Bucket": bucket,
        "S3Prefix": prefix.rstrip("/"),  # DynamoDB writes <S3Prefix>/AWSDynamoDB/...
        "ExportFormat": native.DYNAMODB_JSON,
        "ExportType": native.INCREMENTAL_EXPORT,
        "IncrementalExportSpecification": {
            "ExportFromTime": window.start,
            "ExportToTime": window.end,
            "ExportViewType": VIEW,
        },
    }


def export_window(
    *,
    client: Any,
    storage: Storage,
    table: str,
    table_arn: str,
    window: Window,
    stop: threading.Event | None = None,
    exporter: Exporter = start_export,
    poll_s: float = POLL_S,
) -> ChangeSet:
    """Export ``window`` of ``table``, check it, commit it as a change set; the staging folder
    is deleted whatever happens. Raises (nothing committed) if anything is wrong."""
    bucket, root = s3_root(storage)
    stage = staging(table, window)
    _delete(storage, stage)  # what an earlier, interrupted attempt left
    try:
        params = request(table_arn=table_arn, bucket=bucket, prefix=root + stage, window=window)
        try:
            desc = exporter(client, params)
            desc = wait_for_export(client, desc, stop=stop, poll_s=poll_s)
        except botocore.exceptions.ClientError as exc:
            raise aws.translate(exc, what=f"incremental export of {table!r}") from exc
        arn = str(desc["ExportArn"])
        found = read_export(storage, stage, export_id=arn.rsplit("/", 1)[-1], location=arn)
        _check_window(found, window)
        return commit(storage, table=table, export=found, export_arn=arn)
    finally:
        _delete(storage, stage)


def read_export(
    storage: Storage, stage: str, *, export_id: str, location: str
) -> native.IncrementalExport:
    folder = f"{stage}{native.EXPORTS_DIR}/{export_id}/"
    if not storage.exists(folder + native.SUMMARY):
        raise HippolyteError(
            f"export {location} reported COMPLETED but wrote no {native.SUMMARY} "
            f"under {storage.url}/{folder}"
        )
    return native.incremental(storage, folder, location=f"{storage.url}/{folder}")


def _check_window(found: native.IncrementalExport, window: Window) -> None:
    """The export must start where it was asked to: the chain's sets follow each other exactly.
    It may end earlier than asked (never later): the next window then starts there."""
    if found.start != window.start or not found.start < found.end <= window.end:
        raise BackupCorrupt(
            f"{found.location}: the export covers [{found.start.isoformat()}, "
            f"{found.end.isoformat()}), asked [{window.start.isoformat()}, "
            f"{window.end.isoformat()}); not committed"
        )


def commit(
    storage: Storage, *, table: str, export: native.IncrementalExport, export_arn: str
) -> ChangeSet:
    """Every change of ``export``, each file checked, into a change set of the same window."""
    writer = ChangeSetWriter(storage, table=table, start=export.start)
    try:
        for f in export.files:
            for change in checked_changes(storage, f, where=f"{storage.url}/{f.key}"):
                writer.add(change)
        return writer.commit(
            end=export.end,
            view=export.view,
            source={
                "kind": "incremental-export",
                "exportArn": export_arn,
                "exportFromTime": export.start.isoformat(),
                "exportToTime": export.end.isoformat(),
            },
        )
    except BaseException:
        _delete(storage, writer.prefix)  # uncommitted: no _SUCCESS, nothing visible
        raise


def checked_changes(storage: Storage, f: SourceFile, *, where: str) -> Iterator[Change]:
    """The changes of one export data file; at its end, its md5 and count must be the
    manifest's. Raises BackupCorrupt naming the file (and the line)."""
    lines, sums, n, size = datafile.Lines(), datafile.Checksums(sha256=False), 0, 0
    try:
        with storage.open_read(f.key) as src:
            while chunk := src.read(datafile.READ_CHUNK):
                size += len(chunk)
                sums.update(chunk)
                for line in lines.lines(chunk):
                    n += 1
                    yield changes.parse_change(line, where=f"{where} line {n}")
        rest = lines.finish() if size else b""  # an empty partition may give an empty file
    except datafile.GzipError as exc:
        raise BackupCorrupt(f"{where}: {exc}") from None
    if rest:  # a last line without its newline: counted and checked (the md5 finds a cut)
        n += 1
        yield changes.parse_change(rest, where=f"{where} line {n}")
    if f.md5 is not None and sums.md5 != f.md5:
        raise BackupCorrupt(f"{where}: its md5 differs from the export's manifest")
    if n != f.item_count:
        raise BackupCorrupt(f"{where}: {n} lines, the export's manifest says {f.item_count}")


def _delete(storage: Storage, prefix: str) -> None:
    for key in list(storage.list(prefix)):
        storage.delete(key)
