"""The demo's sample tables and their items (orders with every type, sessions), also the
test suite's: varied enough to break a naive backup tool."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

ORDERS, SESSIONS, EMPTY = "demo-orders", "demo-sessions", "demo-empty"
ORDERS_KEY = (("customer", "S"), ("order", "N"))


def create_sample_tables(client: Any) -> None:
    def throughput(r: int, w: int) -> dict[str, int]:
        return {"ReadCapacityUnits": r, "WriteCapacityUnits": w}

    client.create_table(
        TableName=ORDERS,
        KeySchema=[
            {"AttributeName": "customer", "KeyType": "HASH"},
            {"AttributeName": "order", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "customer", "AttributeType": "S"},
            {"AttributeName": "order", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "placed", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "placed", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
                "ProvisionedThroughput": throughput(20, 20),
            }
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-placed",
                "KeySchema": [
                    {"AttributeName": "customer", "KeyType": "HASH"},
                    {"AttributeName": "placed", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        ProvisionedThroughput=throughput(200, 200),
    )
    client.create_table(
        TableName=SESSIONS,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "B"}],
    )
    client.create_table(
        TableName=EMPTY,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput=throughput(5, 5),
    )
    for name in (ORDERS, SESSIONS, EMPTY):
        client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(
        TableName=ORDERS, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )


def fill(client: Any, table: str, items: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == 25:
            _write(client, table, batch)
            batch = []
    if batch:
        _write(client, table, batch)


def _write(client: Any, table: str, batch: list[dict[str, Any]]) -> None:
    pending = {table: batch}
    while pending:
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


STATUSES = ["placed", "packed", "shipped", "delivered", "returned"]


def order_item(i: int) -> dict[str, Any]:
    """A varied order: every DynamoDB type, nested binary, unicode, big numbers."""
    rnd = random.Random(i)
    item: dict[str, Any] = {
        "customer": {"S": f"customer-{i % 97:03d}"},
        "order": {"N": str(i)},
        "status": {"S": STATUSES[i % len(STATUSES)]},
        "placed": {"S": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"},
        "total": {"N": f"{rnd.randint(1, 10**6)}.{rnd.randint(0, 99):02d}"},
        "precise": {"N": "1234567890123456789012345678901234567" + str(i % 10)},
        "note": {"S": rnd.choice(["", "leave at the door", "zerbrechlich ✓", "配達", "🦆" * 3])},
        "gift": {"BOOL": i % 7 == 0},
        "coupon": {"NULL": True},
        "tags": {"SS": sorted({rnd.choice("abcdefgh") for _ in range(3)})},
        "scores": {"NS": [str(n) for n in sorted({rnd.randint(-50, 50) for _ in range(3)})]},
        "thumbs": {"BS": [bytes([i % 256, 0, 255]), b"\x00"]},
        "lines": {
            "L": [
                {
                    "M": {
                        "sku": {"S": f"sku-{rnd.randint(1, 500)}"},
                        "qty": {"N": str(rnd.randint(1, 5))},
                        "sig": {"B": rnd.randbytes(8)},
                    }
                }
                for _ in range(rnd.randint(1, 4))
            ]
        },
        "address": {
            "M": {
                "city": {"S": rnd.choice(["Hatfield", "Łódź", "Zürich"])},
                "raw": {"M": {"blob": {"B": rnd.randbytes(16)}}},
            }
        },
        "payload": {"S": "x" * rnd.randint(100, 800)},
    }
    if i % 10 == 0:
        item["expires"] = {"N": str(1_900_000_000 + i)}
    return item


def session_item(i: int) -> dict[str, Any]:
    rnd = random.Random(-i - 1)
    return {
        "id": {"B": i.to_bytes(4, "big") + rnd.randbytes(4)},
        "user": {"S": f"user-{i}"},
        "data": {"B": rnd.randbytes(rnd.randint(10, 400))},
        "seen": {"L": [{"N": str(rnd.randint(0, 10**9))} for _ in range(3)]},
    }
