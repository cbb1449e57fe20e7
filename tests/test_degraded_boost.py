"""A boost that cannot happen must not cost the backup: autoscaling unreachable, or an
UpdateTable refused after autoscaling was suspended, each degrades to a backup at the table's
own capacity, with a warning in the results, the run record and the monitor's report, and
with everything the boost touched put back."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.ops.sample_tables import fill, order_item
from hippolyte.repo import runs
from tests.helpers import db_for, run
from tests.support.faults import FaultProxy
from tests.support.servers import Server
from tests.test_plan_run import ORDER_KEY, _config, _rcu

pytestmark = pytest.mark.servers


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _night(
    capsys: pytest.CaptureFixture[str], cfg: Path, repo: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    code, out, err = run(capsys, "--config", str(cfg), "monitor", "--no-notify", "--json")
    assert code == 0, err
    return doc, orjson.loads(out)


@pytest.mark.parametrize("server", ["dynamodb_local", "moto_server"])
def test_autoscaling_unreachable_backs_up_at_the_table_s_own_capacity(
    server: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ddb: Server = request.getfixturevalue(server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", _closed_port())
    monkeypatch.setattr("hippolyte.adapters.aws._sessions", {})
    db = db_for(ddb)
    table = db.table(key=ORDER_KEY, rcu=20, prefix="degraded")
    fill(db.client, table, (order_item(i) for i in range(600)))
    repo = tmp_path / "repo"
    cfg = _config(
        tmp_path, repo=repo, endpoint=ddb.endpoint_url, window_end="00:01", pipeline_s=55,
        include=table,
    )  # fmt: skip
    doc, report = _night(capsys, cfg, repo)
    (result,) = doc["results"]
    assert result["ok"] and result["item_count"] == 600
    (outcome,) = doc["runs"][0]["capacity"]
    assert outcome["status"] == "boost-failed"
    assert "backing up at its own 20 RCU" in outcome["note"]
    assert "read autoscaling" in outcome["note"]
    (warning,) = result["warnings"]
    assert "at its own 20 RCU it takes about" in warning and "after the window closes" in warning
    assert _rcu(db.client, table) == 20  # never changed
    run_id = doc["runs"][0]["run"]
    record = runs.read_result(open_storage(str(repo)), run_id)
    assert record.results[0].warnings == (warning,)  # in the run record
    (check,) = [t for t in report["reports"][0]["tables"] if t["table"] == table]
    assert check["ok"] and "warning: boost failed" in check["reason"]


def test_a_refused_update_puts_autoscaling_back_and_still_backs_up(
    dynamodb_local: Server,
    moto_server: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    monkeypatch.setattr("hippolyte.adapters.aws._sessions", {})
    db = db_for(dynamodb_local)
    table = db.table(key=ORDER_KEY, rcu=20, prefix="refused")
    fill(db.client, table, (order_item(i) for i in range(600)))
    aas = boto3.client(
        "application-autoscaling", region_name="us-east-1", endpoint_url=moto_server.endpoint_url
    )
    scaling = dict(
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{table}",
        ScalableDimension="dynamodb:table:ReadCapacityUnits",
    )
    aas.register_scalable_target(**scaling, MinCapacity=20, MaxCapacity=400)
    with FaultProxy(
        upstream=dynamodb_local.endpoint_url, operation="UpdateTable", schedule=["denied"]
    ) as proxy:
        repo = tmp_path / "repo"
        cfg = _config(
            tmp_path, repo=repo, endpoint=proxy.endpoint_url, window_end="00:01", pipeline_s=55,
            include=table,
        )  # fmt: skip
        doc, report = _night(capsys, cfg, repo)
        assert proxy.counts["denied"] >= 1, doc  # the boost did ask
    (result,) = doc["results"]
    assert result["ok"] and result["item_count"] == 600 and result["warnings"]
    assert [c["status"] for c in doc["runs"][0]["capacity"]] == ["boost-failed"]
    assert (
        "not authorized to perform: dynamodb:UpdateTable" in doc["runs"][0]["capacity"][0]["note"]
    )
    (target,) = aas.describe_scalable_targets(
        ServiceNamespace="dynamodb", ResourceIds=[f"table/{table}"]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (20, 400)  # put back as it was
    assert _rcu(db.client, table) == 20
    journal = orjson.loads(next(repo.glob("@runs/*/journal.json")).read_bytes())
    assert [e["status"] for e in journal["entries"].values()] == ["boost-failed"]
    (check,) = [t for t in report["reports"][0]["tables"] if t["table"] == table]
    assert check["ok"] and "warning: boost failed" in check["reason"]
    assert report["reports"][0]["capacity"] == []  # nothing left for the monitor to put back
