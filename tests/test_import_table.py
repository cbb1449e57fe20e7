"""`restore --engine import|auto`: DynamoDB's ImportTable over exactly a backup's data files
(moto server: its DynamoDB imports from its own S3), the same proof as a load, and what
ImportTable cannot do said before anything starts."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.core.restore_engine import GB, Prices, RestoreFacts, choose
from hippolyte.engines.segment import DataFileWriter
from hippolyte.repo import manifest, writer
from tests.helpers import run
from tests.support.servers import Server, s3_client

pytestmark = pytest.mark.servers
REGION = "us-east-1"


def _ddb(server: Server) -> Any:
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )


def _desc(table: str, *, gsi: bool = False, lsi: bool = False) -> dict[str, Any]:
    desc: dict[str, Any] = {
        "TableName": table,
        "TableArn": f"arn:aws:dynamodb:{REGION}:123456789012:table/{table}",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ]
        + ([{"AttributeName": "g", "AttributeType": "S"}] if gsi or lsi else []),
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    }
    if gsi:
        desc["GlobalSecondaryIndexes"] = [
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            }
        ]
    if lsi:
        desc["LocalSecondaryIndexes"] = [
            {
                "IndexName": "by-pk-g",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "g", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ]
    return desc


def _backup(repo: str, table: str, lines: list[list[bytes]], **shape: bool) -> str:
    """A committed backup of ``table`` in ``repo`` (one data file per list of item lines)."""
    storage = open_storage(repo)
    start = dt.datetime(2026, 11, 28, 0, 10, tzinfo=dt.UTC)
    ref = BackupRef(repo=storage.url, table=table, backup_id=manifest.backup_id(start))
    files = []
    for n, items in enumerate(lines):
        out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(n, 0))
        out.write_items(items)
        files.append(out.commit())
    writer.commit(
        storage,
        ref=ref,
        info=TableInfo.from_description(_desc(table, **shape)),
        extras={"tags": {"team": "orders"}},
        files=files,
        start=start,
        end=start + dt.timedelta(minutes=3),
        run={},
        consumed=0.0,
        source={},
    )
    return f"{table}/{ref.backup_id}"


def _item(i: int, text: str = "v") -> bytes:
    return orjson.dumps(
        {"pk": {"S": f"p{i % 7}"}, "sk": {"N": str(i)}, "g": {"S": f"g{i % 3}"}, "v": {"S": text}}
    )


@pytest.fixture
def bucket(moto_server: Server, use_s3: Callable[[Server], None]) -> str:
    use_s3(moto_server)
    name = f"imports-{uuid.uuid4().hex[:10]}"
    s3_client(moto_server).create_bucket(Bucket=name)
    return name


def _restore(
    capsys: pytest.CaptureFixture[str], server: Server, repo: str, ref: str, *args: str
) -> tuple[int, str, str]:
    return run(
        capsys, "restore", ref, "--repo", repo, "--endpoint-url", server.endpoint_url,
        "--region", REGION, *args,
    )  # fmt: skip


def test_import_restores_exactly_and_is_proven(
    moto_server: Server, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"s3://{bucket}/nightly"
    table = f"orders-{uuid.uuid4().hex[:6]}"
    ref = _backup(
        repo,
        table,
        [[_item(i) for i in range(0, 120)], [_item(i) for i in range(120, 250)]],
        gsi=True,
    )
    target = f"{table}-imported"
    code, out, err = _restore(
        capsys, moto_server, repo, ref, "--table", target, "--engine", "import", "--json"
    )
    assert code == 0, err
    doc = orjson.loads(out.strip().splitlines()[-1])
    assert doc["engine"] == "import" and doc["importArn"].startswith("arn:aws:dynamodb:")
    assert f"import started: {doc['importArn']}" in err  # said as soon as it started
    assert doc["proof"]["ok"] and doc["proof"]["table"]["items"] == 250
    assert doc["itemsWritten"] == 250
    ddb = _ddb(moto_server)
    desc = ddb.describe_table(TableName=target)["Table"]
    assert [g["IndexName"] for g in desc["GlobalSecondaryIndexes"]] == ["by-g"]
    assert desc["ProvisionedThroughput"]["ReadCapacityUnits"] == 5  # the backed-up capacity
    tags = ddb.list_tags_of_resource(ResourceArn=desc["TableArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "orders"}]
    again = _restore(capsys, moto_server, repo, ref, "--table", target, "--engine", "import")
    assert again[0] == 2 and "only creates a new table, and the target exists" in again[2]


def test_the_proof_catches_what_moto_s_import_alters(
    moto_server: Server, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto's JSON reader leaves \\uXXXX escapes undecoded: a non-ASCII value comes back
    altered, the import says COMPLETED, and only the proof tells."""
    repo = f"s3://{bucket}"
    table = f"names-{uuid.uuid4().hex[:6]}"
    escaped = b'{"pk":{"S":"p0"},"sk":{"N":"1"},"g":{"S":"g"},"v":{"S":"Ren\\u00e9e"}}'
    ref = _backup(repo, table, [[_item(i) for i in range(2, 40)] + [escaped]])
    code, out, err = _restore(
        capsys, moto_server, repo, ref, "--table", f"{table}-x", "--engine", "import", "--json"
    )
    assert code == 1, (out, err)
    assert "differs from the backup" in err and "(import arn:aws:dynamodb:" in err
    doc = orjson.loads(out.strip().splitlines()[-1])
    assert not doc["proof"]["ok"] and doc["proof"]["table"]["items"] == 39  # counts agree
    got = _ddb(moto_server).get_item(
        TableName=f"{table}-x", Key={"pk": {"S": "p0"}, "sk": {"N": "1"}}
    )
    assert got["Item"]["v"]["S"] != "Renée"  # what moto made of it


