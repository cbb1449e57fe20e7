"""DynamoDB's native Export to S3 (ExportTableToPointInTime): full exports in DynamoDB JSON,
and the manifests of incremental ones (``incremental``).

``prefix`` may name the export folder itself (``.../AWSDynamoDB/<ExportId>/``, holding
``manifest-summary.json``, ``manifest-files.json`` and ``data/``), a folder holding exactly
one ``AWSDynamoDB/<ExportId>/``, or moto's bare layout (``AWSDynamoDB/<uuid>/data/<uuid>.gz``,
no manifests: every file under ``data/`` is read). With manifests, each data file's item
count and md5 come from ``manifest-files.json``; ``dataFileS3Key`` is relative to the bucket
the export was written to, so it is matched by its part after ``<ExportId>/``.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from dataclasses import dataclass

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, ConfigError, NotFound
from hippolyte.core.model import Json
from hippolyte.formats.base import Source, SourceFile, item_of_export_line
from hippolyte.repo import manifest

KIND = "native-export"
EXPORTS_DIR = "AWSDynamoDB"
SUMMARY = "manifest-summary.json"
FILES = "manifest-files.json"
STARTED = "_started"
DATA_DIR = "data/"
SHARED_DATA = "data"  # AWSDynamoDB/data/: incremental exports' shared data folder
FULL_EXPORT = "FULL_EXPORT"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
INCREMENTAL_VERSION = "2023-08-01"
VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE")
DYNAMODB_JSON = "DYNAMODB_JSON"
EXTRAS = ("tableArn", "tableId", "exportArn", "exportTime", "startTime", "endTime")


def detect(storage: Storage, prefix: str, *, location: str) -> Source | None:
    """The export under ``prefix``, or None if there is none. Raises ConfigError for an
    export Hippolyte cannot restore (ION, incremental) or several exports to choose from,
    BackupCorrupt for an unfinished or inconsistent one."""
    found = _export_folder(storage, prefix, location=location)
    if found is None:
        return None
    folder, where = found
    if storage.exists(folder + SUMMARY):
        return _with_manifests(storage, folder, location=where)
    if storage.exists(folder + STARTED):
        raise BackupCorrupt(
            f"{where}: the export did not finish ({STARTED} but no {SUMMARY}); refusing to use it"
        )
    return _bare(storage, folder, location=where)


def _export_folder(storage: Storage, prefix: str, *, location: str) -> tuple[str, str] | None:
    """(export folder, its location for messages), or None."""
    if _is_export(storage, prefix):
        return prefix, location
    if _name(prefix) == EXPORTS_DIR:
        parent, exports_dir = prefix, location
    elif EXPORTS_DIR in storage.list_dirs(prefix):
        parent, exports_dir = prefix + EXPORTS_DIR + "/", _join(location, EXPORTS_DIR)
    else:
        return None
    ids = [d for d in storage.list_dirs(parent) if d != SHARED_DATA]
    if not ids:
        return None
    if len(ids) > 1:
        listed = ", ".join(_join(exports_dir, i) for i in ids)
        raise ConfigError(
            f"{location} holds {len(ids)} DynamoDB exports; name one of them: {listed}"
        )
    return parent + ids[0] + "/", _join(exports_dir, ids[0])


def _is_export(storage: Storage, folder: str) -> bool:
    if storage.exists(folder + manifest.DESCRIPTOR):
        return False  # our own backup: same manifests, read by formats.hippolyte
    if storage.exists(folder + SUMMARY):
        return True
    if storage.exists(folder + STARTED):
        return storage.size(folder + STARTED) == 0  # ours is JSON; the export's is empty
    has_data = any(True for _ in storage.list(folder + DATA_DIR))
    return has_data and _only_data(storage, folder)


def _only_data(storage: Storage, folder: str) -> bool:
    """moto's bare layout: the folder holds nothing but data/."""
    return all(k[len(folder) :].startswith(DATA_DIR) for k in storage.list(folder))


