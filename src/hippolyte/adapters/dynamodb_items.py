"""Single items of a live table: conditional PutItem and DeleteItem sent from the items' own
bytes, consistent BatchGetItem and Query whose items come back as DynamoDB JSON bytes.

PutItem and DeleteItem go through the stock client (signing, retries, proxies, error parsing)
with a placeholder whose body a ``before-call`` hook swaps for ours, built from the item's
DynamoDB JSON as read: nothing is converted to Python and back. The placeholder is an empty
item, which DynamoDB rejects: if the hook ever failed to run, the call would fail instead of
writing anything wrong. A failed condition is an answer (``False``), not an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import orjson

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import decode_key, encode_item, table_errors
from hippolyte.core.errors import AwsError
from hippolyte.core.model import Json
from hippolyte.core.recovery import Condition

MAX_GET_KEYS = 100  # BatchGetItem
_OPERATIONS = ("PutItem", "DeleteItem")
_local = threading.local()


def item_client(conn: aws.Connection, *, pool: int, max_attempts: int = 10) -> Any:
    """A DynamoDB client whose PutItem and DeleteItem bodies are ours (``put``, ``delete``)."""
    client = aws.client(
        conn, "dynamodb", pool=pool, max_attempts=max_attempts, parameter_validation=False
    )
    for operation in _OPERATIONS:
        client.meta.events.register(f"before-call.dynamodb.{operation}", _swap_body)
    return client


def _swap_body(params: dict[str, Any], **_: Any) -> None:
    body = getattr(_local, "body", None)
    if body is None:
        raise RuntimeError("a raw PutItem/DeleteItem called without a prepared body")
    params["body"] = body
    _local.body = None


def _body(table: str, field: str, data: bytes, condition: Condition | None) -> bytes:
    parts = [b'{"TableName":', orjson.dumps(table), b',"', field.encode(), b'":', data]
    if condition is not None:
        parts += [
            b',"ConditionExpression":',
            orjson.dumps(condition.expression),
            b',"ExpressionAttributeNames":',
            orjson.dumps(condition.names),
        ]
        if condition.values:
            parts += [b',"ExpressionAttributeValues":', orjson.dumps(condition.values)]
    parts.append(b',"ReturnValues":"ALL_OLD","ReturnConsumedCapacity":"TOTAL"}')
    return b"".join(parts)


@dataclass(frozen=True)
class Written:
    units: float  # write units consumed
    old: bytes | None  # the item the write replaced (ALL_OLD), None if there was none


def put(client: Any, *, table: str, item: bytes, condition: Condition | None) -> Written | None:
    """PutItem of ``item`` (DynamoDB JSON) if ``condition`` holds: what it replaced, or None
    when the condition failed."""
    _local.body = _body(table, "Item", item, condition)
    return _call(table, "PutItem", lambda: client.put_item(TableName=table, Item={}))


def delete(client: Any, *, table: str, key: bytes, condition: Condition | None) -> Written | None:
    """DeleteItem of ``key`` if ``condition`` holds; as ``put``."""
    _local.body = _body(table, "Key", key, condition)
    return _call(table, "DeleteItem", lambda: client.delete_item(TableName=table, Key={}))


def _call(table: str, what: str, send: Callable[[], Any]) -> Written | None:
    """``send`` the prepared body (the placeholder's is swapped for it)."""
    try:
        with table_errors(table, what=f"{what} on {table!r}"):
            try:
                resp = send()
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return None
                raise
    finally:
        _local.body = None
    old = resp.get("Attributes")
    return Written(
        units=float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0),
        old=encode_item(old) if old else None,
    )


def get_many(client: Any, *, table: str, keys: list[bytes]) -> list[bytes]:
    """Strongly consistent reads of up to 100 keys (DynamoDB JSON bytes): the items found,
    in no particular order. Unprocessed keys are asked again until none is left."""
    if len(keys) > MAX_GET_KEYS:
        raise ValueError(f"at most {MAX_GET_KEYS} keys per BatchGetItem")
    wanted = [decode_key(orjson.loads(k)) for k in keys]
    found: list[Json] = []
    while wanted:
        with table_errors(table, what=f"BatchGetItem on {table!r}"):
            resp = client.batch_get_item(
                RequestItems={table: {"Keys": wanted, "ConsistentRead": True}}
            )
        found += (resp.get("Responses") or {}).get(table) or []
        wanted = ((resp.get("UnprocessedKeys") or {}).get(table) or {}).get("Keys") or []
    return [encode_item(item) for item in found]


def query_partition(
    client: Any, *, table: str, name: str, value: Json, consistent: bool = True
) -> Iterator[tuple[bytes, float]]:
    """Every item of one partition (``name`` = ``value``, DynamoDB JSON) and the read units
    of the page it came in (on the page's first item; 0 on the others)."""
    start: Json | None = None
    while True:
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "#k = :v",
            "ExpressionAttributeNames": {"#k": name},
            "ExpressionAttributeValues": {":v": decode_key({name: value})[name]},
            "ConsistentRead": consistent,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        with table_errors(table, what=f"Query on {table!r}"):
            try:
                resp = client.query(**kwargs)
            except botocore.exceptions.ParamValidationError as exc:
                raise AwsError(f"Query on {table!r}: {exc}") from exc
        units = float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
        for item in resp.get("Items") or []:
            yield encode_item(item), units
            units = 0.0
        start = resp.get("LastEvaluatedKey")
        if not start:
            return
