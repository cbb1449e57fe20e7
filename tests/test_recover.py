"""``hippolyte recover`` end to end on DynamoDB Local and dynalite: a bad deploy (updates,
deletes and adds over a table with GSIs and the hostile corpus) put back exactly, undone
exactly; writers racing the recovery; dry runs; bad input. The table's state is compared with
the order-independent digest a restore's proof uses, and item by item by value."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.diff import key_of
from hippolyte.core.proof import digest_of
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.sample_tables import fill
from tests.corpus import nasty_items
from tests.helpers import Db, db_for, run
from tests.support.servers import Server

pytestmark = pytest.mark.servers

KEY = (("pk", "S"), ("sk", "N"))


def table_items(db: Db, table: str) -> dict[bytes, bytes]:
    """Every item of ``table`` by canonical key, as DynamoDB JSON."""
    out: dict[bytes, bytes] = {}
    for page in db.client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            raw = dynamodb.encode_item(item)
            out[key_of(orjson.loads(raw), KEY)] = raw
    return out


def digest(items: dict[bytes, bytes]) -> tuple[int, int]:
    d = digest_of(list(items.values()))
    return d.count, d.value


def make_table(db: Db, n: int = 60) -> str:
    """A table with a GSI, ordinary items and the hostile corpus."""
    name = f"rec-{random.randrange(10**9)}"
    db.client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 50, "WriteCapacityUnits": 50},
            }
        ],
        ProvisionedThroughput={"ReadCapacityUnits": 200, "WriteCapacityUnits": 200},
    )
    db.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    items: list[dict[str, Any]] = [
        {
            "pk": {"S": f"p{i % 7}"},
            "sk": {"N": str(i)},
            "g": {"S": f"g{i % 3}"},
            "v": {"N": str(i * 10)},
            "doc": {"M": {"n": {"N": "1.50"}, "l": {"L": [{"S": "x"}, {"B": b"\x00"}]}}},
            "tags": {"SS": ["a", "b"]},
        }
        for i in range(n)
    ]
    for j, nasty in enumerate(nasty_items()):
        items.append({**nasty, "pk": {"S": f"nasty{j}"}, "sk": {"N": str(j)}})
    fill(db.client, name, iter(items))
    return name


def backup(db: Db, table: str, repo: Path) -> str:
    (result,) = backup_tables(
        [table],
        conn=db.conn,
        storage=open_storage(str(repo)),
        params=BackupParams(),
        emit=lambda e: None,
    )
    assert result.ok, result.error
    return str(repo / result.ref.table / result.ref.backup_id)


def bad_deploy(db: Db, table: str, seed: int = 7) -> set[bytes]:
    """Update 10%, delete 5%, add 5% of the items; the keys it added."""
    rng = random.Random(seed)
    keys = sorted(table_items(db, table))
    rng.shuffle(keys)
    n = len(keys)
    updates, deletes = keys[: n // 10], keys[n // 10 : n // 10 + n // 20]
    for k in updates:
        pk, sk = orjson.loads(k)
        db.client.update_item(
            TableName=table,
            Key={"pk": {"S": pk}, "sk": {"N": sk}},
            UpdateExpression="SET v = :v, broken = :b",
            ExpressionAttributeValues={":v": {"N": "-1"}, ":b": {"BOOL": True}},
        )
    for k in deletes:
        pk, sk = orjson.loads(k)
        db.client.delete_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"N": sk}})
    added = set()
    for i in range(n // 20):
        item = {"pk": {"S": "new"}, "sk": {"N": str(i)}, "g": {"S": "g9"}}
        db.client.put_item(TableName=table, Item=item)
        added.add(key_of(orjson.loads(dynamodb.encode_item(item)), KEY))
    return added


@pytest.fixture(params=["dynalite", "dynamodb_local"])
def db(request: pytest.FixtureRequest) -> Db:
    server: Server = request.getfixturevalue(request.param)
    return db_for(server)


def recover(capsys: pytest.CaptureFixture[str], db: Db, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(
        capsys, "recover", *args, "--endpoint-url", db.server.endpoint_url, "--json"
    )
    assert out, err
    return code, orjson.loads(out)


def test_a_bad_deploy_is_put_back_and_undone_exactly(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db)
    ref = backup(db, table, tmp_path / "repo")
    before = table_items(db, table)
    added = bad_deploy(db, table)
    deployed = table_items(db, table)
    assert deployed != before

    code, report = recover(capsys, db, ref)
    assert code == 0, report
    assert report["proven"] is True
    assert report["skipped"] == 0
    now = table_items(db, table)
    assert {k: v for k, v in now.items() if k not in added} == before
    assert set(now) - set(before) == added  # the added items are left alone
    assert digest({k: now[k] for k in before}) == digest(before)

    code, again = recover(capsys, db, ref, "--delete-added")
    assert code == 0, again
    assert again["deleted"] == len(added) and again["put_back"] == 0
    assert digest(table_items(db, table)) == digest(before)

    # undo the second, then the first: exactly the deployed state
    for rid in (again["recovery_id"], report["recovery_id"]):
        code, undone = recover(capsys, db, "--undo", rid, "--repo", str(tmp_path / "repo"))
        assert code == 0, undone
        assert undone["proven"] is True
    assert digest(table_items(db, table)) == digest(deployed)


def test_dry_run_changes_nothing(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=30)
    ref = backup(db, table, tmp_path / "repo")
    bad_deploy(db, table)
    deployed = table_items(db, table)
    code, report = recover(capsys, db, ref, "--dry-run", "--delete-added")
    assert code == 0, report
    assert report["recovery_id"] is None and report["dry_run"] is True
    assert len(report["plan"]) > 0
    assert table_items(db, table) == deployed
    assert not (tmp_path / "repo" / "@recoveries").exists()