def _with_manifests(storage: Storage, folder: str, *, location: str) -> Source:
    summary = _summary(storage, folder, location=location)
    where = _join(location, FILES)
    try:
        rows = manifest.parse_manifest_files(storage.get_bytes(folder + FILES), where=where)
    except NotFound:
        raise BackupCorrupt(f"{location} has {SUMMARY} but no {FILES}") from None
    present = set(storage.list(folder + DATA_DIR))
    files = [
        _source_file(row, folder, present, where=f"{where} line {n}")
        for n, row in enumerate(rows, 1)
    ]
    total = summary.get("itemCount")
    counted = sum(f.item_count or 0 for f in files)
    if isinstance(total, int) and total != counted:
        raise BackupCorrupt(f"{location}: {SUMMARY} says {total} items, {FILES} lists {counted}")
    return Source(
        kind=KIND,
        storage=storage,
        location=location,
        files=files,
        to_wire=item_of_export_line,
        description=None,
        extras={k: summary[k] for k in EXTRAS if summary.get(k) is not None},
        item_count=total if isinstance(total, int) else None,
    )


def _summary(storage: Storage, folder: str, *, location: str) -> Json:
    where = _join(location, SUMMARY)
    try:
        summary = orjson.loads(storage.get_bytes(folder + SUMMARY))
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise BackupCorrupt(f"{where}: not a JSON object")
    kind = summary.get("exportType") or FULL_EXPORT
    if kind != FULL_EXPORT:
        raise ConfigError(
            f"{location} is an {kind} (changes over a time range, not a table's contents); "
            "only full exports can be restored or converted: use the full export it builds on"
        )
    fmt = summary.get("outputFormat") or DYNAMODB_JSON
    if fmt != DYNAMODB_JSON:
        raise ConfigError(
            f"{location} is in {fmt} format; only {DYNAMODB_JSON} exports are supported "
            f"(export again with --export-format {DYNAMODB_JSON})"
        )
    return summary


def _source_file(row: Json, folder: str, present: set[str], *, where: str) -> SourceFile:
    if not isinstance(row, dict):
        raise BackupCorrupt(f"{where}: not a JSON object")
    key, count, md5 = row.get("dataFileS3Key"), row.get("itemCount"), row.get("md5Checksum")
    if not isinstance(key, str) or not isinstance(count, int) or not isinstance(md5, str | None):
        raise BackupCorrupt(f"{where}: expected dataFileS3Key, itemCount and md5Checksum")
    found = _resolve(key, folder, present)
    if found is None:
        raise BackupCorrupt(f"{where}: data file {key} is missing from the export folder")
    return SourceFile(key=found, item_count=count, md5=md5 or None)


def _resolve(data_key: str, folder: str, present: set[str]) -> str | None:
    """Map a bucket-relative ``dataFileS3Key`` onto the storage: by its part after
    ``<ExportId>/`` (the export may have been copied elsewhere), else by its file name."""
    marker = _name(folder) + "/"
    if data_key.startswith(marker):
        candidates = [folder + data_key[len(marker) :]]
    else:
        at = data_key.rfind("/" + marker)
        candidates = [folder + data_key[at + len(marker) + 1 :]] if at >= 0 else []
    candidates.append(folder + DATA_DIR + posixpath.basename(data_key))
    return next((c for c in candidates if c in present), None)


def _bare(storage: Storage, folder: str, *, location: str) -> Source:
    keys = sorted(storage.list(folder + DATA_DIR))
    ion = [k for k in keys if k.endswith((".ion", ".ion.gz"))]
    if ion:
        raise ConfigError(
            f"{location} holds ION data files ({posixpath.basename(ion[0])}); only "
            f"{DYNAMODB_JSON} exports are supported"
        )
    return Source(
        kind=KIND,
        storage=storage,
        location=location,
        files=[SourceFile(key=k) for k in keys],
        to_wire=item_of_export_line,
        description=None,
    )


def _name(folder: str) -> str:
    return folder.rstrip("/").rsplit("/", 1)[-1]


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if location else name


# --- incremental exports ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IncrementalExport:
    """What an incremental export's manifests say: its window ``[start, end)``, its view and
    its data files (in the shared ``AWSDynamoDB/data/`` folder), each with count and md5."""

    location: str
    export_arn: str | None
    start: dt.datetime  # exportFromTime, inclusive
    end: dt.datetime  # exportToTime, exclusive
    view: str  # NEW_AND_OLD_IMAGES | NEW_IMAGE
    item_count: int
    files: list[SourceFile]


