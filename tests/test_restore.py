"""Restores against real local servers: exact, schema-complete, resumable, fault-proof."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippolyte.adapters import aws, dynamodb_write
from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import AwsError, BackupCorrupt, ConfigError
from hippolyte.core.pacing import TokenBucket
from hippolyte.engines.load import LoadSettings, load_files
from hippolyte.engines.pool import cpu_pool
from hippolyte.formats.open import open_source
from hippolyte.ops import restore as restore_ops
from hippolyte.ops import restore_check
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.restore import RestoreParams, RestoreRefused, restore
from hippolyte.ops.sample_tables import order_item
from tests.corpus import attributes, nasty_items, same_items
from tests.helpers import Db, db_for, run
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
    return open_source(storage, result.ref.prefix, location=str(result.ref))


def _restore(
    db: Db, source: Any, tmp_path: Path, *, conn: aws.Connection | None = None, **params: Any
) -> Any:
    name = f"restored-{time.monotonic_ns()}"
    report = restore(
        source,
        conn=conn or db.conn,
        table=name,
        description=None,
        params=RestoreParams(state_dir=tmp_path / "state", **params),
        emit=lambda e: None,
    )
    return name, report


def test_round_trip_is_exact(db: Db, tmp_path: Path) -> None:
    items = nasty_items() + [{"pk": {"S": f"o{i}"}, **order_item(i)} for i in range(200)]
    source = _backup(db, db.table(items=items), tmp_path / "repo", segments=3)
    name, report = _restore(db, source, tmp_path)
    assert report.proven and report.restored.count == len(items)
    assert same_items(db.stock_items(name), items)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(attributes, max_size=20))
def test_any_items_round_trip(
    db: Db, tmp_path_factory: pytest.TempPathFactory, attrs: list[dict[str, Any]]
) -> None:
    items = [{"pk": {"S": f"k{i}"}, **a} for i, a in enumerate(attrs)]
    tmp = tmp_path_factory.mktemp("r")
    name, report = _restore(db, _backup(db, db.table(items=items, prefix="h"), tmp / "repo"), tmp)
    assert report.proven
    assert same_items(db.stock_items(name), items)


def test_cross_server_restore(dynalite: Server, dynamodb_local: Server, tmp_path: Path) -> None:
    """Backed up from dynalite, restored into DynamoDB Local: another endpoint entirely."""
    src, dst = db_for(dynalite), db_for(dynamodb_local)
    items = [order_item(i) for i in range(150)]
    source = _backup(src, src.table(items=items, key=ORDER_KEY), tmp_path / "repo")
    name, report = _restore(dst, source, tmp_path)
    assert report.proven and same_items(dst.stock_items(name), items)


def test_large_restore_checks_and_digests_in_processes(
    dynalite: Server, s3_bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PROCESS_MIN_ITEMS the check pass and the proof's digest run in other processes,
    which open the (S3) repository themselves; a corrupt file is still named from there. The
    proof's processes import only what its digests need."""
    db = db_for(dynalite)
    items = [order_item(i) for i in range(300)]
    source = _backup(db, db.table(items=items, key=ORDER_KEY), s3_bucket.url, segments=3)
    pools: list[tuple[int, list[str]]] = []

    def recording(processes: int, *, threads: int, imports: list[str]) -> Any:
        pools.append((processes, list(imports)))
        return cpu_pool(processes, threads=threads, imports=imports)

    monkeypatch.setattr(restore_check, "PROCESS_MIN_ITEMS", 0)
    monkeypatch.setattr(restore_check, "cpus", lambda: 2)
    monkeypatch.setattr(restore_ops, "cpus", lambda: 2)
    monkeypatch.setattr(restore_check, "cpu_pool", recording)
    monkeypatch.setattr(restore_ops, "cpu_pool", recording)
    name, report = _restore(db, source, tmp_path)
    assert report.proven and same_items(db.stock_items(name), items)
    # the check pass, then (after the load) the proof
    assert pools == [(2, ["hippolyte.ops.restore_check"]), (2, ["hippolyte.core.proof"])]

    storage = open_storage(s3_bucket.url)
    key = source.files[1].key
    storage.put_bytes(key, gzip.compress(b'{"Item":{"customer":{"S":"x"}}}\n'))
    with pytest.raises(BackupCorrupt, match=f"{key}.*sha256 mismatch"):
        _restore(db, source, tmp_path)


