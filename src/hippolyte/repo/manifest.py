"""The repository format: keys, backup ids, manifests. Pure: no boto3, no I/O.

Layout of one backup (see docs/design.md)::

    <repo>/<table>/<YYYY-MM-dd-HH-mm-ss>/
        _started                       JSON: table, start time, parameters (written first)
        data/<segment>-<seq>.json.gz   {"Item": {...}} per line, DynamoDB JSON, gzip
        manifest-files.json            JSON lines, one per data file (native export format)
        manifest-summary.json          native export summary fields
        hippolyte.json                 table description, parameters, per-file sha256 + counts
        _SUCCESS                       empty; written last: the commit marker
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

import orjson

from hippolyte.core.errors import BackupCorrupt, ConfigError
from hippolyte.core.model import TABLE_NAME, BackupRef, FileEntry, Json

FORMAT = "hippolyte/1"
NATIVE_VERSION = "2020-06-30"
ID_FORMAT = "%Y-%m-%d-%H-%M-%S"
ID_RE = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}$")
TABLE_RE = TABLE_NAME

STARTED = "_started"
SUCCESS = "_SUCCESS"
MANIFEST_FILES = "manifest-files.json"
MANIFEST_SUMMARY = "manifest-summary.json"
DESCRIPTOR = "hippolyte.json"
DATA_DIR = "data/"
CHECKPOINTS = "_checkpoints/"  # per-segment progress of distributed units; not part of a backup


def backup_id(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime(ID_FORMAT)


def parse_backup_id(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, ID_FORMAT).replace(tzinfo=dt.UTC)


def is_backup_id(value: str) -> bool:
    return bool(ID_RE.match(value))


def data_key(segment: int, seq: int, *, attempt: str = "") -> str:
    """``data/<segment>-<seq>[-<attempt>].json.gz``: distributed attempts name their files,
    so a duplicated or retried unit never overwrites another's."""
    suffix = f"-{attempt}" if attempt else ""
    return f"{DATA_DIR}{segment:05d}-{seq:04d}{suffix}.json.gz"


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ref(ref: str, *, repo: str | None) -> BackupRef:
    """``TABLE/BACKUP_ID`` within ``repo``, or the path/URL of a backup folder."""
    text = ref.rstrip("/")
    parts = text.split("/")
    if len(parts) == 2 and repo and TABLE_RE.match(parts[0]) and is_backup_id(parts[1]):
        return BackupRef(repo=repo, table=parts[0], backup_id=parts[1])
    if len(parts) == 2 and not repo and is_backup_id(parts[1]):
        raise ConfigError(f"backup reference {ref!r} needs --repo (or `repository` in the config)")
    if len(parts) >= 3 and is_backup_id(parts[-1]) and TABLE_RE.match(parts[-2]):
        root = "/".join(parts[:-2])
        if root in {"", "s3:", "s3:/", "file:", "file:/"}:
            raise ConfigError(f"backup reference {ref!r} names no repository")
        return BackupRef(repo=root, table=parts[-2], backup_id=parts[-1])
    raise ConfigError(
        f"backup reference {ref!r} is neither TABLE/YYYY-MM-DD-HH-MM-SS nor the path or URL "
        "of a backup folder"
    )


def manifest_files_lines(prefix: str, files: Iterable[FileEntry]) -> bytes:
    """manifest-files.json as DynamoDB's export writes it: JSON lines, keys from the repo root."""
    out = bytearray()
    for f in files:
        out += orjson.dumps(
            {
                "itemCount": f.item_count,
                "md5Checksum": f.md5,
                "etag": "",
                "dataFileS3Key": prefix + f.key,
            }
        )
        out += b"\n"
    return bytes(out)


def manifest_summary(
    *,
    table_arn: str,
    table_id: str,
    start: dt.datetime,
    end: dt.datetime,
    item_count: int,
    billed_size_bytes: int,
    prefix: str,
    s3_bucket: str | None,
) -> bytes:
    return orjson.dumps(
        {
            "version": NATIVE_VERSION,
            "exportArn": None,
            "startTime": iso(start),
            "endTime": iso(end),
            "tableArn": table_arn,
            "tableId": table_id,
            "exportTime": iso(start),
            "s3Bucket": s3_bucket,
            "s3Prefix": prefix,
            "s3SseAlgorithm": None,
            "s3SseKmsKeyId": None,
            "manifestFilesS3Key": prefix + MANIFEST_FILES,
            "billedSizeBytes": billed_size_bytes,
            "itemCount": item_count,
            "outputFormat": "DYNAMODB_JSON",
            "exportType": "FULL_EXPORT",
        },
        option=orjson.OPT_INDENT_2,
    )


def descriptor(*, table: Json, backup: Json, files: list[FileEntry]) -> bytes:
    """hippolyte.json: everything needed to re-create and verify the backup."""
    return orjson.dumps(
        {
            "format": FORMAT,
            "table": table,
            "backup": backup,
            "files": [file_to_json(f) for f in files],
        },
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        default=_default,
    )


def file_to_json(f: FileEntry) -> Json:
    return {
        "key": f.key,
        "itemCount": f.item_count,
        "rawBytes": f.raw_bytes,
        "size": f.size,
        "sha256": f.sha256,
        "md5": f.md5,
    }


def parse_descriptor(data: bytes, *, where: str) -> Json:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupCorrupt(f"{where}: not a {FORMAT} descriptor")
    try:
        doc["files"] = [
            FileEntry(
                key=f["key"],
                item_count=int(f["itemCount"]),
                raw_bytes=int(f["rawBytes"]),
                size=int(f["size"]),
                sha256=f["sha256"],
                md5=f["md5"],
            )
            for f in doc["files"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupCorrupt(f"{where}: malformed file list ({exc!r})") from exc
    return doc


def parse_manifest_files(data: bytes, *, where: str) -> list[Json]:
    rows = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BackupCorrupt(f"{where} line {n}: not valid JSON ({exc})") from exc
    return rows


def _default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return iso(obj)
    if isinstance(obj, bytes | bytearray):
        import base64

        return base64.b64encode(obj).decode()
    if hasattr(obj, "__float__"):  # Decimal from boto3 descriptions
        value = float(obj)
        return int(value) if value.is_integer() else value
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def to_json_value(obj: Any) -> Any:
    """A DescribeTable response made JSON-safe (datetimes to ISO strings)."""
    return orjson.loads(orjson.dumps(obj, default=_default))