def test_a_failed_import_names_its_arn_and_leaves_the_table(
    moto_server: Server, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"s3://{bucket}"
    table = f"typed-{uuid.uuid4().hex[:6]}"
    too_big = _item(9, "x" * 410_000)  # over DynamoDB's 400 KB: the import refuses the item
    ref = _backup(repo, table, [[_item(1), too_big]])
    code, out, err = _restore(
        capsys, moto_server, repo, ref, "--table", f"{table}-x", "--engine", "import"
    )
    assert code == 1, (out, err)
    assert "ended FAILED with 1 item errors" in err and "arn:aws:dynamodb:" in err
    assert "left as it is (never deleted)" in err
    assert _ddb(moto_server).describe_table(TableName=f"{table}-x")["Table"]["TableName"]


def test_what_import_cannot_do_is_said_before_anything_starts(
    moto_server: Server, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_repo, local_repo = f"s3://{bucket}", str(tmp_path / "repo")
    table = f"shapes-{uuid.uuid4().hex[:6]}"
    lsi_ref = _backup(s3_repo, table, [[_item(i) for i in range(30)]], lsi=True)
    local_ref = _backup(local_repo, table, [[_item(i) for i in range(30)]])
    ddb = _ddb(moto_server)
    before = set(ddb.list_tables()["TableNames"])

    code, out, err = _restore(
        capsys, moto_server, s3_repo, lsi_ref, "--table", "tbl-1", "--engine", "import"
    )
    assert code == 2 and "cannot create local secondary indexes (1)" in err, err
    code, out, err = _restore(
        capsys, moto_server, local_repo, local_ref, "--table", "tbl-2", "--engine", "import"
    )
    assert code == 2 and "the backup is not in S3" in err, err
    code, out, err = _restore(
        capsys, moto_server, s3_repo, lsi_ref, "--table", "tbl-3", "--dry-run", "--json"
    )
    assert code == 0, err
    plan = orjson.loads(out)
    assert plan["engine"] == "load" and "local secondary indexes" in plan["reason"]
    assert plan["estimatedCost"]["loadWriteUnits"] == 30
    assert set(ddb.list_tables()["TableNames"]) == before  # nothing created

    # auto over the threshold (0 GB here): import; and the load path still works
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text("[restore]\nimport_threshold_gb = 0\n")
    plain = _backup(s3_repo, f"{table}-p", [[_item(i) for i in range(30)]])
    code, out, err = run(
        capsys, "--config", str(cfg), "restore", plain, "--repo", s3_repo, "--table", f"{table}-a",
        "--endpoint-url", moto_server.endpoint_url, "--region", REGION, "--json",
    )  # fmt: skip
    assert code == 0, err
    assert orjson.loads(out.strip().splitlines()[-1])["engine"] == "import"
    code, out, err = _restore(
        capsys, moto_server, s3_repo, plain, "--table", f"{table}-l", "--json"
    )
    assert code == 0, err
    doc = orjson.loads(out.strip().splitlines()[-1])
    assert doc["engine"] == "load" and "under the import threshold" in doc["reason"]
    assert doc["proof"]["ok"]


def _facts(**over: Any) -> RestoreFacts:
    base: dict[str, Any] = dict(
        requested="auto", target_exists=False, into_existing=False, resume=False,
        s3_repository=True, import_format=True, local_indexes=0, global_indexes=1,
        replays_changes=False, raw_bytes=5 * GB, items=5_000_000,
    )  # fmt: skip
    return RestoreFacts(**{**base, **over})


def test_the_choice_and_its_costs() -> None:
    choice = choose(_facts())
    assert choice.engine == "import"
    # 5 GB at $0.15; 5M items of ~1.07 KB -> 2 WRU each, twice (table + GSI) -> 20M WRU
    assert choice.import_cost == pytest.approx(0.75)
    assert choice.write_units == 20_000_000 and choice.load_cost == pytest.approx(12.5)
    for over, why in [
        ({"target_exists": True}, "only creates a new table"),
        ({"replays_changes": True}, "replays change sets"),
        ({"import_format": False}, "not DynamoDB JSON lines"),
        ({"raw_bytes": GB // 2}, "under the import threshold"),
    ]:
        got = choose(_facts(**over))
        assert got.engine == "load" and why in got.reason, (over, got.reason)
    assert choose(_facts(raw_bytes=GB // 2), Prices(import_threshold_gb=0.1)).engine == "import"