def test_schema_round_trip(dynamodb_local: Server, tmp_path: Path) -> None:
    db = db_for(dynamodb_local)
    from hippolyte.ops.sample_tables import ORDERS, create_sample_tables, fill

    create_sample_tables(db.client)
    fill(db.client, ORDERS, (order_item(i) for i in range(100)))
    source = _backup(db, ORDERS, tmp_path / "repo")
    name, report = _restore(db, source, tmp_path, write_capacity=300)
    assert report.proven
    old = db.client.describe_table(TableName=ORDERS)["Table"]
    new = db.client.describe_table(TableName=name)["Table"]
    assert new["KeySchema"] == old["KeySchema"]
    assert new.get("BillingModeSummary") == old.get("BillingModeSummary")

    def attrs(desc: dict[str, Any]) -> Any:
        return sorted(
            (a["AttributeName"], a["AttributeType"]) for a in desc["AttributeDefinitions"]
        )

    assert attrs(new) == attrs(old)
    assert new["ProvisionedThroughput"]["ReadCapacityUnits"] == 200  # back from the load's 300
    assert new["ProvisionedThroughput"]["WriteCapacityUnits"] == 200

    def indexes(desc: dict[str, Any], kind: str) -> Any:
        return {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in desc.get(kind, [])}

    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        assert indexes(new, kind) == indexes(old, kind)
    gsi = new["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]
    assert (gsi["ReadCapacityUnits"], gsi["WriteCapacityUnits"]) == (20, 20)
    ttl = db.client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires"


def test_tags_restored_where_the_server_has_them(dynalite: Server, tmp_path: Path) -> None:
    db = db_for(dynalite)
    table = db.table(items=[{"pk": {"S": "a"}}])
    arn = db.client.describe_table(TableName=table)["Table"]["TableArn"]
    db.client.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "orders"}])
    name, report = _restore(db, _backup(db, table, tmp_path / "repo"), tmp_path)
    new_arn = db.client.describe_table(TableName=name)["Table"]["TableArn"]
    tags = db.client.list_tags_of_resource(ResourceArn=new_arn)["Tags"]
    assert tags == [{"Key": "team", "Value": "orders"}]


def test_never_overwrites_and_checks_existing_schema(db: Db, tmp_path: Path) -> None:
    items = [{"pk": {"S": str(i)}, "v": {"N": str(i)}} for i in range(30)]
    table = db.table(items=items)
    source = _backup(db, table, tmp_path / "repo")
    params = RestoreParams(state_dir=tmp_path / "state")
    with pytest.raises(RestoreRefused, match="already exists"):
        restore(
            source, conn=db.conn, table=table, params=params, description=None, emit=lambda e: None
        )
    other = db.table(key=(("id", "N"),))
    into = RestoreParams(state_dir=tmp_path / "state", into_existing=True)
    with pytest.raises(RestoreRefused, match="key schema"):
        restore(
            source, conn=db.conn, table=other, params=into, description=None, emit=lambda e: None
        )
    same = db.table()
    report = restore(
        source, conn=db.conn, table=same, params=into, description=None, emit=lambda e: None
    )
    assert report.proven and same_items(db.stock_items(same), items)


def test_faults_during_load_lose_nothing(dynalite: Server, tmp_path: Path) -> None:
    db = db_for(dynalite)
    items = [order_item(i) for i in range(300)]
    source = _backup(db, db.table(items=items, key=ORDER_KEY), tmp_path / "repo", segments=4)
    schedule = ["ok", "unprocessed", "throttle", "ok", "500", "unprocessed", "drop", "503"]
    schedule += ["crc", "throttling", "ok"]
    with FaultProxy(
        upstream=dynalite.endpoint_url, schedule=schedule, operation="BatchWriteItem"
    ) as proxy:
        conn = aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url)
        name, report = _restore(db, source, tmp_path, conn=conn)
    assert all(proxy.counts[f] > 0 for f in set(schedule))
    assert report.proven and same_items(db.stock_items(name), items)


