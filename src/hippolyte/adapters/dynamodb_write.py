"""BatchWriteItem with request bodies built straight from the backup's item bytes.

The stock client validates and serializes every attribute of every item (2.4-5 MB/s per
core), and even with a prepared body its request path (events, endpoint rules, user agent,
urllib3) costs ~1 ms of CPU per request. Hippolyte already holds each item as DynamoDB JSON,
so it has two ways to send a batch, chosen once per restore by ``open_writer``:

- ``DirectWriter`` (the default): ``dynamodb_direct.Caller``, our own signed requests over
  keep-alive ``http.client`` connections to the endpoint botocore resolved, with the session's
  credentials as botocore refreshes them. Throttling is ``Throttled``, a 5xx, a dropped
  connection or a bad CRC32 is ``Transient``; the caller's ``retrying`` sends the same request
  again, so nothing is skipped.
- ``BotocoreWriter``, when a proxy is configured (botocore knows how to reach it): the stock
  client with a one-item placeholder whose body a ``before-call`` hook swaps for ours. The
  placeholder is an empty item, which DynamoDB rejects: if the hook ever failed to run, the call
  would fail instead of writing anything wrong.

Both return what DynamoDB left unprocessed as the items' original bytes, to be sent again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson

from hippolyte.adapters import aws, dynamodb_direct
from hippolyte.adapters.dynamodb import encode_item, table_errors
from hippolyte.core.errors import Transient

MAX_ITEMS = 25
MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    unprocessed: list[bytes]  # items to send again, as DynamoDB JSON
    consumed: float
    retries: int  # retries made inside the call (botocore's); 0 for the direct writer


class Writer(Protocol):
    def write_batch(self, *, table: str, items: list[bytes]) -> WriteResult: ...

    def close(self) -> None: ...


def request_body(table: str, items: list[bytes]) -> bytes:
    """BatchWriteItem's JSON for ``items`` (one join: no bytes built per item)."""
    if not items:
        raise ValueError("a BatchWriteItem needs at least one item")
    return b"".join(
        (
            b'{"RequestItems":{',
            orjson.dumps(table),
            b':[{"PutRequest":{"Item":',
            b'}},{"PutRequest":{"Item":'.join(items),
            b'}}]},"ReturnConsumedCapacity":"TOTAL"}',
        )
    )


def open_writer(conn: aws.Connection, *, pool: int, max_attempts: int = 10) -> Writer:
    """The direct writer, unless a proxy stands between us and the endpoint."""
    client = raw_write_client(conn, pool=pool, max_attempts=max_attempts)
    caller = dynamodb_direct.open_caller(conn, client=client)
    if caller is None:
        return BotocoreWriter(client)
    client.close()
    return DirectWriter(caller)


# --- the direct writer ---------------------------------------------------------------------------


class _Put(msgspec.Struct):
    Item: msgspec.Raw


class _Request(msgspec.Struct):
    PutRequest: _Put | None = None


class _Capacity(msgspec.Struct):
    CapacityUnits: float = 0.0


class _Answer(msgspec.Struct):
    UnprocessedItems: dict[str, list[_Request]] = {}
    ConsumedCapacity: list[_Capacity] | None = None


_answer = msgspec.json.Decoder(_Answer)


class DirectWriter:
    """BatchWriteItem through ``dynamodb_direct.Caller``."""

    def __init__(self, caller: dynamodb_direct.Caller):
        self._caller = caller

    def write_batch(self, *, table: str, items: list[bytes]) -> WriteResult:
        data = self._caller.call(
            "BatchWriteItem",
            request_body(table, items),
            table=table,
            what=f"BatchWriteItem into {table!r}",
        )
        try:
            answer = _answer.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Transient(
                f"BatchWriteItem into {table!r}: an answer that is not DynamoDB's ({exc}): "
                f"{data[:120]!r}"
            ) from exc
        left = answer.UnprocessedItems.get(table) or []
        return WriteResult(
            unprocessed=[bytes(r.PutRequest.Item) for r in left if r.PutRequest is not None],
            consumed=sum(c.CapacityUnits for c in answer.ConsumedCapacity or []),
            retries=0,
        )

    def close(self) -> None:
        self._caller.close()


# --- through botocore ----------------------------------------------------------------------------

_local = threading.local()
_PLACEHOLDER: list[dict[str, Any]] = [{"PutRequest": {"Item": {}}}]


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


class BotocoreWriter:
    """The stock client's request path (signing, retries, proxies) with our body."""

    def __init__(self, client: Any):
        self.client = client

    def write_batch(self, *, table: str, items: list[bytes]) -> WriteResult:
        _local.body = request_body(table, items)
        try:
            with table_errors(table, what=f"BatchWriteItem into {table!r}"):
                resp = self.client.batch_write_item(RequestItems={table: _PLACEHOLDER})
        finally:
            _local.body = None
        left = (resp.get("UnprocessedItems") or {}).get(table) or []
        consumed = sum(
            float(c.get("CapacityUnits") or 0) for c in resp.get("ConsumedCapacity") or []
        )
        return WriteResult(
            unprocessed=[encode_item(r["PutRequest"]["Item"]) for r in left if "PutRequest" in r],
            consumed=consumed,
            retries=int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0)),
        )

    def close(self) -> None:
        self.client.close()
