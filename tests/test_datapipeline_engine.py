"""`--engine datapipeline` on moto: `backup --all` creates, defines and activates one AWS Data
Pipeline per planned pipeline and records them in the run's journal; `monitor` reports tables
of running pipelines as running, then (pipelines done) checks each table's EMR connector
export, deletes the pipelines and reverts capacity; `restore` loads such an export.

moto keeps an activated pipeline SCHEDULED forever and has no API to change a pipeline's
state, so the "pipelines finished" step replaces the adapter's state reader
(``hippolyte.adapters.datapipeline.states``) with one that asks moto, then says FINISHED for
every pipeline moto still has. Everything else talks to moto: Data Pipeline, DynamoDB, S3,
Application Auto Scaling.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.exceptions
import orjson
import pytest

from hippolyte.adapters import aws
from hippolyte.adapters import datapipeline as dp_api
from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core import pipeline_defs as datapipeline
from hippolyte.core.errors import DataPipelineUnavailable
from hippolyte.ops.monitor import monitor, window_closes
from hippolyte.ops.sample_tables import order_item
from tests.format_fixtures import write_datapipeline_export
from tests.helpers import db_for, run
from tests.support.servers import Server

ORDER_KEY = (("customer", "S"), ("order", "N"))
ORDERS = [order_item(i) for i in range(200)]


@pytest.fixture
def on_moto(moto_server: Server, make_s3_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    bucket = make_s3_bucket(moto_server)  # also points AWS_ENDPOINT_URL_S3 at moto
    # botocore's variable for the service id "Data Pipeline"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DATA_PIPELINE", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    monkeypatch.setattr(aws, "_sessions", {})
    return bucket


def _config(tmp_path: Path, *, repo: str, endpoint: str, tables: list[str]) -> Path:
    """A one-minute window so that the slow table needs a boost; one table per pipeline."""
    include = ", ".join(f'"{t}$"' for t in tables)
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(f'''repository = "{repo}"
engine = "datapipeline"
read_percent = 0.5
[[targets]]
region = "us-east-1"
endpoint_url = "{endpoint}"
[selection]
include = [{include}]
[planning]
window_start = "00:00"
window_end = "00:01"
pipeline_start_s = 55
table_start_s = 1
max_tables_per_pipeline = 1
[datapipeline]
subnet_id = "subnet-0123abcd"
''')
    return cfg


def _rcu(client: Any, table: str) -> int:
    desc = client.describe_table(TableName=table)["Table"]
    return int(desc["ProvisionedThroughput"]["ReadCapacityUnits"])


def _journal(storage: Storage, run_id: str) -> dict[str, Any]:
    entries: dict[str, Any] = orjson.loads(storage.get_bytes(f"@runs/{run_id}/journal.json"))[
        "entries"
    ]
    return entries


def _fields(obj: dict[str, Any]) -> dict[str, str]:
    return {f["key"]: f.get("stringValue") or f.get("refValue") for f in obj["fields"]}


@pytest.mark.servers
def test_pipelines_started_monitored_and_restored(
    moto_server: Server,
    on_moto: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = db_for(moto_server)
    slow = db.table(key=ORDER_KEY, rcu=1, items=ORDERS, prefix="dpslow")
    quick = db.table(rcu=1000, items=[{"pk": {"S": str(i)}} for i in range(50)], prefix="dpquick")
    repo = f"{on_moto.url}/night"
    cfg = _config(tmp_path, repo=repo, endpoint=moto_server.endpoint_url, tables=[slow, quick])

    # backup --all: one pipeline per planned pipeline, created, defined, activated
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    run_id = doc["runs"][0]["run"]
    results = {r["table"]: r for r in doc["results"]}
    assert sorted(results) == sorted([slow, quick])
    assert all(r["ok"] and r["started_in"].startswith("Data Pipeline df-") for r in doc["results"])
    assert [c["status"] for c in doc["runs"][0]["capacity"]] == ["boosted"]
    boosted = _rcu(db.client, slow)
    assert boosted > 1  # boosted for the night; reverted only once its pipeline is done

    storage = open_storage(repo)
    plan = orjson.loads(storage.get_bytes(f"@runs/{run_id}/plan.json"))
    journal = _journal(storage, run_id)
    pipelines = {k: e for k, e in journal.items() if k.startswith("pipeline/")}
    assert len(pipelines) == len(plan["pipelines"]) == 2
    assert all(e["status"] == "activated" for e in pipelines.values())
    by_table = {e["tables"][0]: e for e in pipelines.values()}
    assert by_table[slow]["folders"] == {slow: f"{repo}/{slow}/{run_id}/"}
    assert results[slow]["started_in"] == f"Data Pipeline {by_table[slow]['pipelineId']}"

    dp = dp_api.client(aws.Connection(region="us-east-1"))
    ids = [e["pipelineId"] for e in pipelines.values()]
    states = dp_api.states(dp, ids)
    assert {s.state for s in states.values() if s} == {"SCHEDULED"}  # moto: activated
    objects = dp.get_pipeline_definition(pipelineId=by_table[slow]["pipelineId"])
    fields = {o["id"]: _fields(o) for o in objects["pipelineObjects"]}
    assert fields[f"S3BackupLocation.{slow}"]["directoryPath"] == f"{repo}/{slow}/{run_id}"
    share = fields[f"DDBSourceTable.{slow}"]["readThroughputPercent"]
    assert float(share) == pytest.approx(1 - 1 / boosted, abs=0.01)  # the backup's share
    assert fields["EmrClusterForBackup"]["subnetId"] == "subnet-0123abcd"
    assert f"{repo}/@runs/{run_id}/datapipeline-logs" == fields["Default"]["pipelineLogUri"]

    # the pipelines still run: not a failure inside the window, a failure after it
    closes = window_closes(plan, run_id)
    running = monitor(
        storage,
        target="t",
        run_id=run_id,
        backup_cron="10 0 * * *",
        now=closes - dt.timedelta(seconds=1),
    )
    assert running.ok and not running.failed and len(running.running) == 2
    assert all("still running in Data Pipeline df-" in t.reason for t in running.tables)
    assert _rcu(db.client, slow) == boosted  # never reverted under a running export
    code, out, err = run(capsys, "--config", str(cfg), "revert", "--run", run_id, "--json")
    assert code == 0, err
    (kept,) = orjson.loads(out)
    assert (kept["table"], kept["status"]) == (slow, "still-running")
    assert "SCHEDULED" in kept["note"] and "--force" in kept["note"]
    assert _rcu(db.client, slow) == boosted  # revert leaves it to the monitor too
    late = monitor(
        storage, target="t", run_id=run_id, backup_cron="10 0 * * *", now=closes + dt.timedelta(1)
    )
    assert not late.ok and len(late.failed) == 2 and not late.running
    assert "after the window closes" in late.failed[0].reason
    assert set(dp_api.states(dp, ids)) == set(ids)  # nothing deleted while running

    # the EMR connector exported one table; then every pipeline finishes
    write_datapipeline_export(storage, f"{slow}/{run_id}/", ORDERS, items_per_file=80)
    real_states = dp_api.states

    def finished(client: Any, pipeline_ids: Any) -> dict[str, dp_api.PipelineState | None]:
        return {
            pid: dp_api.PipelineState(state="FINISHED", health="HEALTHY") if state else None
            for pid, state in real_states(client, pipeline_ids).items()
        }

    monkeypatch.setattr(dp_api, "states", finished)
    code, out, err = run(
        capsys, "--config", str(cfg), "monitor", "--run", run_id, "--no-notify", "--json"
    )
    assert code == 1, err  # the quick table has no export
    (report,) = orjson.loads(out)["reports"]
    checks = {c["table"]: c for c in report["tables"]}
    assert checks[slow]["ok"] and checks[slow]["reason"].startswith(f"committed {run_id}")
    assert checks[slow]["backup"] == f"{slow}/{run_id}"
    assert not checks[quick]["ok"] and not checks[quick]["running"]
    assert f"no export in {repo}/{quick}/{run_id}/" in checks[quick]["reason"]
    assert "FINISHED (health HEALTHY), deleted" in checks[quick]["reason"]
    assert [line.split(":")[1].split()[0] for line in report["capacity"]] == ["reverted"]
    assert _rcu(db.client, slow) == 1
    assert real_states(dp, ids) == dict.fromkeys(ids)  # deleted from Data Pipeline
    journal = _journal(storage, run_id)
    assert {journal[k]["status"] for k in pipelines} == {"deleted"}
    assert {journal[k]["state"] for k in pipelines} == {"FINISHED"}

    # again: idempotent, nothing left to delete or revert
    code, out, err = run(
        capsys, "--config", str(cfg), "monitor", "--run", run_id, "--no-notify", "--json"
    )
    (again,) = orjson.loads(out)["reports"]
    assert code == 1 and again["tables"] == report["tables"] and again["capacity"] == []

    # the export is listed as a committed backup and restores
    code, out, err = run(capsys, "list", slow, "--repo", repo, "--json")
    assert code == 0, err
    assert [(r["id"], r["status"]) for r in orjson.loads(out)] == [(run_id, "complete")]
    code, out, err = run(
        capsys,
        "restore",
        f"{slow}/{run_id}",
        "--repo",
        repo,
        "--table",
        f"{slow}-restored",
        "--key",
        "customer:S,order:N",
        "--endpoint-url",
        moto_server.endpoint_url,
        "--json",
    )
    assert code == 0, err
    restored = orjson.loads(out)
    assert restored["itemsWritten"] == len(ORDERS) and restored["proof"]["ok"]


@pytest.mark.servers
def test_a_run_killed_before_activation_is_cleaned_up_by_the_monitor(
    moto_server: Server,
    on_moto: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = db_for(moto_server)
    slow = db.table(key=ORDER_KEY, rcu=1, items=ORDERS, prefix="dpkill")
    repo = f"{on_moto.url}/night"
    cfg = _config(tmp_path, repo=repo, endpoint=moto_server.endpoint_url, tables=[slow])

    def killed(dp: Any, pipeline_id: str) -> None:
        raise KeyboardInterrupt  # the process dies between "activating" and the call

    monkeypatch.setattr(dp_api, "activate", killed)
    code, _, err = run(capsys, "--config", str(cfg), "backup", "--all")
    assert code == 130, err
    assert _rcu(db.client, slow) > 1  # boosted, and left so by the kill
    storage = open_storage(repo)
    (run_id,) = storage.list_dirs("@runs/")
    entry = _journal(storage, run_id)["pipeline/1"]
    assert entry["status"] == "activating"
    dp = dp_api.client(aws.Connection(region="us-east-1"))
    assert dp_api.states(dp, [entry["pipelineId"]])[entry["pipelineId"]] is not None

    code, out, err = run(
        capsys, "--config", str(cfg), "monitor", "--run", run_id, "--no-notify", "--json"
    )
    assert code == 1, err
    (check,) = orjson.loads(out)["reports"][0]["tables"]
    assert not check["ok"] and "never activated" in check["reason"]
    assert _rcu(db.client, slow) == 1
    assert dp_api.states(dp, [entry["pipelineId"]]) == {entry["pipelineId"]: None}  # deleted
    assert _journal(storage, run_id)["pipeline/1"]["status"] == "failed"


@pytest.mark.servers
def test_revert_force_puts_capacity_back_under_a_running_pipeline(
    moto_server: Server, on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(moto_server)
    slow = db.table(key=ORDER_KEY, rcu=1, items=ORDERS, prefix="dpforce")
    cfg = _config(
        tmp_path, repo=f"{on_moto.url}/night", endpoint=moto_server.endpoint_url, tables=[slow]
    )
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    assert _rcu(db.client, slow) > 1
    code, out, err = run(capsys, "--config", str(cfg), "revert", "--force", "--json")
    assert code == 0, err
    assert [(o["table"], o["status"]) for o in orjson.loads(out)] == [(slow, "reverted")]
    assert _rcu(db.client, slow) == 1


@pytest.fixture
def refusing_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Data Pipeline endpoint answering every call as AWS answers an account that may not
    use the service: 400 AccessDeniedException."""

    class Refuse(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = orjson.dumps(
                {
                    "__type": "AccessDeniedException",
                    "message": "User is not authorized to perform datapipeline:CreatePipeline",
                }
            )
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DATA_PIPELINE", url)
    monkeypatch.setattr(aws, "_sessions", {})
    yield url
    server.shutdown()
    server.server_close()


@pytest.mark.servers
def test_an_account_without_data_pipeline_gets_a_clear_error(
    moto_server: Server,
    on_moto: Any,
    refusing_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = db_for(moto_server)
    slow = db.table(key=ORDER_KEY, rcu=1, items=ORDERS, prefix="dpno")
    repo = f"{on_moto.url}/night"
    cfg = _config(tmp_path, repo=repo, endpoint=moto_server.endpoint_url, tables=[slow])
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all")
    assert code == 7, err
    assert "closed Data Pipeline to new customers on 2024-07-25" in err
    assert "AccessDeniedException" in err and "Traceback" not in err
    assert _rcu(db.client, slow) == 1  # the pipeline is created before any boost
    storage = open_storage(repo)
    (run_id,) = storage.list_dirs("@runs/")
    (entry,) = _journal(storage, run_id).values()
    assert entry["status"] == "failed" and "2024-07-25" in entry["note"]


@pytest.mark.servers
def test_a_local_repository_or_named_tables_are_refused(
    moto_server: Server, on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(moto_server)
    table = db.table(items=[{"pk": {"S": "a"}}], prefix="dplocal")
    repo = tmp_path / "repo"
    cfg = _config(tmp_path, repo=str(repo), endpoint=moto_server.endpoint_url, tables=[table])
    code, _, err = run(capsys, "--config", str(cfg), "backup", "--all")
    assert code == 2 and "needs an s3:// repository" in err
    assert not (repo / "@runs").exists()
    code, _, err = run(capsys, "--config", str(cfg), "backup", table)
    assert code == 2 and "backup --all" in err


def test_definitions_write_into_the_repository_prefix() -> None:
    plan = {
        "settings": {"read_percent": 0.5},
        "pipelines": [
            {
                "index": 1,
                "total_s": 700,
                "tables": [{"table": "orders", "boost": None, "estimate": {"size_bytes": 10}}],
            }
        ],
    }
    (defn,) = datapipeline.definitions(
        plan, bucket="s3://backups/", prefix="/prod/eu/", timestamp="2026-11-22-00-10-00"
    )
    paths = [
        f["stringValue"]
        for o in defn["pipelineObjects"]
        for f in o["fields"]
        if f["key"] == "directoryPath"
    ]
    assert paths == ["s3://backups/prod/eu/orders/2026-11-22-00-10-00"]
    assert datapipeline.validate(defn) == []


def test_unreachable_or_refused_data_pipeline_is_unavailable() -> None:
    gone = botocore.exceptions.EndpointConnectionError(
        endpoint_url="https://datapipeline.eu-north-1.amazonaws.com/"
    )
    assert isinstance(dp_api.unavailable(gone, what="create"), DataPipelineUnavailable)
    refused = botocore.exceptions.ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "CreatePipeline"
    )
    error = dp_api.unavailable(refused, what="create pipeline x")
    assert error is not None and "2024-07-25" in str(error) and "iam:PassRole" in str(error)
    other = botocore.exceptions.ClientError(
        {"Error": {"Code": "InvalidRequestException", "Message": "bad field"}}, "CreatePipeline"
    )
    assert dp_api.unavailable(other, what="create") is None
