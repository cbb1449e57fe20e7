"""The export engine: DynamoDB's ExportTableToPointInTime, for tables with PITR on.

It reads no table capacity and is a true point-in-time copy (as of ``--at``, or now). The
export is written straight into the backup's folder of an ``s3://`` repository
(``<table>/<id>/AWSDynamoDB/<ExportId>/...``); when DynamoDB reports it COMPLETED, every data
file is read once for its sha256, size and item count, and our manifests, ``hippolyte.json``
(the schema as of the export) and ``_SUCCESS`` are written as for any backup, so `list`,
`verify` and `restore` treat it the same. moto writes only data files and DynamoDB writes its
own manifests too: both are read through ``formats_native``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import (
    AwsError,
    CredentialsError,
    HippolyteError,
    Interrupted,
    TableNotFound,
)
from hippolyte.core.model import BackupRef, FileEntry, TableInfo
from hippolyte.formats.base import SourceFile, iter_lines
from hippolyte.repo import datafile

POLL_S = 10.0
TIMEOUT_S = 24 * 3600.0
DESCRIBE_PITR = "DescribeContinuousBackups"
DENIED = {"AccessDeniedException", "AccessDenied"}  # the IAM policy refuses the call


class ExportUnavailable(HippolyteError):
    """This table cannot be exported (PITR off, a local repository, no export API)."""


def pitr_enabled(client: Any, table: str) -> bool:
    """Whether the table has point-in-time recovery on. A server without the API (DynamoDB
    Local, dynalite) has it off; any other failure is raised, so that a missing permission
    does not pass for "PITR off" and quietly turn an export into a scan."""
    try:
        desc = client.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    except botocore.exceptions.ClientError as exc:
        error = pitr_error(exc, table=table)
        if error is None:
            return False
        raise error from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"point-in-time recovery state of {table!r}") from exc
    pitr = desc.get("PointInTimeRecoveryDescription") or {}
    return pitr.get("PointInTimeRecoveryStatus") == "ENABLED"


def pitr_error(exc: botocore.exceptions.ClientError, *, table: str) -> Exception | None:
    """What a failed DescribeContinuousBackups means: None if the server lacks the API."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    if code in DENIED:
        return AwsError(
            f"not allowed to read the point-in-time recovery state of table {table!r}: "
            f"grant dynamodb:{DESCRIBE_PITR} (or back up with --engine local); "
            f"AWS said: {error.get('Message') or code}"
        )
    if code in {"ResourceNotFoundException", "TableNotFoundException"}:
        return TableNotFound(f"table {table!r} does not exist (was it deleted?)")
    translated = aws.translate(exc, what=f"point-in-time recovery state of {table!r}")
    if isinstance(translated, CredentialsError) or not dynamodb.unsupported(exc):
        return translated
    return None


def s3_location(storage: Storage, ref: BackupRef) -> tuple[str, str]:
    """(bucket, key prefix) of the backup folder; exports go to S3 only."""
    bucket = getattr(storage, "bucket", None)
    if not bucket:
        raise ExportUnavailable(
            f"{ref.table}: the export engine needs an s3:// repository, not {storage.url}"
        )
    root = getattr(storage, "prefix", "")
    return bucket, (f"{root}/" if root else "") + ref.prefix


def export_table(
    info: TableInfo,
    *,
    client: Any,
    storage: Storage,
    ref: BackupRef,
    at: dt.datetime | None,
    stop: threading.Event | None = None,
    poll_s: float = POLL_S,
) -> tuple[list[FileEntry], str]:
    """Run one export into the backup folder; returns its files and the export's time."""
    if not pitr_enabled(client, info.name):
        raise ExportUnavailable(f"{info.name}: point-in-time recovery is off")
    bucket, prefix = s3_location(storage, ref)
    kwargs: dict[str, Any] = {
        "TableArn": info.arn,
        "S3Bucket": bucket,
        "S3Prefix": prefix.rstrip("/"),  # DynamoDB writes <S3Prefix>/AWSDynamoDB/...
        "ExportFormat": "DYNAMODB_JSON",
    }
    if at is not None:
        kwargs["ExportTime"] = at
    try:
        desc = client.export_table_to_point_in_time(**kwargs)["ExportDescription"]
    except botocore.exceptions.ClientError as exc:
        raise aws.translate(exc, what=f"export of {info.name!r}") from exc
    desc = wait_for_export(client, desc, stop=stop, poll_s=poll_s)
    exported_at = desc.get("ExportTime") or at or dt.datetime.now(dt.UTC)
    return _files(storage, ref), manifest_time(exported_at)


def wait_for_export(
    client: Any, desc: dict[str, Any], *, stop: threading.Event | None, poll_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    delay = 0.5  # polls quickly at first, then every poll_s: exports take minutes to hours
    while desc.get("ExportStatus") == "IN_PROGRESS":
        if time.monotonic() > deadline:
            raise HippolyteError(f"export {desc['ExportArn']} still in progress after 24 h")
        if (stop or threading.Event()).wait(delay):
            raise Interrupted(
                f"stopped while export {desc['ExportArn']} runs (it goes on in "
                "DynamoDB; the backup stays incomplete)"
            )
        delay = min(poll_s, delay * 2)
        desc = client.describe_export(ExportArn=desc["ExportArn"])["ExportDescription"]
    if desc.get("ExportStatus") != "COMPLETED":
        raise HippolyteError(
            f"export {desc.get('ExportArn')} {desc.get('ExportStatus')}: "
            f"{desc.get('FailureCode', '')} {desc.get('FailureMessage', '')}"
        )
    return desc


def _files(storage: Storage, ref: BackupRef) -> list[FileEntry]:
    from hippolyte.formats import native as formats_native

    source = formats_native.detect(storage, ref.prefix, location=str(ref))
    if source is None:
        raise HippolyteError(f"{ref}: the export reported COMPLETED but wrote no files")
    return [_entry(source, f, ref=ref) for f in source.files]


def _entry(source: Any, f: SourceFile, *, ref: BackupRef) -> FileEntry:
    sums = datafile.Checksums()
    items = raw = 0
    for _, line in iter_lines(source, f, on_chunk=sums.update):  # one read: lines and sums
        items += 1
        raw += len(line) + 1
    if f.md5 is not None and f.md5 != sums.md5:
        raise HippolyteError(f"{f.key}: md5 differs from the export's manifest")
    return FileEntry(
        key=f.key.removeprefix(ref.prefix),
        item_count=items,
        raw_bytes=raw,
        size=sums.size,
        sha256=sums.sha256,
        md5=sums.md5,
    )


def manifest_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()
