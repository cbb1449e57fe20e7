"""Which format a backup folder holds: ours, a DynamoDB export or a Data Pipeline export."""

from __future__ import annotations

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, BackupNotFound
from hippolyte.formats import datapipeline, hippolyte, native
from hippolyte.formats.base import Source
from hippolyte.repo import manifest


def open_source(storage: Storage, prefix: str, *, location: str) -> Source:
    """Detect the format of the backup under ``prefix`` (a folder, ending in '/')."""
    ours = storage.exists(prefix + manifest.DESCRIPTOR) or (
        storage.exists(prefix + manifest.STARTED) and storage.size(prefix + manifest.STARTED) > 0
    )  # a native export has an empty _started; ours records the run in it
    if ours:
        return hippolyte.open_backup(storage, prefix, location=location)
    for module in (native, datapipeline):
        found = module.detect(storage, prefix, location=location)
        if found is not None:
            return found
    if not any(True for _ in storage.list(prefix)):
        raise BackupNotFound(f"nothing at {location}")
    raise BackupCorrupt(
        f"{location}: not a Hippolyte backup, a DynamoDB export or a Data Pipeline export"
    )
