"""Writing a backup into the repository, in the order docs/design.md states: allocate a free
id, data files (the engines write them, each atomically), then ``manifest-files.json``,
``manifest-summary.json``, ``hippolyte.json`` and ``_SUCCESS`` last. Anything that fails before
``_SUCCESS`` leaves an incomplete folder that readers ignore."""

from __future__ import annotations

import datetime as dt

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupFailed
from hippolyte.core.model import BackupRef, FileEntry, Json, TableInfo
from hippolyte.core.version import __version__
from hippolyte.repo import manifest

SCAN_CONSISTENCY = "eventually consistent parallel Scan; not a point-in-time snapshot"


def tidy(storage: Storage, *, ref: BackupRef, files: list[FileEntry]) -> None:
    """Before the manifests: drop data files no finishing attempt returned (a distributed
    unit that died or was duplicated) and the segments' checkpoints."""
    keep = {ref.prefix + f.key for f in files}
    for key in list(storage.list(ref.prefix + manifest.DATA_DIR)):
        if key not in keep:
            storage.delete(key)
    for key in list(storage.list(ref.prefix + manifest.CHECKPOINTS)):
        storage.delete(key)


def allocate(storage: Storage, *, table: str, at: dt.datetime) -> BackupRef:
    """A backup id not used yet for this table (two backups in one second get the next)."""
    for offset in range(60):
        bid = manifest.backup_id(at + dt.timedelta(seconds=offset))
        ref = BackupRef(repo=storage.url, table=table, backup_id=bid)
        if not any(True for _ in storage.list(ref.prefix)):
            return ref
    raise BackupFailed(f"{table}: no free backup id near {manifest.backup_id(at)}")


def commit(
    storage: Storage,
    *,
    ref: BackupRef,
    info: TableInfo,
    extras: Json,
    files: list[FileEntry],
    start: dt.datetime,
    end: dt.datetime,
    run: Json,
    consumed: float,
    source: Json,
    consistency: str = SCAN_CONSISTENCY,
) -> None:
    items = sum(f.item_count for f in files)
    storage.put_bytes(
        ref.prefix + manifest.MANIFEST_FILES, manifest.manifest_files_lines(ref.prefix, files)
    )
    storage.put_bytes(
        ref.prefix + manifest.MANIFEST_SUMMARY,
        manifest.manifest_summary(
            table_arn=info.arn,
            table_id=str(info.description.get("TableId", "")),
            start=start,
            end=end,
            item_count=items,
            billed_size_bytes=info.size_bytes,
            prefix=ref.prefix,
            s3_bucket=storage.bucket,
        ),
    )
    table_doc = {
        "name": info.name,
        "description": manifest.to_json_value(info.description),
        **extras,
    }
    backup_doc = {
        "id": ref.backup_id,
        "startTime": manifest.iso(start),
        "endTime": manifest.iso(end),
        "durationSeconds": round((end - start).total_seconds(), 3),
        "itemCount": items,
        "rawBytes": sum(f.raw_bytes for f in files),
        "storedBytes": sum(f.size for f in files),
        "consumedReadUnits": round(consumed, 1),
        "parameters": run,
        "source": source,
        "hippolyteVersion": __version__,
        "consistency": consistency,
    }
    storage.put_bytes(
        ref.prefix + manifest.DESCRIPTOR,
        manifest.descriptor(table=table_doc, backup=backup_doc, files=files),
    )
    storage.put_bytes(ref.prefix + manifest.SUCCESS, b"")
