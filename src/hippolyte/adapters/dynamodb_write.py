"""BatchWriteItem with request bodies built straight from the backup's item bytes.

The stock client validates and serializes every attribute of every item (2.4-5 MB/s per
core). Hippolyte already holds each item as DynamoDB JSON, so it calls ``batch_write_item``
with a one-item placeholder and a ``before-call`` hook (a public botocore event, registered
on this client only) swaps in the body it built. Signing, retries, error parsing and the
CRC32 check stay botocore's. The placeholder is an empty item, which DynamoDB rejects: if the
hook ever failed to run, the call would fail instead of writing anything wrong.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import encode_item, table_errors

_local = threading.local()
_PLACEHOLDER: list[dict[str, Any]] = [{"PutRequest": {"Item": {}}}]
MAX_ITEMS = 25
MAX_BYTES = 16 * 1024 * 1024


def _swap_body(params: dict[str, Any], **_: Any) -> None:
    body = getattr(_local, "body", None)
    if body is None:
        raise RuntimeError("raw BatchWriteItem called without a prepared body")
    params["body"] = body
    _local.body = None


def raw_write_client(conn: aws.Connection, *, pool: int, max_attempts: int = 10) -> Any:
    client = aws.client(
        conn, "dynamodb", pool=pool, max_attempts=max_attempts, parameter_validation=False
    )
    client.meta.events.register("before-call.dynamodb.BatchWriteItem", _swap_body)
    return client


def request_body(table: str, items: list[bytes]) -> bytes:
    puts = b",".join(b'{"PutRequest":{"Item":' + item + b"}}" for item in items)
    return (
        b'{"RequestItems":{'
        + orjson.dumps(table)
        + b":["
        + puts
        + b']},"ReturnConsumedCapacity":"TOTAL"}'
    )


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    unprocessed: list[bytes]  # items to send again, as DynamoDB JSON
    consumed: float
    retries: int


def write_batch(client: Any, *, table: str, items: list[bytes]) -> WriteResult:
    """One BatchWriteItem of up to 25 items; what DynamoDB left unprocessed comes back."""
    _local.body = request_body(table, items)
    try:
        with table_errors(table, what=f"BatchWriteItem into {table!r}"):
            resp = client.batch_write_item(RequestItems={table: _PLACEHOLDER})
    finally:
        _local.body = None
    left = (resp.get("UnprocessedItems") or {}).get(table) or []
    consumed = sum(float(c.get("CapacityUnits") or 0) for c in resp.get("ConsumedCapacity") or [])
    return WriteResult(
        unprocessed=[encode_item(r["PutRequest"]["Item"]) for r in left if "PutRequest" in r],
        consumed=consumed,
        retries=int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0)),
    )