def incremental(storage: Storage, folder: str, *, location: str) -> IncrementalExport:
    """The incremental export whose manifests are in ``folder`` (``.../AWSDynamoDB/<ExportId>/``).
    Raises BackupCorrupt for what is missing or inconsistent, ConfigError for another kind."""
    summary = _incremental_summary(storage, folder, location=location)
    where = _join(location, FILES)
    try:
        rows = manifest.parse_manifest_files(storage.get_bytes(folder + FILES), where=where)
    except NotFound:
        raise BackupCorrupt(f"{location} has {SUMMARY} but no {FILES}") from None
    exports = folder.rstrip("/").rsplit("/", 1)[0] + "/"  # the AWSDynamoDB/ folder
    present = set(storage.list(exports + DATA_DIR))
    files = [
        _shared_file(row, exports, present, where=f"{where} line {n}")
        for n, row in enumerate(rows, 1)
    ]
    counted = sum(f.item_count or 0 for f in files)
    total = summary.get("itemCount", counted)
    if total != counted:
        raise BackupCorrupt(f"{location}: {SUMMARY} says {total} items, {FILES} lists {counted}")
    return IncrementalExport(
        location=location,
        export_arn=summary.get("exportArn"),
        start=_time(summary, "exportFromTime", location=location),
        end=_time(summary, "exportToTime", location=location),
        view=summary["outputView"],
        item_count=counted,
        files=files,
    )


def _incremental_summary(storage: Storage, folder: str, *, location: str) -> Json:
    where = _join(location, SUMMARY)
    try:
        summary = orjson.loads(storage.get_bytes(folder + SUMMARY))
    except NotFound:
        raise BackupCorrupt(f"{location}: no {SUMMARY} (the export did not finish)") from None
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise BackupCorrupt(f"{where}: not a JSON object")
    kind = summary.get("exportType") or FULL_EXPORT
    if kind != INCREMENTAL_EXPORT:
        raise ConfigError(f"{location} is a {kind}, not an {INCREMENTAL_EXPORT}")
    if summary.get("version") != INCREMENTAL_VERSION:
        raise BackupCorrupt(
            f"{where}: version {summary.get('version')!r}; Hippolyte reads incremental "
            f"exports of version {INCREMENTAL_VERSION}"
        )
    fmt = summary.get("outputFormat") or DYNAMODB_JSON
    if fmt != DYNAMODB_JSON:
        raise ConfigError(f"{location} is in {fmt} format; only {DYNAMODB_JSON} is supported")
    if summary.get("outputView") not in VIEWS:
        raise BackupCorrupt(
            f"{where}: outputView {summary.get('outputView')!r} is not one of {VIEWS}"
        )
    if not isinstance(summary.get("itemCount", 0), int):
        raise BackupCorrupt(f"{where}: itemCount is not a number")
    return summary


def _time(summary: Json, name: str, *, location: str) -> dt.datetime:
    value = summary.get(name)
    try:
        at = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BackupCorrupt(f"{_join(location, SUMMARY)}: {name} {value!r} is not a time") from None
    if at.tzinfo is None:
        raise BackupCorrupt(f"{_join(location, SUMMARY)}: {name} {value!r} has no time zone")
    return at.astimezone(dt.UTC)


def _shared_file(row: Json, exports: str, present: set[str], *, where: str) -> SourceFile:
    """A manifest row of an incremental export: its ``dataFileS3Key``
    (``<prefix>/AWSDynamoDB/data/<name>``, relative to the bucket) mapped onto the storage by
    its part after ``AWSDynamoDB/``."""
    if not isinstance(row, dict):
        raise BackupCorrupt(f"{where}: not a JSON object")
    key, count, md5 = row.get("dataFileS3Key"), row.get("itemCount"), row.get("md5Checksum")
    if not isinstance(key, str) or not isinstance(count, int) or not isinstance(md5, str):
        raise BackupCorrupt(f"{where}: expected dataFileS3Key, itemCount and md5Checksum")
    marker = f"{EXPORTS_DIR}/{DATA_DIR}"
    at = key.rfind(marker)
    found = exports + key[at + len(EXPORTS_DIR) + 1 :] if at >= 0 else None
    if found is None or found not in present:
        raise BackupCorrupt(f"{where}: data file {key} is missing from {exports}{DATA_DIR}")
    return SourceFile(key=found, item_count=count, md5=md5)
