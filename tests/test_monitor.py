"""Monitor and status against a real run on dynalite: exact table matching, incomplete and
missing backups, "nothing ran", RPO and coverage."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.ops.monitor import expected_since, monitor
from hippolyte.repo import proofs, runs
from tests.helpers import db_for, run
from tests.support.servers import Server
from tests.support.webhook import webhook

pytestmark = pytest.mark.servers


@pytest.fixture
def night(
    dynalite: Server,
    moto_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, str]:
    """A completed `backup --all` of three tables: orders, orders-archive, orders-x."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    db = db_for(dynalite)
    stem = f"mon{tmp_path.name[-6:].replace('_', '')}"
    names = {}
    for suffix in ("orders", "orders-archive", "orders-x"):
        name = f"{stem}-{suffix}"
        db.client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": 100, "WriteCapacityUnits": 100},
        )
        db.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
        db.client.put_item(TableName=name, Item={"pk": {"S": "a"}})
        names[suffix] = name
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp_path / "repo"}"\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{dynalite.endpoint_url}"\n[selection]\n'
        f'include = ["{stem}-"]\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--all", "--json")
    assert code == 0, err
    return {"config": str(cfg), "repo": str(tmp_path / "repo"), **names}


def test_monitor_matches_tables_exactly(night: dict[str, str]) -> None:
    storage = open_storage(night["repo"])
    # break `orders` only: its backup loses _SUCCESS; `orders-x` loses its backup entirely
    orders = Path(night["repo"]) / night["orders"]
    (next(orders.iterdir()) / "_SUCCESS").unlink()
    shutil.rmtree(Path(night["repo"]) / night["orders-x"])
    report = monitor(
        storage, target="local", run_id=None, backup_cron="10 0 * * *", check_files=True
    )
    verdicts = {t.table: (t.ok, t.reason.split(" ")[0]) for t in report.tables}
    assert verdicts == {
        night["orders"]: (False, "incomplete"),
        night["orders-archive"]: (True, "committed"),
        night["orders-x"]: (False, "no"),
    }
    assert report.ran and not report.ok and report.logs and report.run_id in report.logs
    archive = next((Path(night["repo"]) / night["orders-archive"]).iterdir())
    assert (archive / proofs.PROOF).exists()  # --verify checked its items, and recorded it
    written = orjson.loads(storage.get_bytes(f"@runs/{report.run_id}/monitor.json"))
    assert written["runId"] == report.run_id and written["format"] == "hippolyte-monitor/1"
    assert runs.read_monitor(storage, report.run_id) == report


def test_nothing_ran(tmp_path: Path) -> None:
    report = monitor(
        open_storage(str(tmp_path / "empty")), target="local", run_id=None, backup_cron="10 0 * * *"
    )
    assert not report.ran and not report.ok


def test_expected_night_follows_the_schedule() -> None:
    at = dt.datetime(2026, 11, 22, 5, 15, tzinfo=dt.UTC)
    assert expected_since("10 0 * * *", at) == dt.datetime(2026, 11, 21, 23, 10, tzinfo=dt.UTC)


def test_status_reports_rpo_and_coverage(
    night: dict[str, str], dynalite: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    stem = night["orders"].rsplit("-", 1)[0]
    db.table(prefix=stem + "-new", items=[{"pk": {"S": "x"}}])  # selected, never backed up
    empty = db.table(prefix=stem + "-void")  # selected, empty: nothing to back up, not late
    code, out, err = run(capsys, "--config", night["config"], "status", "--json")
    assert code == 1, err  # a selected table has no backup
    doc = orjson.loads(out)
    rows = {t["table"]: t for t in doc["tables"]}
    assert rows[night["orders"]]["meets_rpo"] and rows[night["orders"]]["items"] == 1
    assert rows[night["orders"]]["last_run"].endswith(": ok")
    assert any(name.startswith(night["orders"].rsplit("-", 1)[0] + "-new") for name in doc["late"])
    assert set(doc["uncovered"]) >= set(doc["late"])
    assert empty not in doc["late"] and rows[empty]["note"] == "empty: nothing to back up"


def test_monitor_cli_notifies_a_webhook(
    night: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with webhook() as (url, received):
        _monitor_notifies(night, capsys, url, received)


def _monitor_notifies(
    night: dict[str, str], capsys: pytest.CaptureFixture[str], url: str, received: list[Any]
) -> None:
    cfg = Path(night["config"])
    cfg.write_text(
        cfg.read_text().replace(
            "[selection]",
            f'[[notifications]]\ntype = "webhook"\n'
            f'url = "{url}"\n'
            '[[notifications]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/closed"\n[selection]',
        )
    )
    shutil.rmtree(Path(night["repo"]) / night["orders"])
    code, out, err = run(capsys, "--config", str(cfg), "monitor", "--json")
    assert code == 1, err
    doc = orjson.loads(out)
    assert [n["ok"] for n in doc["notifications"]] == [True, False]
    (message,) = received
    assert night["orders"] in str(message["text"])
    assert [f["table"] for f in message["failed"]] == [night["orders"]]


def test_unknown_channel_type_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text('[[notifications]]\ntype = "pigeon"\n')
    code, _, err = run(capsys, "--config", str(cfg), "status")
    assert code == 2 and "notifications.0" in err and "pigeon" in err
