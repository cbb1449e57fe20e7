"""Helpers shared by the data-path tests: tables on a real local server, the CLI in-process,
and reading a backup back."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from hippolyte import cli
from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import Storage
from hippolyte.core.model import BackupRef
from hippolyte.ops.sample_tables import fill
from hippolyte.repo.catalog import load_descriptor
from tests.support.servers import Server

_names = itertools.count()


@dataclass
class Db:
    server: Server
    client: Any

    @property
    def conn(self) -> aws.Connection:
        return aws.Connection(region="us-east-1", endpoint_url=self.server.endpoint_url)

    def table(
        self,
        *,
        key: Sequence[tuple[str, str]] = (("pk", "S"),),
        rcu: int = 1000,
        wcu: int = 1000,
        on_demand: bool = False,
        items: Sequence[dict[str, Any]] = (),
        prefix: str = "t",
    ) -> str:
        name = f"{prefix}-{next(_names)}"
        kinds = ["HASH", "RANGE"]
        spec: dict[str, Any] = {
            "TableName": name,
            "KeySchema": [
                {"AttributeName": k, "KeyType": kinds[i]} for i, (k, _) in enumerate(key)
            ],
            "AttributeDefinitions": [{"AttributeName": k, "AttributeType": t} for k, t in key],
        }
        if on_demand:
            spec["BillingMode"] = "PAY_PER_REQUEST"
        else:
            spec["ProvisionedThroughput"] = {"ReadCapacityUnits": rcu, "WriteCapacityUnits": wcu}
        self.client.create_table(**spec)
        self.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
        if items:
            fill(self.client, name, iter(items))
        return name

    def stock_items(self, table: str) -> list[dict[str, Any]]:
        """Every item through the stock boto3 client (items parsed by botocore)."""
        out: list[dict[str, Any]] = []
        for page in self.client.get_paginator("scan").paginate(TableName=table):
            out += page["Items"]
        return out


def db_for(server: Server) -> Db:
    conn = aws.Connection(region="us-east-1", endpoint_url=server.endpoint_url)
    return Db(server=server, client=dynamodb.control_client(conn))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        cli.main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def backup_lines(storage: Storage, ref: BackupRef) -> list[bytes]:
    """Every data line of a committed backup, via its descriptor's file list."""
    lines: list[bytes] = []
    for f in load_descriptor(storage, ref)["files"]:
        data = gzip.decompress(storage.get_bytes(ref.prefix + f.key))
        lines += data.splitlines()
    return lines


def backup_items(storage: Storage, ref: BackupRef) -> list[dict[str, Any]]:
    items = []
    for line in backup_lines(storage, ref):
        doc = orjson.loads(line)
        assert list(doc) == ["Item"]
        items.append(doc["Item"])
    return items
