"""Writers of the foreign backup formats Hippolyte reads (/work/shared/reference/formats.md),
from items in the wire format as boto3 takes them (binary as ``bytes``, as corpus.py).

- ``write_native_export``: DynamoDB's Export to S3, with its manifests, or moto's bare layout;
- ``write_datapipeline_export``: the Data Pipeline / EMR connector export.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import random
import string
import uuid
from typing import Any

import orjson

from hippolyte.adapters.storage import S3Storage, Storage
from hippolyte.ops.sample_tables import order_item
from tests.corpus import Item, nasty_items

TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
EXPORT_TIME = dt.datetime(2024, 3, 5, 7, 28, 34, 28000, tzinfo=dt.UTC)
CONNECTOR_TAGS = {
    "S": "s",
    "N": "n",
    "B": "b",
    "SS": "sS",
    "NS": "nS",
    "BS": "bS",
    "M": "m",
    "L": "l",
    "NULL": "nULL",
    "BOOL": "bOOL",
}


def fixture_items(orders: int = 25) -> list[Item]:
    """Every type, nested binary, unicode, a 399 KB item; every item keyed by ``pk`` (S)."""
    return nasty_items() + [{**order_item(i), "pk": {"S": f"order-{i}"}} for i in range(orders)]


# --- item encodings ---------------------------------------------------------------------------


def wire(value: Any) -> Any:
    """An item or attribute value with bytes -> the wire JSON value (binary as base64)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def connector(item: Item) -> Item:
    """An item in the EMR connector's spelling: lower-case type keys, binary as base64."""
    return {name: _connector_value(v) for name, v in item.items()}


def _connector_value(value: Item) -> Item:
    ((tag, inner),) = value.items()
    if tag == "M":
        inner = connector(inner)
    elif tag == "L":
        inner = [_connector_value(v) for v in inner]
    else:
        inner = wire(inner)
    return {CONNECTOR_TAGS[tag]: inner}


def export_line(item: Item) -> bytes:
    return b'{"Item":' + orjson.dumps(wire(item)) + b"}\n"


def connector_line(item: Item) -> bytes:
    return orjson.dumps(connector(item)) + b"\n"


# --- DynamoDB Export to S3 --------------------------------------------------------------------


def write_native_export(
    storage: Storage,
    prefix: str,
    items: list[Item],
    *,
    export_id: str | None = None,
    files: int = 2,
    with_manifests: bool = True,
    table_arn: str = TABLE_ARN,
    export_time: dt.datetime = EXPORT_TIME,
    s3_prefix: str | None = None,
    output_format: str = "DYNAMODB_JSON",
    export_type: str = "FULL_EXPORT",
) -> str:
    """Write an export under ``prefix`` ('' or ending in '/'); returns its folder
    ``<prefix>AWSDynamoDB/<ExportId>/``. ``s3_prefix`` is the prefix the export was written
    under in its bucket (default: where it is now), to simulate an export copied elsewhere."""
    if not with_manifests:  # moto: AWSDynamoDB/<uuid>/data/<uuid>.gz and nothing else
        folder = f"{prefix}AWSDynamoDB/{export_id or uuid.uuid4()}/"
        for chunk in _chunks(items, files):
            data = gzip.compress(b"".join(export_line(i) for i in chunk))
            storage.put_bytes(f"{folder}data/{uuid.uuid4()}.gz", data)
        return folder
    export_id = export_id or f"{int(export_time.timestamp() * 1000):014d}-{_token(8, hex=True)}"
    folder = f"{prefix}AWSDynamoDB/{export_id}/"
    bucket_prefix = _bucket_prefix(storage, prefix) if s3_prefix is None else s3_prefix
    in_bucket = f"{bucket_prefix}/" if bucket_prefix else ""
    in_bucket += f"AWSDynamoDB/{export_id}/"
    storage.put_bytes(folder + "_started", b"")
    rows = bytearray()
    for chunk in _chunks(items, files):
        name = f"data/{_token(26)}.json.gz"
        data = gzip.compress(b"".join(export_line(i) for i in chunk))
        storage.put_bytes(folder + name, data)
        row = {
            "itemCount": len(chunk),
            "md5Checksum": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "etag": hashlib.md5(data).hexdigest(),
            "dataFileS3Key": in_bucket + name,
        }
        rows += orjson.dumps(row) + b"\n"
    storage.put_bytes(folder + "manifest-files.json", bytes(rows))
    storage.put_bytes(folder + "manifest-files.checksum", hashlib.md5(rows).hexdigest().encode())
    summary = _summary(
        storage,
        export_id=export_id,
        table_arn=table_arn,
        at=export_time,
        s3_prefix=bucket_prefix,
        manifest_key=in_bucket + "manifest-files.json",
        items=items,
        output_format=output_format,
        export_type=export_type,
    )
    storage.put_bytes(folder + "manifest-summary.json", summary)
    storage.put_bytes(
        folder + "manifest-summary.checksum", hashlib.md5(summary).hexdigest().encode()
    )
    return folder