def test_corrupt_file_stops_before_writing(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _backup(
        db,
        db.table(items=[{"pk": {"S": str(i)}} for i in range(40)]),
        tmp_path / "repo",
        segments=2,
    )
    victim = Path(source.storage.url) / source.files[-1].key
    data = bytearray(victim.read_bytes())
    data[-12] ^= 0x01
    victim.write_bytes(bytes(data))
    name = "never-created"
    with pytest.raises(BackupCorrupt, match=victim.name):
        restore(
            source,
            conn=db.conn,
            table=name,
            description=None,
            emit=lambda e: None,
            params=RestoreParams(state_dir=tmp_path / "state"),
        )
    assert name not in db.client.list_tables()["TableNames"]


def test_export_without_schema_needs_one(db: Db, tmp_path: Path) -> None:
    source = _backup(db, db.table(items=[{"pk": {"S": "a"}}]), tmp_path / "repo")
    bare = source.__class__(**{**source.__dict__, "description": None})
    with pytest.raises(ConfigError, match="--schema-from"):
        restore(
            bare,
            conn=db.conn,
            table="x-table",
            description=None,
            emit=lambda e: None,
            params=RestoreParams(state_dir=tmp_path / "state"),
        )


def test_kill_9_then_resume_gives_the_exact_table(
    dynamodb_local: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DynamoDB Local: dynalite (Node) exits when a client is killed in the middle of a request
    _kill_9_then_resume(dynamodb_local, tmp_path, capsys)


def _kill_9_then_resume(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    items = [{"pk": {"S": f"k{i:04d}"}, "v": {"S": "x" * 200}} for i in range(240)]
    # 60 WCU at the source, so the restored table gets 60 too (a restore gives a table at least
    # the source's capacity): 240 one-unit writes paced at 54/s take ~4 s, 8 files of ~0.5 s
    table = db.table(items=items, wcu=60)
    repo = tmp_path / "repo"
    source = _backup(db, table, repo, segments=8, workers=4)
    ref = f"{repo}/{table}/{source.location.split('/')[-1]}"
    state = tmp_path / "state"
    args = [
        "restore",
        ref,
        "--table",
        "resumed",
        "--endpoint-url",
        dynalite.endpoint_url,
        "--region",
        "us-east-1",
        "--write-capacity",
        "60",
        "--workers",
        "2",
        "--state-dir",
        str(state),
        "--json",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", *args],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        files = list(state.glob("restore-*.json"))
        if files and len(orjson.loads(files[0].read_bytes())["done_files"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = orjson.loads(files[0].read_bytes())["done_files"]
    assert 2 <= len(done) < 8, "the kill should land mid-restore"
    code, out, err = run(capsys, *args, "--resume")
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["proof"]["ok"] and doc["proof"]["table"]["items"] == len(items)
    assert same_items(db.stock_items("resumed"), items)


def test_cli_restores_a_native_export_with_key(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.format_fixtures import fixture_items, write_native_export

    items = fixture_items()
    folder = write_native_export(open_storage(str(tmp_path / "x")), "exports/", items)
    code, out, err = run(
        capsys,
        "restore",
        str(tmp_path / "x" / folder),
        "--table",
        "from-native",
        "--key",
        "pk:S",
        "--endpoint-url",
        dynalite.endpoint_url,
        "--state-dir",
        str(tmp_path / "state"),
        "--json",
    )
    assert code == 0, err
    assert orjson.loads(out)["proof"]["ok"]
    assert same_items(db_for(dynalite).stock_items("from-native"), items)


def test_cli_converts_and_restores_a_datapipeline_export(
    dynamodb_local: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.format_fixtures import fixture_items, write_datapipeline_export

    db = db_for(dynamodb_local)
    items = fixture_items()
    old = tmp_path / "old-bucket"
    write_datapipeline_export(
        open_storage(str(old)), "orders/2017-03-01-00-10-00/", items, items_per_file=10
    )
    schema_table = db.table()  # an existing table with the same keys: pk (S)
    common = ["--endpoint-url", dynamodb_local.endpoint_url, "--state-dir", str(tmp_path / "st")]
    src = str(old / "orders" / "2017-03-01-00-10-00")
    code, out, err = run(
        capsys,
        "restore",
        src,
        "--table",
        "from-dp",
        "--schema-from",
        schema_table,
        *common,
        "--json",
    )
    assert code == 0, err
    assert same_items(db.stock_items("from-dp"), items)

    repo = str(tmp_path / "repo")
    code, out, err = run(
        capsys,
        "convert",
        src,
        "--repo",
        repo,
        "--table-name",
        "orders",
        "--schema-from",
        schema_table,
        *common[:2],
        "--json",
    )
    assert code == 0, err
    ref = orjson.loads(out)["ref"]
    assert ref == "orders/2017-03-01-00-10-00"
    assert run(capsys, "verify", ref, "--repo", repo)[0] == 0
    code, out, err = run(
        capsys, "restore", ref, "--repo", repo, "--table", "from-converted", *common, "--json"
    )
    assert code == 0, err
    assert same_items(db.stock_items("from-converted"), items)


def test_cli_bad_export_line_names_file_and_line(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.format_fixtures import fixture_items, write_datapipeline_export

    storage = open_storage(str(tmp_path / "dp"))
    keys = write_datapipeline_export(
        storage, "t/2017-03-01-00-10-00/", fixture_items(), items_per_file=10
    )
    victim = tmp_path / "dp" / keys[1]
    lines = victim.read_bytes().splitlines()
    lines[3] = b'{"pk":{"s":"x"},"bad":{"zz":1}}'
    victim.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run(
        capsys,
        "restore",
        str(tmp_path / "dp" / "t" / "2017-03-01-00-10-00"),
        "--table",
        "never",
        "--key",
        "pk:S",
        "--endpoint-url",
        dynalite.endpoint_url,
        "--state-dir",
        str(tmp_path / "st"),
    )
    assert code == 4, err
    assert f"{victim.name} line 4" in err and "'bad'" in err
    assert "never" not in db_for(dynalite).client.list_tables()["TableNames"]


def test_a_bad_nested_number_stops_the_restore_naming_file_and_line(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.format_fixtures import write_datapipeline_export

    storage = open_storage(str(tmp_path / "dp"))
    items = [{"pk": {"S": f"k{i}"}, "m": {"M": {"l": {"L": [{"N": str(i)}]}}}} for i in range(30)]
    keys = write_datapipeline_export(storage, "t/2017-03-01-00-10-00/", items, items_per_file=10)
    victim = tmp_path / "dp" / keys[2]
    lines = victim.read_bytes().splitlines()
    lines[6] = b'{"pk":{"s":"x"},"m":{"m":{"l":{"l":[{"n":"1"},{"n":"12abc"}]}}}}'
    victim.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run(
        capsys,
        "restore",
        str(tmp_path / "dp" / "t" / "2017-03-01-00-10-00"),
        "--table",
        "never",
        "--key",
        "pk:S",
        "--endpoint-url",
        dynalite.endpoint_url,
        "--state-dir",
        str(tmp_path / "st"),
    )
    assert code == 4, err
    assert f'{victim.name} line 7: attribute "m.l[1]": "N" value "12abc" is not a number' in err
    assert "never" not in db_for(dynalite).client.list_tables()["TableNames"]


class _Watching:
    """A writer that counts the requests in flight at once, and can fail the n-th."""

    def __init__(self, inner: Any, *, fail_at: int | None = None) -> None:
        self.inner, self.fail_at = inner, fail_at
        self.lock = threading.Lock()
        self.now = self.most = self.calls = 0

    def write_batch(self, *, table: str, items: list[bytes]) -> Any:
        with self.lock:
            self.calls += 1
            self.now += 1
            self.most = max(self.most, self.now)
            fail = self.calls == self.fail_at
        try:
            if fail:
                raise AwsError("BatchWriteItem: ValidationException: injected")
            time.sleep(0.005)  # a request's round trip, so that requests overlap
            return self.inner.write_batch(table=table, items=items)
        finally:
            with self.lock:
                self.now -= 1

    def close(self) -> None:
        self.inner.close()


def test_one_file_is_loaded_by_several_requests_at_once(dynalite: Server, tmp_path: Path) -> None:
    db = db_for(dynalite)
    items = [order_item(i) for i in range(400)]
    source = _backup(db, db.table(items=items, key=ORDER_KEY), tmp_path / "repo", segments=1)
    assert len(source.files) == 1
    target = db.table(key=ORDER_KEY)

    def load(writer: Any) -> list[Any]:
        done: list[Any] = []
        load_files(
            source,
            source.files,
            writer=writer,
            settings=LoadSettings(table=target, workers=4),
            bucket=TokenBucket(rate=1e9),
            emit=lambda e: None,
            on_file_done=done.append,
            stop=threading.Event(),
        )
        return done

    watching = _Watching(dynamodb_write.open_writer(db.conn, pool=4))
    assert load(watching) == source.files
    assert watching.most > 1 and watching.calls == 16
    assert same_items(db.stock_items(target), items)

    failing = _Watching(dynamodb_write.open_writer(db.conn, pool=4), fail_at=3)
    with pytest.raises(AwsError, match="injected"):
        load(failing)
    assert failing.calls < 16  # the rest of the file was not sent


def test_without_posix_semaphores_the_passes_run_in_threads(
    dynalite: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS Lambda has no /dev/shm: a process pool cannot even be made there. A large restore
    (a drill in the Lambda) then checks and digests in threads instead, and is proven."""
    import _multiprocessing
    import multiprocessing.synchronize

    db = db_for(dynalite)
    items = [order_item(i) for i in range(120)]
    source = _backup(db, db.table(items=items, key=ORDER_KEY), tmp_path / "repo", segments=2)

    def no_semaphores(*_: Any, **__: Any) -> Any:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(multiprocessing.synchronize, "_multiprocessing", _Without(no_semaphores))
    monkeypatch.setattr(restore_check, "PROCESS_MIN_ITEMS", 0)
    monkeypatch.setattr(restore_check, "cpus", lambda: 2)
    monkeypatch.setattr(restore_ops, "cpus", lambda: 2)
    name, report = _restore(db, source, tmp_path)
    assert report.proven and same_items(db.stock_items(name), items)
    assert _multiprocessing.SemLock is not no_semaphores  # only the pool's view was changed


class _Without:
    """``_multiprocessing`` as multiprocessing.synchronize sees it, SemLock refused."""

    def __init__(self, semlock: Any) -> None:
        self.SemLock = semlock
        self.sem_unlink = None
