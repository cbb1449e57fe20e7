"""Planning and running the night: offline what-if plans, `backup --all` with boosts that are
always reverted, --dry-run that changes nothing, and kill -9 after a boost then `revert`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import to_plain
from hippolyte.ops.sample_tables import fill, order_item
from hippolyte.repo import runs
from tests.helpers import db_for, run
from tests.support.servers import Server

pytestmark = pytest.mark.servers
ORDER_KEY = (("customer", "S"), ("order", "N"))


def _config(
    tmp_path: Path, *, repo: Path, endpoint: str, window_end: str, pipeline_s: int, include: str
) -> Path:
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(f'''repository = "{repo}"
read_percent = 0.5
workers = 2
[[targets]]
region = "us-east-1"
endpoint_url = "{endpoint}"
[selection]
include = ["{include}"]
[planning]
window_start = "00:00"
window_end = "{window_end}"
pipeline_start_s = {pipeline_s}
table_start_s = 1
''')
    return cfg


@pytest.fixture
def aas(moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    monkeypatch.setattr("hippolyte.adapters.aws._sessions", {})


def _rcu(client: Any, table: str) -> int:
    return int(
        client.describe_table(TableName=table)["Table"]["ProvisionedThroughput"][
            "ReadCapacityUnits"
        ]
    )


def test_offline_plan_from_descriptions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = [
        {
            "TableName": "big-one",
            "TableSizeBytes": 300 * 10**9,
            "ItemCount": 1,
            "ProvisionedThroughput": {"ReadCapacityUnits": 1000, "WriteCapacityUnits": 5},
        },
        {
            "TableName": "on-demand",
            "TableSizeBytes": 10**9,
            "ItemCount": 1,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        },
        {
            "TableName": "empty-one",
            "TableSizeBytes": 0,
            "ItemCount": 0,
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        },
    ] + [
        {
            "TableName": f"small-{i:03d}",
            "TableSizeBytes": 10**6 * (i + 1),
            "ItemCount": 1,
            "ProvisionedThroughput": {"ReadCapacityUnits": 10, "WriteCapacityUnits": 5},
        }
        for i in range(40)
    ]
    path = tmp_path / "tables.json"
    path.write_bytes(orjson.dumps(tables))
    code, out, err = run(capsys, "plan", "--from-descriptions", str(path), "--format", "json")
    assert code == 0, err
    doc = orjson.loads(out)
    planned = [t["table"] for p in doc["pipelines"] for t in p["tables"]]
    assert sorted(planned) == sorted(t["TableName"] for t in tables if t["TableSizeBytes"])
    assert all(len(p["tables"]) <= 32 for p in doc["pipelines"])
    assert doc["skipped"] == [{"table": "empty-one", "reason": "empty: nothing to back up"}]
    boosted = {t["table"]: t["boost"] for p in doc["pipelines"] for t in p["tables"] if t["boost"]}
    assert "big-one" in boosted and boosted["big-one"]["new_rcu"] > 1000
    assert len(doc["pipelines"]) >= doc["lower_bound"]
    page = tmp_path / "plan.html"
    code, _, err = run(
        capsys, "plan", "--from-descriptions", str(path), "--format", "html", "--out", str(page)
    )
    assert code == 0 and "big-one" in page.read_text() and "http" not in page.read_text()
    code, out, err = run(
        capsys,
        "plan",
        "--from-descriptions",
        str(path),
        "--format",
        "datapipeline",
        "--bucket",
        "backups",
    )
    assert code == 0, err
    defs = orjson.loads(out)
    assert sum(len(d["pipelineObjects"]) for d in defs) == 3 * len(planned) + 2 * len(defs)
    code, _, err = run(capsys, "plan", "--from-descriptions", str(tmp_path / "nope.json"))
    assert code == 2 and "does not exist" in err


def test_backup_all_boosts_and_reverts(
    dynamodb_local: Server, aas: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynamodb_local)
    slow = db.table(key=ORDER_KEY, rcu=20, prefix="night-slow")
    fill(db.client, slow, (order_item(i) for i in range(600)))
    quick = db.table(
        rcu=1000, prefix="night-quick", items=[{"pk": {"S": str(i)}} for i in range(50)]
    )
    empty = db.table(rcu=5, prefix="night-empty")
    repo = tmp_path / "repo"
    cfg = _config(
        tmp_path,
        repo=repo,
        endpoint=dynamodb_local.endpoint_url,
        window_end="00:01",
        pipeline_s=55,
        include="night-",
    )

    code, out, err = run(capsys, "--config", str(cfg), "backup", "--dry-run")
    assert code == 0, err
    assert f"boost {slow} 20 -> " in out and f"revert {slow} to 20 RCU" in out
    assert f"skip {empty}" in out and not repo.exists()

    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert sorted(r["table"] for r in doc["results"]) == sorted([slow, quick])
    assert all(r["ok"] for r in doc["results"])
    statuses = [c["status"] for c in doc["runs"][0]["capacity"]]
    assert statuses == ["boosted", "reverted"]
    assert _rcu(db.client, slow) == 20
    run_dir = next((repo / "@runs").iterdir())
    journal = orjson.loads((run_dir / "journal.json").read_bytes())
    assert [e["status"] for e in journal["entries"].values()] == ["reverted"]
    assert (run_dir / "plan.json").exists() and (run_dir / "result.json").exists()
    assert journal["format"] == "hippolyte-journal/1" and journal["runId"] == run_dir.name
    storage = open_storage(str(repo))
    result = runs.read_result(storage, run_dir.name)  # the record, read back through its schema
    assert orjson.loads((run_dir / "result.json").read_bytes())["format"] == "hippolyte-result/1"
    assert [to_plain(r) for r in result.results] == doc["results"]
    assert [to_plain(c) for c in result.capacity] == doc["runs"][0]["capacity"]
    assert runs.read_plan(storage, run_dir.name)["pipelines"]
    code, out, _ = run(capsys, "--config", str(cfg), "list", "--json")
    assert {r["table"] for r in orjson.loads(out)} == {slow, quick}  # run records: no table
    code, out, _ = run(capsys, "--config", str(cfg), "revert", "--json")
    assert code == 0 and orjson.loads(out) == []  # nothing left to do: idempotent


def test_kill_9_after_boost_then_revert(
    dynamodb_local: Server,
    moto_server: Server,
    aas: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = db_for(dynamodb_local)
    table = db.table(key=ORDER_KEY, rcu=5, prefix="killed")
    fill(db.client, table, (order_item(i) for i in range(1500)))
    repo = tmp_path / "repo"
    cfg = _config(
        tmp_path,
        repo=repo,
        endpoint=dynamodb_local.endpoint_url,
        window_end="00:01",
        pipeline_s=10,
        include="killed-",
    )
    env = {**os.environ, "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": moto_server.endpoint_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "--config", str(cfg), "backup", "--all", "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    boosted = False
    while time.monotonic() < deadline and not boosted:
        for journal in repo.glob("@runs/*/journal.json"):
            entries = orjson.loads(journal.read_bytes())["entries"].values()
            boosted = any(e.get("status") == "boosted" for e in entries)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert boosted and _rcu(db.client, table) > 5, "the kill should land during the boost"
    code, out, err = run(capsys, "--config", str(cfg), "revert", "--json")
    assert code == 0, err
    assert [o["status"] for o in orjson.loads(out)] == ["reverted"]
    assert _rcu(db.client, table) == 5
