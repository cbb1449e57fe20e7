"""Backups against real local servers (DynamoDB Local and dynalite): lossless, paced, exact
under faults, atomic, and the CLI around them."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import Interrupted
from hippolyte.core.events import PageDone
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.sample_tables import order_item
from hippolyte.repo.catalog import list_backups
from tests.corpus import attributes, nasty_items, same_items
from tests.helpers import Db, backup_items, backup_lines, db_for, run
from tests.support.faults import FaultProxy
from tests.support.servers import Server

pytestmark = pytest.mark.servers
ORDER_KEY = (("customer", "S"), ("order", "N"))


@pytest.fixture
def db(ddb_server: Server) -> Db:
    return db_for(ddb_server)


def _backup(db: Db, table: str, repo: Path, **params: Any) -> Any:
    storage = open_storage(str(repo))
    (result,) = backup_tables(
        [table], conn=db.conn, storage=storage, params=BackupParams(**params), emit=lambda e: None
    )
    assert result.ok, result.error
    return storage, result


def test_nasty_items_round_trip_exactly(db: Db, tmp_path: Path) -> None:
    items = nasty_items()
    table = db.table(items=items)
    storage, result = _backup(db, table, tmp_path / "repo")
    got = backup_items(storage, result.ref)
    assert same_items(got, items)
    assert result.item_count == len(items)


def test_raw_path_matches_the_stock_client(db: Db, tmp_path: Path) -> None:
    """Contract: raw item bytes decode to exactly what botocore's own parser gives, over
    every type, with a binary hash key so that LastEvaluatedKey carries binary."""
    items = [{**order_item(i), "id": {"B": i.to_bytes(2, "big") + b"\x00\xff"}} for i in range(120)]
    table = db.table(key=(("id", "B"),), items=items)
    storage, result = _backup(db, table, tmp_path / "repo", segments=3, workers=3)
    ours = {orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in backup_items(storage, result.ref)}
    stock = {
        orjson.dumps(orjson.loads(dynamodb.encode_item(i)), option=orjson.OPT_SORT_KEYS)
        for i in db.stock_items(table)
    }
    assert len(ours) == len(items) and ours == stock
    # and the raw path really ran, on pages with and without a (binary) LastEvaluatedKey
    scanner = dynamodb.raw_scan_client(db.conn, pool=2)
    key, pages = None, []
    while True:
        page = dynamodb.scan_page(
            scanner, table=table, segment=0, total_segments=1, start_key=key, limit=50
        )
        pages.append(page)
        key = page.last_key
        if not key:
            break
    assert len(pages) >= 3 and all(p.raw for p in pages)
    assert isinstance(pages[0].last_key["id"]["B"], bytes)  # decoded once, as botocore does


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(attributes, max_size=25))
def test_any_item_round_trips(
    db: Db, tmp_path_factory: pytest.TempPathFactory, attrs: list[dict[str, Any]]
) -> None:
    items = [{"pk": {"S": f"k{i}"}, **a} for i, a in enumerate(attrs)]
    table = db.table(items=items, prefix="h")
    storage, result = _backup(db, table, tmp_path_factory.mktemp("repo"), segments=2)
    got = backup_items(storage, result.ref)
    assert same_items(got, items)
    db.client.delete_table(TableName=table)


def _via(proxy: FaultProxy) -> aws.Connection:
    return aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url)


def test_faults_lose_nothing(dynalite: Server, tmp_path: Path) -> None:
    """Throttling, 5xx, dropped connections and corrupted bodies: every page is retried,
    none skipped, nothing written twice."""
    db = db_for(dynalite)
    items = [order_item(i) for i in range(400)]
    table = db.table(key=ORDER_KEY, items=items)
    schedule = ["ok", "throttle", "ok", "500", "ok", "drop", "throttling", "ok", "crc", "503"]
    with FaultProxy(upstream=dynalite.endpoint_url, schedule=schedule) as proxy:
        storage = open_storage(str(tmp_path / "repo"))
        (result,) = backup_tables(
            [table],
            conn=_via(proxy),
            storage=storage,
            params=BackupParams(segments=4, workers=4),
            emit=lambda e: None,
        )
    assert result.ok, result.error
    assert all(proxy.counts[f] > 0 for f in set(schedule))
    lines = backup_lines(storage, result.ref)
    assert len(lines) == len(set(lines)) == len(items)
    assert same_items([orjson.loads(x)["Item"] for x in lines], items)


def test_persistent_throttling_leaves_the_backup_incomplete(
    dynalite: Server, tmp_path: Path
) -> None:
    db = db_for(dynalite)
    table = db.table(items=[{"pk": {"S": str(i)}} for i in range(50)])
    with FaultProxy(upstream=dynalite.endpoint_url, schedule=["throttle"]) as proxy:
        storage = open_storage(str(tmp_path / "repo"))
        params = BackupParams(segments=1, workers=1, max_attempts=2, page_attempts=2)
        (result,) = backup_tables(
            [table], conn=_via(proxy), storage=storage, params=params, emit=lambda e: None
        )
    assert not result.ok and "throttled" in (result.error or "")
    (summary,) = list_backups(storage, table)
    assert not summary.complete


def test_interrupt_commits_nothing(db: Db, tmp_path: Path) -> None:
    table = db.table(items=[order_item(i) for i in range(300)], rcu=40, key=ORDER_KEY)
    storage = open_storage(str(tmp_path / "repo"))
    stop = threading.Event()
    pages = 0

    def emit(event: Any) -> None:
        nonlocal pages
        if isinstance(event, PageDone):
            pages += 1
            if pages == 3:
                stop.set()

    with pytest.raises(Interrupted):
        backup_tables(
            [table],
            conn=db.conn,
            storage=storage,
            params=BackupParams(segments=2, workers=2),
            emit=emit,
            stop=stop,
        )
    (summary,) = list_backups(storage, table)
    assert not summary.complete
    leftovers = [p.name for p in (tmp_path / "repo").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_cli_backup_list_show_verify(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = db.table(items=[order_item(i) for i in range(200)], key=ORDER_KEY)
    repo = str(tmp_path / "repo")
    common = ["--endpoint-url", db.server.endpoint_url, "--region", "us-east-1"]
    code, out, err = run(capsys, "backup", table, "--repo", repo, "--json", *common)
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["ok"] and doc["results"][0]["item_count"] == 200
    assert '"event":"table_started"' in err and '"event":"table_done"' in err
    backup_id = doc["results"][0]["ref"]["backup_id"]

    code, out, _ = run(capsys, "list", "--repo", repo, "--json")
    (row,) = orjson.loads(out)
    assert (row["table"], row["id"], row["status"], row["items"]) == (
        table,
        backup_id,
        "complete",
        200,
    )
    code, out, _ = run(capsys, "show", f"{repo}/{table}/{backup_id}", "--json")
    shown = orjson.loads(out)
    assert shown["status"] == "complete"
    assert shown["table"]["description"]["KeySchema"][0]["AttributeName"] == "customer"
    code, out, _ = run(capsys, "verify", f"{table}/{backup_id}", "--repo", repo)
    assert code == 0 and orjson.loads(out)[0]["ok"]

    # corrupt one data file: verify names it and exits 4
    folder = tmp_path / "repo" / table / backup_id
    victim = sorted((folder / "data").iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, err = run(capsys, "verify", "--all", "--repo", repo)
    assert code == 4
    assert victim.name in err and "sha256 mismatch" in out

    # without _SUCCESS the backup is incomplete: listed as such, never verified as usable
    (folder / "_SUCCESS").unlink()
    code, out, _ = run(capsys, "list", table, "--repo", repo, "--json")
    assert orjson.loads(out)[0]["status"] == "incomplete"
    code, out, err = run(capsys, "verify", f"{table}/{backup_id}", "--repo", repo)
    assert code == 4 and "incomplete" in out


def test_verify_catches_bad_lines_and_counts(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = db.table(items=[{"pk": {"S": str(i)}} for i in range(10)])
    storage, result = _backup(db, table, tmp_path / "repo", segments=1, workers=1)
    folder = tmp_path / "repo" / result.ref.prefix
    (victim,) = (folder / "data").iterdir()
    victim.write_bytes(gzip.compress(b'{"Item":{"pk":{"S":"0"}}}\nnot json\n'))
    code, out, err = run(capsys, "verify", str(folder))
    assert code == 4
    assert f"{victim.name} line 2" in out and "2 items, manifest says 10" in out


def test_missing_table_fails_cleanly_and_writes_nothing(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = db.table()
    repo = tmp_path / "repo"
    code, out, err = run(
        capsys,
        "backup",
        real,
        "no-such-table",
        "--repo",
        str(repo),
        "--endpoint-url",
        db.server.endpoint_url,
    )
    assert code == 3
    assert "no-such-table" in err and "Traceback" not in err
    assert not repo.exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--read-percent", "1.5"], "read_percent"),
        (["--workers", "0"], "workers"),
        (["--segments", "abc"], "--segments"),
        (["--repo", "ftp://x/y"], "ftp://x/y"),
    ],
)
def test_bad_arguments_exit_2(
    dynalite: Server,
    tmp_path: Path,
    args: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["backup", "x-table", "--endpoint-url", dynalite.endpoint_url]
    if "--repo" not in args:
        base += ["--repo", str(tmp_path / "repo")]
    code, _, err = run(capsys, *base, *args)
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "repo").exists()


def test_unwritable_repository_exits_5(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = db.table()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run(
        capsys,
        "backup",
        table,
        "--repo",
        str(blocker / "repo"),
        "--endpoint-url",
        db.server.endpoint_url,
    )
    assert code == 5 and str(blocker) in err


def test_discover_reports_reasons(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    keep = db.table(prefix="disc-keep")
    skip = db.table(prefix="disc-tmp")
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text('[selection]\ninclude = ["disc-"]\nexclude = ["disc-tmp"]\n')
    code, out, err = run(
        capsys, "--config", str(cfg), "discover", "--endpoint-url", dynalite.endpoint_url, "--json"
    )
    assert code == 0, err
    rows = {r["table"]: r for r in orjson.loads(out)}
    assert rows[keep]["selected"] and not rows[skip]["selected"]
    assert "exclude pattern" in rows[skip]["reason"]
    assert all(not r["selected"] for n, r in rows.items() if not n.startswith("disc-"))


def test_backup_into_s3(
    dynalite: Server, s3_bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    table = db.table(items=[order_item(i) for i in range(150)], key=ORDER_KEY)
    repo = f"{s3_bucket.url}/nightly"
    code, out, err = run(
        capsys, "backup", table, "--repo", repo, "--endpoint-url", dynalite.endpoint_url, "--json"
    )
    assert code == 0, err
    code, out, err = run(capsys, "verify", "--all", "--repo", repo, "--json")
    assert code == 0, err
    (report,) = orjson.loads(out)
    assert report["ok"] and report["items"] == 150
    storage = open_storage(repo)
    assert storage.exists(f"{table}/{report['ref'].split('/')[1]}/_SUCCESS")


def test_verify_all_reports_an_incomplete_backup(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    table = db.table(items=[order_item(i) for i in range(20)], key=ORDER_KEY)
    repo = str(tmp_path / "repo")
    endpoint = dynalite.endpoint_url
    code, _, err = run(capsys, "backup", table, "--repo", repo, "--endpoint-url", endpoint)
    assert code == 0, err
    # a run killed before its commit: a folder with _started and no _SUCCESS
    open_storage(repo).put_bytes(f"{table}/2001-01-01-00-00-00/_started", b'{"table": "x"}')
    code, out, err = run(capsys, "verify", "--all", "--repo", repo, "--json")
    reports = {r["ref"]: r for r in orjson.loads(out)}
    assert code == 4, err
    assert not reports[f"{table}/2001-01-01-00-00-00"]["ok"]
    assert "incomplete" in reports[f"{table}/2001-01-01-00-00-00"]["problems"][0]
    assert sum(r["ok"] for r in reports.values()) == 1
