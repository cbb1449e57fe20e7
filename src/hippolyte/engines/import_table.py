"""DynamoDB's ImportTable as a restore engine: one import over exactly a backup's data files.

ImportTable reads every object under a key prefix (``S3KeyPrefix``), so the prefix is the
backup's data folder and is checked to hold exactly the backup's data files before the
import starts. ImportTable reports item errors only in CloudWatch Logs and overwrites
duplicate keys silently: the caller's proof is what makes the result trustworthy, and an
import that ends FAILED, CANCELLED or with errors is a failure naming its ARN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hippolyte.adapters import dynamodb_admin
from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupFailed, ConfigError, Interrupted
from hippolyte.core.events import Emit, Note
from hippolyte.core.model import Json

POLL_S = 10.0  # DescribeImport at most this far apart (from 0.25 s, doubling)


class ImportFailed(BackupFailed):
    """The import ended without every item imported; the table it created is left."""


@dataclass(frozen=True, kw_only=True)
class ImportOutcome:
    arn: str
    processed_items: int
    processed_bytes: int
    imported_items: int
    errors: int
    seconds: float


def data_prefix(storage: Storage, files: list[str]) -> tuple[str, str]:
    """(bucket, key prefix) that holds exactly ``files`` (keys from the storage's root): their
    common folder, which must hold nothing else (ImportTable reads all of it)."""
    if storage.bucket is None:
        raise ConfigError("ImportTable reads from S3, and the backup is not in S3")
    if not files:
        raise ConfigError("the backup has no data files to import")
    folder = files[0].rsplit("/", 1)[0] + "/"
    if any(not f.startswith(folder) or "/" in f[len(folder) :] for f in files):
        raise ConfigError(f"the backup's data files are not all in one folder ({folder})")
    others = sorted(set(storage.list(folder)) - set(files))
    if others:
        raise ConfigError(
            f"ImportTable would read every object under {folder}, and it holds {len(others)} "
            f"that are not the backup's data files (e.g. {others[0]!r})"
        )
    root = f"{storage.prefix}/" if storage.prefix else ""
    return storage.bucket, root + folder


def run_import(
    control: object,
    *,
    bucket: str,
    prefix: str,
    creation: Json,
    emit: Emit,
    stop: threading.Event,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
) -> ImportOutcome:
    """Start the import, say its ARN at once, follow it until it ends; ImportFailed unless it
    completed with every processed item imported and no error."""
    table = creation["TableName"]
    started = clock()
    desc = dynamodb_admin.import_table(
        control,
        {
            "S3BucketSource": {"S3Bucket": bucket, "S3KeyPrefix": prefix},
            "InputFormat": "DYNAMODB_JSON",
            "InputCompressionType": "GZIP",
            "TableCreationParameters": creation,
        },
    )
    arn = str(desc["ImportArn"])
    emit(Note(text=f"import started: {arn}", table=table))
    seen: tuple[int, int, int] | None = None
    delay = min(0.25, poll_s)
    while desc.get("ImportStatus") in ("IN_PROGRESS", "CANCELLING", None):
        if stop.wait(delay):
            raise Interrupted(
                f"stopped while import {arn} runs: it goes on in DynamoDB; the table "
                f"{table!r} will exist when it ends (delete it to restore again)"
            )
        delay = min(delay * 2, poll_s)
        desc = dynamodb_admin.describe_import(control, arn)
        now = (
            int(desc.get("ProcessedItemCount") or 0),
            int(desc.get("ProcessedSizeBytes") or 0),
            int(desc.get("ErrorCount") or 0),
        )
        if now != seen:
            seen = now
            emit(
                Note(
                    text=f"import {desc.get('ImportStatus', '?')}: {now[0]:,} items, "
                    f"{now[1]:,} bytes processed, {now[2]:,} errors",
                    table=table,
                )
            )
    outcome = ImportOutcome(
        arn=arn,
        processed_items=int(desc.get("ProcessedItemCount") or 0),
        processed_bytes=int(desc.get("ProcessedSizeBytes") or 0),
        imported_items=int(desc.get("ImportedItemCount") or 0),
        errors=int(desc.get("ErrorCount") or 0),
        seconds=clock() - started,
    )
    if desc.get("ImportStatus") != "COMPLETED" or outcome.errors:
        why = desc.get("FailureMessage") or desc.get("FailureCode") or ""
        raise ImportFailed(
            f"import {arn} ended {desc.get('ImportStatus')} with {outcome.errors:,} item "
            f"errors ({outcome.imported_items:,} of {outcome.processed_items:,} items imported)"
            + (f": {why}" if why else "")
            + f"; the table {table!r} was left as it is (never deleted): delete it and "
            "restore again, or restore --engine load --into-existing into it"
        )
    return outcome
