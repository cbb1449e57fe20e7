"""DynamoDB's native incremental export, as AWS documents it ("DynamoDB table export output
format", incremental export output), for tests: moto writes only full exports.

Layout under the export's S3 prefix::

    AWSDynamoDB/<ExportId>/_started                 empty
    AWSDynamoDB/<ExportId>/manifest-summary.json    version 2023-08-01, exportFromTime,
                                                    exportToTime, outputView, exportType ...
    AWSDynamoDB/<ExportId>/manifest-summary.md5
    AWSDynamoDB/<ExportId>/manifest-files.json      itemCount, md5Checksum, etag,
                                                    dataFileS3Key (bucket-relative)
    AWSDynamoDB/<ExportId>/manifest-files.md5
    AWSDynamoDB/data/<random>.json.gz               shared by every incremental export

Data lines: ``{"Metadata":{"WriteTimestampMicros":{"N":"..."}},"Keys":{...},"NewImage":{...},
"OldImage":{...}}``. NEW_AND_OLD_IMAGES: update = Keys + NewImage + OldImage, insert = Keys +
NewImage, delete = Keys + OldImage. NEW_IMAGE: any write = Keys + NewImage, delete = Keys.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.repo.changes import micros


def item(pk: str, v: int, **more: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "v": {"N": str(v)}, **more}


@dataclass(frozen=True, kw_only=True)
class Write:
    """One key's final change in a window (an incremental export is compacted)."""

    at: dt.datetime
    pk: str
    new: dict[str, Any] | None  # None: deleted
    old: dict[str, Any] | None = None  # the item before the window, if there was one

    def line(self, *, view: str) -> bytes:
        doc: dict[str, Any] = {
            "Metadata": {"WriteTimestampMicros": {"N": str(micros(self.at))}},
            "Keys": {"pk": {"S": self.pk}},
        }
        if self.new is not None:
            doc["NewImage"] = self.new
        if view == "NEW_AND_OLD_IMAGES" and self.old is not None:
            doc["OldImage"] = self.old
        return orjson.dumps(doc) + b"\n"


@dataclass(frozen=True, kw_only=True)
class Written:
    """Where a fixture export was written (keys relative to the storage)."""

    export_id: str
    folder: str  # .../AWSDynamoDB/<ExportId>/
    data_keys: list[str]
    export_arn: str


def export_id(at: dt.datetime) -> str:
    return f"{micros(at) // 1000:014d}-{secrets.token_hex(4)}"


def write_export(
    storage: Storage,
    stage: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    files: list[list[Write]],
    view: str = "NEW_AND_OLD_IMAGES",
    bucket_prefix: str = "",
    eid: str | None = None,
    table_arn: str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
) -> Written:
    """One incremental export under ``stage`` (a storage key prefix ending in /), in AWS's
    layout; ``bucket_prefix`` is the storage root's key prefix in its bucket (dataFileS3Key and
    manifestFilesS3Key are bucket-relative). Each inner list is one data file."""
    eid = eid or export_id(end)
    exports = f"{stage}AWSDynamoDB/"
    folder = f"{exports}{eid}/"
    arn = f"{table_arn}/export/{eid}"
    storage.put_bytes(folder + "_started", b"")
    rows, keys = [], []
    for writes in files:
        body = gzip.compress(b"".join(w.line(view=view) for w in writes))
        key = f"{exports}data/{secrets.token_hex(13)}.json.gz"
        storage.put_bytes(key, body)
        keys.append(key)
        md5 = hashlib.md5(body).digest()
        rows.append(
            {
                "itemCount": len(writes),
                "md5Checksum": base64.b64encode(md5).decode(),
                "etag": md5.hex(),
                "dataFileS3Key": bucket_prefix + key,
            }
        )
    listing = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    summary = orjson.dumps(
        {
            "version": "2023-08-01",
            "exportArn": arn,
            "startTime": _iso(end + dt.timedelta(minutes=1)),
            "endTime": _iso(end + dt.timedelta(minutes=9)),
            "tableArn": table_arn,
            "tableId": "b116b490-6460-4d4a-9a6b-5d360abf4fb3",
            "exportFromTime": _iso(start),
            "exportToTime": _iso(end),
            "s3Bucket": "exports",
            "s3Prefix": (bucket_prefix + stage).rstrip("/"),
            "s3SseAlgorithm": "AES256",
            "s3SseKmsKeyId": None,
            "manifestFilesS3Key": f"{bucket_prefix}{folder}manifest-files.json",
            "billedSizeBytes": 10 << 20,
            "itemCount": sum(len(f) for f in files),
            "outputFormat": "DYNAMODB_JSON",
            "outputView": view,
            "exportType": "INCREMENTAL_EXPORT",
        }
    )
    storage.put_bytes(folder + "manifest-files.json", listing)
    storage.put_bytes(folder + "manifest-files.md5", hashlib.md5(listing).hexdigest().encode())
    storage.put_bytes(folder + "manifest-summary.json", summary)
    storage.put_bytes(folder + "manifest-summary.md5", hashlib.md5(summary).hexdigest().encode())
    return Written(export_id=eid, folder=folder, data_keys=keys, export_arn=arn)


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay(base: list[dict[str, Any]], changes: list[Any]) -> dict[str, dict[str, Any]]:
    """The items after ``changes`` (``repo.changes.Change``, in order) on top of ``base``."""
    state = {_key(i["pk"]): i for i in base}
    for c in changes:
        key = _key(orjson.loads(c.keys)["pk"])
        if c.new is None:
            state.pop(key, None)
        else:
            state[key] = orjson.loads(c.new)
    return state


def _key(pk: dict[str, Any]) -> str:
    return orjson.dumps(pk, option=orjson.OPT_SORT_KEYS).decode()