def _summary(
    storage: Storage,
    *,
    export_id: str,
    table_arn: str,
    at: dt.datetime,
    s3_prefix: str,
    manifest_key: str,
    items: list[Item],
    output_format: str,
    export_type: str,
) -> bytes:
    def iso(t: dt.datetime) -> str:
        return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    doc: dict[str, Any] = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": iso(at),
        "endTime": iso(at + dt.timedelta(minutes=5)),
        "tableArn": table_arn,
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
        "exportTime": iso(at),
        "s3Bucket": storage.bucket if isinstance(storage, S3Storage) else "exports-bucket",
        "s3Prefix": s3_prefix or None,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": manifest_key,
        "billedSizeBytes": sum(len(export_line(i)) for i in items),
        "itemCount": len(items),
        "outputFormat": output_format,
        "exportType": export_type,
    }
    if export_type == "INCREMENTAL_EXPORT":
        doc |= {
            "version": "2023-08-01",
            "exportFromTime": iso(at - dt.timedelta(hours=1)),
            "exportToTime": iso(at),
            "outputView": "NEW_AND_OLD_IMAGES",
        }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


# --- Data Pipeline / EMR connector ------------------------------------------------------------


def write_datapipeline_export(
    storage: Storage,
    prefix: str,
    items: list[Item],
    *,
    items_per_file: int = 100_000,
    with_manifest: bool = True,
    with_success: bool = True,
) -> list[str]:
    """Write the export into folder ``prefix``; returns the data files' keys. ``_SUCCESS``
    last, as Hadoop's committer does."""
    keys = []
    for start in range(0, len(items), items_per_file):
        key = f"{prefix}{uuid.uuid4()}"
        chunk = items[start : start + items_per_file]
        storage.put_bytes(key, b"".join(connector_line(i) for i in chunk))
        keys.append(key)
    if with_manifest:
        entries = [
            orjson.dumps({"url": f"{_s3_root(storage)}/{key}", "mandatory": True}) for key in keys
        ]
        body = b'{"name":"DynamoDB-export","version":3,\n"entries":[\n'
        body += b",\n".join(entries) + b"\n]}"
        storage.put_bytes(prefix + "manifest", body)
    if with_success:
        storage.put_bytes(prefix + "_SUCCESS", b"")
    return keys


# --- helpers ----------------------------------------------------------------------------------


def _chunks(items: list[Item], n: int) -> list[list[Item]]:
    return [items[i::n] for i in range(n)]


def _token(n: int, *, hex: bool = False) -> str:
    alphabet = "0123456789abcdef" if hex else string.ascii_lowercase + string.digits
    return "".join(random.choices(alphabet, k=n))


def _bucket_prefix(storage: Storage, prefix: str) -> str:
    """``prefix`` relative to the bucket's root (what the export's keys are relative to)."""
    root = storage.prefix if isinstance(storage, S3Storage) else ""
    return "/".join(p for p in (root, prefix.strip("/")) if p)


def _s3_root(storage: Storage) -> str:
    return storage.url if isinstance(storage, S3Storage) else "s3://original-backups-bucket"
