"""Our own repository format (docs/design.md), read as a ``Source``: trusted only with
``_SUCCESS``, its files listed with their counts and checksums by ``hippolyte.json``."""

from __future__ import annotations

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.formats.base import Source, SourceFile, item_of_export_line
from hippolyte.repo import manifest


def open_backup(storage: Storage, prefix: str, *, location: str) -> Source:
    if not storage.exists(prefix + manifest.SUCCESS):
        raise BackupCorrupt(f"{location} is incomplete (no {manifest.SUCCESS}); refusing to use it")
    try:
        doc = manifest.parse_descriptor(
            storage.get_bytes(prefix + manifest.DESCRIPTOR),
            where=f"{location}/{manifest.DESCRIPTOR}",
        )
    except NotFound:
        raise BackupCorrupt(
            f"{location} has {manifest.SUCCESS} but no {manifest.DESCRIPTOR}"
        ) from None
    table = doc["table"]
    return Source(
        kind="hippolyte",
        storage=storage,
        location=location,
        files=[
            SourceFile(key=prefix + f.key, item_count=f.item_count, sha256=f.sha256, md5=f.md5)
            for f in doc["files"]
        ],
        to_wire=item_of_export_line,
        description=table["description"],
        extras={k: table.get(k) for k in ("timeToLive", "tags", "pointInTimeRecovery")},
        item_count=doc["backup"]["itemCount"],
        prefix=prefix,
    )
