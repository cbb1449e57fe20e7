"""``hippolyte forget`` on a real repository folder: a year of daily backups pruned with GFS
rules, exactly as the pure decision says; crash-safe removal; dry runs; the lock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.repo import catalog, manifest, writer
from hippolyte.repo.lock import RepoLock
from tests.helpers import run

DESC = {
    "TableName": "orders",
    "TableArn": "arn:aws:dynamodb:us-east-1:000000000000:table/orders",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
}
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def a_year(storage: Any, table: str = "orders", *, days: int = 365) -> list[str]:
    """A daily backup of ``table`` for each of the last ``days`` days, newest first."""
    ids = []
    for day in range(days):
        at = NOW - dt.timedelta(days=day, hours=11, minutes=50)
        ref = BackupRef(repo=storage.url, table=table, backup_id=manifest.backup_id(at))
        out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(0, 0))
        out.write_items([orjson.dumps({"pk": {"S": f"d{day}"}})])
        writer.commit(
            storage,
            ref=ref,
            info=TableInfo.from_description({**DESC, "TableName": table}),
            extras={},
            files=[out.commit()],
            start=at,
            end=at + dt.timedelta(minutes=5),
            run={},
            consumed=0.0,
            source={},
        )
        ids.append(ref.backup_id)
    return ids


def forget_cli(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> tuple[int, Any]:
    code, out, err = run(capsys, "forget", *args, "--repo", str(repo), "--json")
    return code, (orjson.loads(out) if out else err)


def test_a_year_of_daily_backups_pruned_with_gfs_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = open_storage(str(tmp_path))
    ids = a_year(storage)
    rules = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12"]
    code, dry = forget_cli(capsys, tmp_path, *rules, "--dry-run")
    assert code == 0, dry
    assert sorted(catalog.backup_ids(storage, "orders")) == sorted(ids)  # nothing removed
    keep = {e["id"] for e in dry["entries"] if e["action"] == "keep"}
    assert max(ids) in keep and 7 <= len(keep) <= 7 + 4 + 12
    code, done = forget_cli(capsys, tmp_path, *rules)
    assert code == 0, done
    assert set(catalog.backup_ids(storage, "orders")) == keep
    reasons = {e["id"]: e["reasons"] for e in done["entries"] if e["action"] == "keep"}
    assert any(r.startswith("daily snapshot for") for r in reasons[max(ids)])
    code, again = forget_cli(capsys, tmp_path, *rules)  # idempotent
    assert [e for e in again["entries"] if e["action"] == "remove"] == []


def test_a_killed_forget_leaves_incomplete_folders_the_next_removes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = open_storage(str(tmp_path))
    ids = a_year(storage)
    # as a forget killed mid-removal leaves them: _SUCCESS gone, the rest still there
    for bid in sorted(ids)[:3]:
        (tmp_path / "orders" / bid / manifest.SUCCESS).unlink()
    code, done = forget_cli(capsys, tmp_path, "--keep-last", "5")
    assert code == 0, done
    assert sorted(catalog.backup_ids(storage, "orders")) == sorted(ids)[-5:]
    gone = [e for e in done["entries"] if e["id"] in sorted(ids)[:3]]
    assert all("incomplete" in " ".join(e["reasons"]) for e in gone)
    assert not any((tmp_path / "orders" / bid).exists() for bid in sorted(ids)[:-5])


def test_no_rule_or_a_held_lock_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = open_storage(str(tmp_path))
    ids = a_year(storage)
    code, err = forget_cli(capsys, tmp_path)
    assert code == 2 and "no keep rule" in err
    code, err = forget_cli(capsys, tmp_path, "--keep-within", "3q")
    assert code == 2 and "'q'" in err or "q" in err
    lock = RepoLock(storage=storage, lease_s=60, purpose="backup")
    assert lock.acquire()
    try:
        code, err = forget_cli(capsys, tmp_path, "--keep-last", "1")
    finally:
        lock.release()
    assert code == 1 and "holds the lock" in err
    assert sorted(catalog.backup_ids(storage, "orders")) == sorted(ids)


def test_retention_in_the_config_per_table_and_after_each_monitor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from hippolyte.core.config import validate
    from hippolyte.serve.daemon import Daemon

    repo = tmp_path / "repo"
    storage = open_storage(str(repo))
    orders, audit = a_year(storage, "orders")[:10], a_year(storage, "audit-log")[:10]
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{repo}"\n[retention]\nkeep_last = 5\n'
        '[[retention.tables]]\nmatch = "^audit-"\nkeep_last = 8\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "forget", "--dry-run", "--json")
    assert code == 0, err
    kept = {(e["table"], e["id"]) for e in orjson.loads(out)["entries"] if e["action"] == "keep"}
    assert {t for t, _ in kept} == {"orders", "audit-log"}
    assert sum(t == "orders" for t, _ in kept) == 5 and sum(t == "audit-log" for t, _ in kept) == 8
    assert {i for t, i in kept if t == "orders"} == set(sorted(orders)[-5:])
    # serve: after its monitor, forget runs with the same rules
    settings = validate(
        {
            "repository": str(repo),
            "retention": {"keep_last": 3, "tables": [{"match": "^audit-", "keep_last": 4}]},
        },
        source="test",
    )
    Daemon(settings=settings, stop=threading.Event()).run_job("monitor")
    assert len(catalog.backup_ids(storage, "orders")) == 3
    assert len(catalog.backup_ids(storage, "audit-log")) == 4
    assert set(catalog.backup_ids(storage, "audit-log")) == set(sorted(audit)[-4:])


def test_a_bad_retention_rule_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp_path}"\n[retention]\nkeep_last = 5\n'
        '[[retention.tables]]\nmatch = "^audit-"\nkeep_within = "3q"\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "forget")
    assert code == 2 and "[[retention.tables]] match = '^audit-'" in err, err
