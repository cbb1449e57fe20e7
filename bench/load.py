"""Filling a table on a local server with bench/items.py's items: BatchWriteItem from a few
threads with the stock client (loading is set-up, never measured)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

import items
from common import REGION

BATCH = 25  # BatchWriteItem's limit


def client(endpoint_url: str, *, pool: int = 8) -> Any:
    return boto3.session.Session(region_name=REGION).client(
        "dynamodb", endpoint_url=endpoint_url,
        config=Config(max_pool_connections=pool, parameter_validation=False,
                      retries={"mode": "standard", "max_attempts": 10}))


def create_table(endpoint_url: str, table: str, *, read_capacity: int,
                 write_capacity: int = 10_000) -> None:
    ddb = client(endpoint_url)
    ddb.create_table(TableName=table, KeySchema=items.KEY_SCHEMA,
                     AttributeDefinitions=items.ATTRIBUTE_DEFINITIONS,
                     ProvisionedThroughput={"ReadCapacityUnits": read_capacity,
                                            "WriteCapacityUnits": write_capacity})
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.2})


def fill(endpoint_url: str, table: str, *, count: int, threads: int = 4) -> None:
    """Items 0..count-1, in batches spread over ``threads`` writers."""
    ddb = client(endpoint_url, pool=threads * 2)

    def write(start: int) -> None:
        pending = [{"PutRequest": {"Item": items.to_client(items.item_wire(i))}}
                   for i in range(start, min(start + BATCH, count))]
        for attempt in range(20):
            answer = ddb.batch_write_item(RequestItems={table: pending})
            pending = answer.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 2.0))
        raise RuntimeError(f"{table}: {len(pending)} items never written")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(write, range(0, count, BATCH)):
            pass
