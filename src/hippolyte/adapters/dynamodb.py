"""DynamoDB: table discovery and descriptions, and Scan pages whose items stay raw JSON bytes.

botocore's response parser costs ~300 ms of CPU per 1 MB Scan page. Hippolyte never needs
items as Python objects: it writes them out as DynamoDB JSON, which is what the server sent.
So a ``before-parse`` hook (a public botocore event) splits each Scan response: items are cut
out of the body by msgspec as raw bytes, and the small remainder (``LastEvaluatedKey``,
``ConsumedCapacity``, counts) goes through the stock parser, so binary keys are decoded once,
exactly as the stock client does. Signing, retries, error parsing and the CRC32 check are
untouched. If the body does not decode, the hook leaves it alone and the items are
re-encoded from the stock parse (``encode_item``), byte-equivalent in content.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import msgspec
import orjson

from hippolyte.adapters import aws
from hippolyte.core.errors import TableNotFound, Transient
from hippolyte.core.model import Json, TableInfo

log = logging.getLogger(__name__)

RAW_ITEMS = "HippolyteRawItems"
CRC_MISMATCH = "HippolyteCrc32Mismatch"


class _ScanBody(msgspec.Struct):
    # msgspec.Raw cannot be part of a union with None: an empty Raw means "absent"
    Items: list[msgspec.Raw] = []
    Count: int = 0
    ScannedCount: int = 0
    LastEvaluatedKey: msgspec.Raw = msgspec.Raw()
    ConsumedCapacity: msgspec.Raw = msgspec.Raw()


_decoder = msgspec.json.Decoder(_ScanBody)


def _split_scan_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """before-parse hook: keep items raw, hand the rest to the stock parser."""
    if response_dict.get("status_code", 500) >= 300:
        return
    body = response_dict.get("body")
    if not body:
        return
    expected = response_dict.get("headers", {}).get("x-amz-crc32")
    if expected is not None and zlib.crc32(body) != int(expected):
        # botocore retries this itself, but returns the last response as a success when its
        # attempts run out: flag it, so the page is re-read rather than written.
        customized_response_dict[CRC_MISMATCH] = True
        return
    try:
        page = _decoder.decode(body)
    except msgspec.DecodeError:
        log.debug("Scan body did not decode raw; using the stock parser")
        return
    rest = [b'"Count":%d,"ScannedCount":%d' % (page.Count, page.ScannedCount)]
    if page.LastEvaluatedKey:
        rest.append(b'"LastEvaluatedKey":' + bytes(page.LastEvaluatedKey))
    if page.ConsumedCapacity:
        rest.append(b'"ConsumedCapacity":' + bytes(page.ConsumedCapacity))
    response_dict["body"] = b"{" + b",".join(rest) + b"}"
    customized_response_dict[RAW_ITEMS] = [_one_line(bytes(r)) for r in page.Items]


def _one_line(raw: bytes) -> bytes:
    # JSON Lines needs each item on one line; a server that pretty-prints gets re-encoded.
    if b"\n" in raw or b"\r" in raw:
        return orjson.dumps(orjson.loads(raw))
    return raw


def raw_scan_client(conn: aws.Connection, *, pool: int, max_attempts: int = 10) -> Any:
    """A DynamoDB client whose Scan responses carry items as raw JSON bytes."""
    client = aws.client(conn, "dynamodb", pool=pool, max_attempts=max_attempts)
    client.meta.events.register("before-parse.dynamodb.Scan", _split_scan_body)
    return client


def control_client(conn: aws.Connection, *, max_attempts: int = 10, pool: int = 4) -> Any:
    return aws.client(conn, "dynamodb", pool=pool, max_attempts=max_attempts)


@dataclass(frozen=True, kw_only=True)
class Page:
    items: list[bytes]  # each item's DynamoDB JSON, exactly as the server sent it
    last_key: Json | None
    consumed: float  # read capacity units this page cost
    retries: int  # attempts botocore needed beyond the first (throttling, 5xx, resets)
    raw: bool = True  # False: the body did not decode raw; items re-encoded from botocore's parse

    @property
    def count(self) -> int:
        return len(self.items)


def scan_page(
    client: Any,
    *,
    table: str,
    segment: int,
    total_segments: int,
    start_key: Json | None,
    limit: int | None,
) -> Page:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "ReturnConsumedCapacity": "TOTAL",
        "ConsistentRead": False,
    }
    if total_segments > 1:
        kwargs["Segment"] = segment
        kwargs["TotalSegments"] = total_segments
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    if limit:
        kwargs["Limit"] = limit
    with table_errors(table, what=f"table {table!r} segment {segment}"):
        resp = client.scan(**kwargs)
    if resp.get(CRC_MISMATCH):
        raise Transient(f"table {table!r} segment {segment}: response failed its CRC32 check")
    items = resp.get(RAW_ITEMS)
    raw = items is not None
    if items is None:
        items = [encode_item(i) for i in resp.get("Items", [])]
    consumed = float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
    meta = resp.get("ResponseMetadata", {})
    return Page(
        items=items,
        last_key=resp.get("LastEvaluatedKey"),
        consumed=consumed,
        retries=int(meta.get("RetryAttempts", 0)),
        raw=raw,
    )


@contextlib.contextmanager
def table_errors(table: str, *, what: str) -> Iterator[None]:
    """botocore errors of a call on ``table`` in our tree: a missing table is TableNotFound."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise TableNotFound(f"table {table!r} does not exist (was it deleted?)") from exc
        raise aws.translate(exc, what=what) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=what) from exc


