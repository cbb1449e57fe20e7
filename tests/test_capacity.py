"""Boost and revert through the journal: moto for autoscaling, DynamoDB Local for its
realistic 40,000 RCU table limit, a fault proxy for DynamoDB's daily ration of decreases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hippolyte.adapters import autoscaling, capacity, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import Connection
from hippolyte.engines.capacity import boost, entry_key, revert
from hippolyte.repo.journal import Journal
from tests.helpers import db_for
from tests.support.faults import FaultProxy
from tests.support.servers import Server

pytestmark = pytest.mark.servers


@pytest.fixture
def aas_on_moto(moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    monkeypatch.setattr("hippolyte.adapters.aws._sessions", {})
    return autoscaling.client(Connection(region="us-east-1"))


def _rcu(client: Any, table: str) -> int:
    return int(
        client.describe_table(TableName=table)["Table"]["ProvisionedThroughput"][
            "ReadCapacityUnits"
        ]
    )


def _journal(tmp_path: Path, run: str = "run-1") -> Journal:
    return Journal.open(open_storage(str(tmp_path / "repo")), run, create=True)


def test_boost_and_revert_put_autoscaling_back_exactly(
    moto_server: Server, aas_on_moto: Any, tmp_path: Path
) -> None:
    db = db_for(moto_server)
    table = db.table(rcu=10)
    resource = f"table/{table}"
    aas_on_moto.register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId=resource,
        MinCapacity=5,
        MaxCapacity=200,
        ScalableDimension=autoscaling.READ_DIMENSION,
    )
    aas_on_moto.put_scaling_policy(
        PolicyName="read-70",
        ServiceNamespace="dynamodb",
        ResourceId=resource,
        ScalableDimension=autoscaling.READ_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
            },
        },
    )
    before = autoscaling.read_scaling(aas_on_moto, table)
    assert before is not None and before["policies"][0]["PolicyName"] == "read-70"

    journal = _journal(tmp_path)
    outcome = boost(conn=db.conn, journal=journal, table=table, new_rcu=100)
    assert outcome.status == "boosted" and _rcu(db.client, table) == 100
    assert autoscaling.read_scaling(aas_on_moto, table) is None  # removed for the backup
    entry = Journal.open(journal.storage, "run-1", create=False).entries[entry_key(db.conn, table)]
    assert entry["before"]["read"] == 10 and entry["status"] == "boosted"

    (done,) = revert(Journal.open(journal.storage, "run-1", create=False))
    assert done.status == "reverted" and _rcu(db.client, table) == 10
    assert autoscaling.read_scaling(aas_on_moto, table) == before
    assert revert(Journal.open(journal.storage, "run-1", create=False)) == []  # idempotent


def test_unboosted_tables_keep_their_autoscaling(
    moto_server: Server, aas_on_moto: Any, tmp_path: Path
) -> None:
    db = db_for(moto_server)
    table = db.table(rcu=50)
    aas_on_moto.register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{table}",
        MinCapacity=5,
        MaxCapacity=100,
        ScalableDimension=autoscaling.READ_DIMENSION,
    )
    outcome = boost(conn=db.conn, journal=_journal(tmp_path), table=table, new_rcu=40)
    assert outcome.status == "not-boosted" and "not above" in outcome.note
    assert autoscaling.read_scaling(aas_on_moto, table) is not None


def test_table_limit_is_enforced_and_revert_is_safe(
    dynamodb_local: Server, aas_on_moto: Any, tmp_path: Path
) -> None:
    db = db_for(dynamodb_local)
    assert capacity.describe_limits(db.client).table_max_rcu == 40_000
    table = db.table(rcu=100)
    journal = _journal(tmp_path)
    # over the limit: the boost degrades (the backup runs at the table's own capacity)
    outcome = boost(conn=db.conn, journal=journal, table=table, new_rcu=40_001)
    assert outcome.status == "boost-failed" and "backing up at its own 100 RCU" in outcome.note
    assert _rcu(db.client, table) == 100
    assert revert(journal) == []  # put back at once: nothing left open
    (entry,) = journal.entries.values()
    assert entry["status"] == "boost-failed" and entry["before"]["read"] == 100


def test_refused_decrease_stays_pending_then_reverts(
    dynalite: Server, aas_on_moto: Any, tmp_path: Path
) -> None:
    db = db_for(dynalite)
    table = db.table(rcu=20)
    journal = _journal(tmp_path)
    assert boost(conn=db.conn, journal=journal, table=table, new_rcu=400).status == "boosted"
    key = entry_key(db.conn, table)
    target = dict(journal.entries[key]["target"])
    with FaultProxy(
        upstream=dynalite.endpoint_url, schedule=["decrease-limit"], operation="UpdateTable"
    ) as proxy:
        journal.record(key, target={**target, "endpoint_url": proxy.endpoint_url})
        (pending,) = revert(journal)
    assert pending.status == "revert-pending" and "decreases" in pending.note
    assert _rcu(db.client, table) == 400
    journal.record(key, target=target)
    (done,) = revert(Journal.open(journal.storage, "run-1", create=False))
    assert done.status == "reverted" and _rcu(db.client, table) == 20


def test_deleted_table_is_reported_gone(dynalite: Server, aas_on_moto: Any, tmp_path: Path) -> None:
    db = db_for(dynalite)
    table = db.table(rcu=20)
    journal = _journal(tmp_path)
    boost(conn=db.conn, journal=journal, table=table, new_rcu=100)
    db.client.delete_table(TableName=table)
    (outcome,) = revert(journal)
    assert outcome.status == "gone"


def test_on_demand_tables_are_not_boosted(
    dynalite: Server, aas_on_moto: Any, tmp_path: Path
) -> None:
    db = db_for(dynalite)
    table = db.table(on_demand=True)
    outcome = boost(conn=db.conn, journal=_journal(tmp_path), table=table, new_rcu=100)
    assert outcome.status == "not-boosted" and "on-demand" in outcome.note
    assert dynamodb.describe(db.client, table).on_demand
