"""``revert`` takes --region/--profile/--endpoint-url/--role-arn as every other command does:
given, they replace the connection the run recorded for its tables (here DynamoDB's endpoint
moved), and the journal records the one used."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.repo.journal import Journal
from tests.helpers import db_for, run
from tests.support.servers import Server


def test_revert_reaches_the_table_where_the_options_say(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    table = db.table(rcu=5, prefix="moved")
    db.client.update_table(
        TableName=table, ProvisionedThroughput={"ReadCapacityUnits": 50, "WriteCapacityUnits": 5}
    )
    repo = tmp_path / "repo"
    journal = Journal.open(open_storage(str(repo)), "2026-11-29T00-00-00Z", create=True)
    gone = {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}  # nothing listens
    journal.record(
        f"us-east-1/{table}", table=table, target=gone, before={"read": 5}, status="boosted"
    )

    code, out, err = run(
        capsys,
        "revert",
        "--repo",
        str(repo),
        "--region",
        "us-east-1",
        "--endpoint-url",
        dynalite.endpoint_url,
        "--json",
    )
    assert code == 0, err
    assert [o["status"] for o in orjson.loads(out)] == ["reverted"]
    read = db.client.describe_table(TableName=table)["Table"]["ProvisionedThroughput"]
    assert read["ReadCapacityUnits"] == 5
    (entry,) = Journal.open(open_storage(str(repo)), journal.run_id, create=False).entries.values()
    assert entry["target"]["endpoint_url"] == dynalite.endpoint_url
    assert entry["status"] == "reverted"


def test_every_aws_option_is_in_reverts_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "revert", "--help")
    assert code == 0
    for option in ("--region", "--profile", "--endpoint-url", "--role-arn"):
        assert option in out