def encode_item(item: Json) -> bytes:
    """A stock-parsed item (binary as bytes) back to DynamoDB JSON (binary as base64)."""
    return orjson.dumps(_encode_attrs(item))


def _encode_attrs(item: Json) -> Json:
    return {k: _encode_value(v) for k, v in item.items()}


def _encode_value(av: Json) -> Json:
    ((tag, val),) = av.items()
    if tag == "B":
        return {"B": base64.b64encode(val).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in val]}
    if tag == "M":
        return {"M": _encode_attrs(val)}
    if tag == "L":
        return {"L": [_encode_value(v) for v in val]}
    return {tag: val}


def decode_key(item: Json) -> Json:
    """DynamoDB JSON of a key (binary as base64) to what botocore takes (binary as bytes)."""
    return {k: {"B": base64.b64decode(v["B"])} if "B" in v else v for k, v in item.items()}


# --- control plane ---------------------------------------------------------------------------


def has_items(client: Any, table: str) -> bool:
    """One Scan of one item: whether the table holds anything (costs 0.5 RCU)."""
    try:
        resp = client.scan(TableName=table, Limit=1, Select="COUNT")
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise aws.translate(exc, what=f"table {table!r}") from exc
    return bool(resp.get("Count") or resp.get("LastEvaluatedKey"))


def list_tables(client: Any) -> Iterator[str]:
    try:
        for page in client.get_paginator("list_tables").paginate():
            yield from page.get("TableNames", [])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise aws.translate(exc, what="ListTables") from exc


def describe(client: Any, table: str, *, with_tags: bool = False) -> TableInfo:
    try:
        desc = client.describe_table(TableName=table)["Table"]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise TableNotFound(f"table {table!r} does not exist") from None
        raise aws.translate(exc, what=f"table {table!r}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"table {table!r}") from exc
    tags = tags_of(client, desc["TableArn"]) if with_tags else {}
    return TableInfo.from_description(desc, tags=tags or {})


def tags_of(client: Any, arn: str) -> dict[str, str] | None:
    """The table's tags; None where the server has no tagging (DynamoDB Local)."""
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    try:
        while True:
            resp = client.list_tags_of_resource(**kwargs)
            tags.update({t["Key"]: t["Value"] for t in resp.get("Tags", [])})
            if not resp.get("NextToken"):
                return tags
            kwargs["NextToken"] = resp["NextToken"]
    except botocore.exceptions.ClientError as exc:
        if unsupported(exc):
            return None
        raise aws.translate(exc, what=f"tags of {arn}") from exc


def extras(client: Any, table: TableInfo) -> Json:
    """What DescribeTable leaves out but a restore needs: TTL, tags, PITR state.
    A server that lacks one of these APIs records it as null."""
    out: Json = {"timeToLive": None, "tags": None, "pointInTimeRecovery": None}
    try:
        ttl = client.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription", {})
        out["timeToLive"] = {
            "status": ttl.get("TimeToLiveStatus"),
            "attributeName": ttl.get("AttributeName"),
        }
    except botocore.exceptions.ClientError as exc:
        if not unsupported(exc):
            raise aws.translate(exc, what=f"TTL of {table.name!r}") from exc
    out["tags"] = tags_of(client, table.arn) if table.arn else None
    try:
        cb = client.describe_continuous_backups(TableName=table.name)
        pitr = cb["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        out["pointInTimeRecovery"] = {"status": pitr.get("PointInTimeRecoveryStatus")}
    except botocore.exceptions.ClientError as exc:
        if not unsupported(exc):
            raise aws.translate(exc, what=f"continuous backups of {table.name!r}") from exc
    return out


def unsupported(exc: botocore.exceptions.ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    msg = exc.response.get("Error", {}).get("Message", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return (
        code in {"UnknownOperationException", "UnrecognizedClientException", "NotImplemented"}
        or "not supported" in msg.lower()
        or "unknown operation" in msg.lower()
        or (status in {400, 501} and code in {"", "InternalFailure"})
    )
