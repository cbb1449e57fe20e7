"""``hippolyte recover`` end to end on DynamoDB Local and dynalite: a bad deploy (updates,
deletes and adds over a table with GSIs and the hostile corpus) put back exactly, undone
exactly; writers racing the recovery; dry runs; bad input. The table's state is compared with
the order-independent digest a restore's proof uses, and item by item by value."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters import dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.config import Settings
from hippolyte.core.diff import key_of
from hippolyte.core.events import Event, Step
from hippolyte.core.proof import digest_of
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.recover import RecoverParams, Selection
from hippolyte.ops.recover import recover as recover_api
from hippolyte.ops.sample_tables import fill
from tests.corpus import nasty_items
from tests.helpers import Db, db_for, run
from tests.support.servers import Server, aws_env

pytestmark = pytest.mark.servers

KEY = (("pk", "S"), ("sk", "N"))


def table_items(db: Db, table: str) -> dict[bytes, bytes]:
    """Every item of ``table`` by canonical key, as DynamoDB JSON."""
    out: dict[bytes, bytes] = {}
    for page in db.client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            raw = dynamodb.encode_item(item)
            out[key_of(orjson.loads(raw), KEY)] = raw
    return out


def digest(items: dict[bytes, bytes]) -> tuple[int, int]:
    d = digest_of(list(items.values()))
    return d.count, d.value


_made: list[tuple[Db, str]] = []


@pytest.fixture(autouse=True)
def _drop_tables() -> Iterator[None]:
    """DynamoDB Local caps the provisioned units of all its tables: give them back."""
    yield
    while _made:
        db, name = _made.pop()
        db.client.delete_table(TableName=name)


def make_table(db: Db, n: int = 60, *, wcu: int = 200, rcu: int = 200, nasty: bool = True) -> str:
    """A table with a GSI, ordinary items and the hostile corpus."""
    name = f"rec-{random.randrange(10**9)}"
    _made.append((db, name))
    db.client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 50, "WriteCapacityUnits": 50},
            }
        ],
        ProvisionedThroughput={"ReadCapacityUnits": rcu, "WriteCapacityUnits": wcu},
    )
    db.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    items: list[dict[str, Any]] = [
        {
            "pk": {"S": f"p{i % 7}"},
            "sk": {"N": str(i)},
            "g": {"S": f"g{i % 3}"},
            "v": {"N": str(i * 10)},
            "doc": {"M": {"n": {"N": "1.50"}, "l": {"L": [{"S": "x"}, {"B": b"\x00"}]}}},
            "tags": {"SS": ["a", "b"]},
        }
        for i in range(n)
    ]
    for j, bad in enumerate(nasty_items() if nasty else []):
        items.append({**bad, "pk": {"S": f"nasty{j}"}, "sk": {"N": str(j)}})
    fill(db.client, name, iter(items))
    return name


def backup(db: Db, table: str, repo: Path) -> str:
    (result,) = backup_tables(
        [table],
        conn=db.conn,
        storage=open_storage(str(repo)),
        params=BackupParams(),
        emit=lambda e: None,
    )
    assert result.ok, result.error
    return str(repo / result.ref.table / result.ref.backup_id)


def bad_deploy(db: Db, table: str, seed: int = 7) -> set[bytes]:
    """Update 10%, delete 5%, add 5% of the items; the keys it added."""
    rng = random.Random(seed)
    keys = sorted(table_items(db, table))
    rng.shuffle(keys)
    n = len(keys)
    updates, deletes = keys[: n // 10], keys[n // 10 : n // 10 + n // 20]
    for k in updates:
        pk, sk = orjson.loads(k)
        db.client.update_item(
            TableName=table,
            Key={"pk": {"S": pk}, "sk": {"N": sk}},
            UpdateExpression="SET v = :v, broken = :b",
            ExpressionAttributeValues={":v": {"N": "-1"}, ":b": {"BOOL": True}},
        )
    for k in deletes:
        pk, sk = orjson.loads(k)
        db.client.delete_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"N": sk}})
    added = set()
    for i in range(n // 20):
        item = {"pk": {"S": "new"}, "sk": {"N": str(i)}, "g": {"S": "g9"}}
        db.client.put_item(TableName=table, Item=item)
        added.add(key_of(orjson.loads(dynamodb.encode_item(item)), KEY))
    return added


@pytest.fixture(params=["dynalite", "dynamodb_local"])
def db(request: pytest.FixtureRequest) -> Db:
    server: Server = request.getfixturevalue(request.param)
    return db_for(server)


def recover(capsys: pytest.CaptureFixture[str], db: Db, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(
        capsys, "recover", *args, "--endpoint-url", db.server.endpoint_url, "--json"
    )
    assert out, err
    return code, orjson.loads(out)


def test_a_bad_deploy_is_put_back_and_undone_exactly(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db)
    ref = backup(db, table, tmp_path / "repo")
    before = table_items(db, table)
    added = bad_deploy(db, table)
    deployed = table_items(db, table)
    assert deployed != before

    code, report = recover(capsys, db, ref)
    assert code == 0, report
    assert report["proven"] is True
    assert report["skipped"] == 0
    now = table_items(db, table)
    assert {k: v for k, v in now.items() if k not in added} == before
    assert set(now) - set(before) == added  # the added items are left alone
    assert digest({k: now[k] for k in before}) == digest(before)

    code, again = recover(capsys, db, ref, "--delete-added")
    assert code == 0, again
    assert again["deleted"] == len(added) and again["put_back"] == 0
    assert digest(table_items(db, table)) == digest(before)

    # undo the second, then the first: exactly the deployed state
    for rid in (again["recovery_id"], report["recovery_id"]):
        code, undone = recover(capsys, db, "--undo", rid, "--repo", str(tmp_path / "repo"))
        assert code == 0, undone
        assert undone["proven"] is True
    assert digest(table_items(db, table)) == digest(deployed)


def test_dry_run_changes_nothing(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=30)
    ref = backup(db, table, tmp_path / "repo")
    bad_deploy(db, table)
    deployed = table_items(db, table)
    code, report = recover(capsys, db, ref, "--dry-run", "--delete-added")
    assert code == 0, report
    assert report["recovery_id"] is None and report["dry_run"] is True
    assert len(report["plan"]) > 0
    assert table_items(db, table) == deployed
    assert not (tmp_path / "repo" / "@recoveries").exists()


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def canonical(pk: str, sk: int) -> bytes:
    return key_of(key(pk, sk), KEY)


def settings_for(db: Db, repo: Path | None = None) -> Settings:
    return Settings().with_overrides(
        endpoint_url=db.server.endpoint_url,
        region="us-east-1",
        repository=str(repo) if repo else None,
    )


def test_items_the_application_changes_meanwhile_are_skipped_not_clobbered(
    db: Db, tmp_path: Path
) -> None:
    """Between the recovery's read and its writes, the application changes three of the
    items it will put back and re-creates one it deleted: those keep the application's
    version and are reported with both; everything else is put back."""
    table = make_table(db, n=40, nasty=False)
    ref = backup(db, table, tmp_path / "repo")
    before = table_items(db, table)
    for i in range(10):
        db.client.update_item(
            TableName=table,
            Key=key(f"p{i % 7}", i),
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "-1"}},
        )
    db.client.delete_item(TableName=table, Key=key("p3", 10))
    racing = {canonical(f"p{i % 7}", i) for i in (1, 4, 7)} | {canonical("p3", 10)}

    def writer(event: Event) -> None:  # the application, between the read and the writes
        if isinstance(event, Step) and event.text.startswith("saving the live state"):
            for i in (1, 4, 7):
                db.client.update_item(
                    TableName=table,
                    Key=key(f"p{i % 7}", i),
                    UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "777"}},
                )
            db.client.put_item(TableName=table, Item={**key("p3", 10), "v": {"N": "778"}})

    report = recover_api(
        settings_for(db),
        ref,
        table=None,
        selection=Selection(),
        params=RecoverParams(workers=3),
        emit=writer,
    )
    assert {key_of(orjson.loads(s.key), KEY) for s in report.tally.skipped} == racing
    for s in report.tally.skipped:
        assert s.current is not None and b"77" in s.current  # the application's version
        assert s.outcome == "changed_since"
    assert report.tally.put_back == 11 - 4 and report.proven is True and not report.ok
    now = table_items(db, table)
    assert {k: v for k, v in now.items() if k not in racing} == {
        k: v for k, v in before.items() if k not in racing
    }
    for k in racing:
        assert b"77" in now[k]


def test_a_diff_file_is_recovered_and_checked_against_the_live_table(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=30, nasty=False)
    ref = backup(db, table, tmp_path / "repo")
    before = table_items(db, table)
    added = bad_deploy(db, table, seed=3)
    out = tmp_path / "d.jsonl"
    code, _, err = run(
        capsys, "diff", ref, "--out", str(out), "--endpoint-url", db.server.endpoint_url
    )
    assert code == 1, err
    # after the diff, the application changes one item the diff saw changed
    changed = [
        orjson.loads(line) for line in out.read_bytes().splitlines() if b'"kind":"changed"' in line
    ][0]
    db.client.update_item(
        TableName=table,
        Key={k: {t: v} for k, d in changed["key"].items() for t, v in d.items()},
        UpdateExpression="SET late = :v",
        ExpressionAttributeValues={":v": {"S": "after the diff"}},
    )
    code, report = recover(capsys, db, ref, "--from-diff", str(out), "--delete-added")
    assert code == 1 and report["skipped"] == 1, report
    assert report["skipped_items"][0]["reason"].startswith("changed since")
    assert report["deleted"] == len(added)
    now = table_items(db, table)
    late = key_of(changed["key"], KEY)
    assert b"after the diff" in now[late]
    assert {k: v for k, v in now.items() if k != late} == {
        k: v for k, v in before.items() if k != late
    }


def test_keys_and_partitions_recover_only_those(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=42, nasty=False)
    ref = backup(db, table, tmp_path / "repo")
    before = table_items(db, table)
    for i in range(42):  # every item changed
        db.client.update_item(
            TableName=table,
            Key=key(f"p{i % 7}", i),
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "-1"}},
        )
    db.client.put_item(TableName=table, Item={**key("p2", 1000), "v": {"N": "1"}})
    keys = tmp_path / "keys.jsonl"
    keys.write_bytes(orjson.dumps(key("p0", 0)) + b"\n" + orjson.dumps(key("p1", 1)) + b"\n")
    code, report = recover(capsys, db, ref, "--keys", str(keys))
    assert code == 0 and report["put_back"] == 2, report
    now = table_items(db, table)
    assert {k for k in before if now[k] == before[k]} == {canonical("p0", 0), canonical("p1", 1)}

    code, report = recover(capsys, db, ref, "--partition-key", "p2", "--delete-added")
    assert code == 0, report
    assert report["put_back"] == 6 and report["deleted"] == 1  # p2: sk 2, 9, ..., 37; 1000
    now = table_items(db, table)
    assert canonical("p2", 1000) not in now
    same = {k for k in before if now[k] == before[k]}
    assert same == {canonical("p0", 0), canonical("p1", 1)} | {
        canonical("p2", i) for i in range(2, 42, 7)
    }


def test_force_overwrites_and_undo_brings_back_what_it_overwrote(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=14, nasty=False)
    ref = backup(db, table, tmp_path / "repo")
    before = table_items(db, table)
    db.client.delete_item(TableName=table, Key=key("p0", 0))
    out = tmp_path / "d.jsonl"
    run(capsys, "diff", ref, "--out", str(out), "--endpoint-url", db.server.endpoint_url)
    db.client.put_item(TableName=table, Item={**key("p0", 0), "v": {"S": "recreated"}})
    racing = table_items(db, table)
    code, report = recover(capsys, db, ref, "--from-diff", str(out), "--force")
    assert code == 0 and report["forced"] == 1 and report["proven"], report
    assert table_items(db, table) == before
    code, undone = recover(
        capsys, db, "--undo", report["recovery_id"], "--repo", str(tmp_path / "repo")
    )
    assert code == 0, undone
    assert table_items(db, table) == racing  # the version --force replaced, not the diff's


def test_a_version_attribute_catches_what_equality_cannot_and_wide_items_need_it(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=0, nasty=False)
    wide = {**key("w", 1), "ver": {"N": "1"}, **{f"a{i}": {"N": str(i)} for i in range(200)}}
    fill(db.client, table, iter([wide, {**key("v", 1), "ver": {"N": "1"}, "x": {"S": "a"}}]))
    ref = backup(db, table, tmp_path / "repo")
    for k in (key("w", 1), key("v", 1)):
        db.client.update_item(
            TableName=table,
            Key=k,
            UpdateExpression="SET ver = :v, x = :x",
            ExpressionAttributeValues={":v": {"N": "2"}, ":x": {"S": "deploy"}},
        )
    code, report = recover(capsys, db, ref, "--dry-run")
    assert len(report["plan"]) == 2
    code, report = recover(capsys, db, ref)
    assert code == 1 and report["put_back"] == 1, report
    (skipped,) = report["skipped_items"]
    assert skipped["outcome"] == "uncheckable" and "--version-attribute" in skipped["reason"]
    code, report = recover(capsys, db, ref, "--version-attribute", "ver")
    assert code == 0 and report["put_back"] == 1, report


def test_kill_9_mid_recovery_then_resume(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,200 items to put back (two actions files) at 200 writes/s; SIGKILL once the first
    file is checkpointed; --resume finishes without writing anything twice in a way that
    could clobber; the saved state is complete, and undo gives back the deployed state."""
    table = make_table(db, n=1300, wcu=400, rcu=4000, nasty=False)
    repo = tmp_path / "repo"
    ref = backup(db, table, repo)
    before = table_items(db, table)
    gone = sorted(before)[:1200]
    for at in range(0, len(gone), 25):
        requests = [{"DeleteRequest": {"Key": key(*_pk_sk(k))}} for k in gone[at : at + 25]]
        db.client.batch_write_item(RequestItems={table: requests})
    deployed = table_items(db, table)
    env = {**os.environ, **aws_env(db.server)}
    env.pop("AWS_PROFILE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "recover", ref, "--json"]
        + ["--endpoint-url", db.server.endpoint_url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(repo.glob("@recoveries/*/progress/00000.json")):
            assert proc.poll() is None, "the recovery ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # into the second file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(table_items(db, table)) < len(before)  # killed midway
    code, report = recover(capsys, db, ref, "--resume")
    assert code == 0 and report["resumed"] is True and report["proven"] is True, report
    assert report["put_back"] + report["already"] == 1200
    assert table_items(db, table) == before
    (rid,) = [p.name for p in (repo / "@recoveries").iterdir()]
    record = orjson.loads((repo / "@recoveries" / rid / "recovery.json").read_bytes())
    assert record["planned"] == 1200 and sum(f["count"] for f in record["files"]) == 1200
    code, undone = recover(capsys, db, "--undo", rid, "--repo", str(repo))
    assert code == 0, undone
    assert table_items(db, table) == deployed


def _pk_sk(k: bytes) -> tuple[str, int]:
    pk, sk = orjson.loads(k)
    return pk, int(sk)


def test_an_attribute_added_between_the_read_and_the_write_is_kept(db: Db, tmp_path: Path) -> None:
    """The last window: the item changes after the recovery's last read, by an attribute no
    condition names. The write returns what it replaced, and that version is put back."""
    from hippolyte.adapters import aws
    from hippolyte.core.recovery import Action
    from hippolyte.engines.conditional import ConditionalWriter, LiveTable, WriteSettings

    table = make_table(db, n=0, nasty=False)
    seen = {**key("a", 1), "v": {"N": "2"}}
    db.client.put_item(TableName=table, Item={**seen, "late": {"S": "app"}})
    conn = aws.Connection(region="us-east-1", endpoint_url=db.server.endpoint_url)
    live = LiveTable(conn=conn, info=dynamodb.describe(db.client, table), spec=KEY)
    writer = ConditionalWriter(
        open_storage(str(tmp_path / "repo")),
        "2026-11-29-00-00-00-abcd",
        live=live,
        settings=WriteSettings(write_rate=100, read_rate=100),
        stop=threading.Event(),
    )
    action = Action(
        key=orjson.dumps(key("a", 1)),
        target=orjson.dumps({**key("a", 1), "v": {"N": "1"}}),
        seen=dynamodb.encode_item(seen),
    )
    outcome, skipped, _ = writer._one(action, action.seen, 0)  # as if read before "late"
    writer.close()
    assert outcome == "changed_since" and skipped is not None
    assert "put back at once" in skipped.reason
    assert table_items(db, table) == {
        canonical("a", 1): dynamodb.encode_item(
            db.client.get_item(TableName=table, Key=key("a", 1))["Item"]
        )
    }
    assert db.client.get_item(TableName=table, Key=key("a", 1))["Item"]["late"] == {"S": "app"}
    assert db.client.get_item(TableName=table, Key=key("a", 1))["Item"]["v"] == {"N": "2"}


def test_bad_input_gets_one_line_and_changes_nothing(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=14, nasty=False)
    repo = tmp_path / "repo"
    ref = backup(db, table, repo)
    other = make_table(db, n=3, nasty=False)
    other_ref = backup(db, other, repo)
    bad_deploy(db, table)
    deployed = table_items(db, table)
    url = ["--endpoint-url", db.server.endpoint_url]
    diff_file = tmp_path / "other.jsonl"
    run(capsys, "diff", other_ref, "--out", str(diff_file), *url)
    keys_only = tmp_path / "keys-only.jsonl"
    run(capsys, "diff", ref, "--keys-only", "--out", str(keys_only), *url)
    bad_keys = tmp_path / "bad-keys.jsonl"
    bad_keys.write_bytes(orjson.dumps(key("p0", 0)) + b'\n{"pk": {"S": "x"}}\n')
    db.client.create_table(
        TableName=f"{table}-other-key",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    _made.append((db, f"{table}-other-key"))
    cases = [
        ((str(repo / table / "2001-01-01-00-00-00"),), 3, "2001-01-01-00-00-00"),
        ((ref, "--table", "no-such-table"), 3, "no-such-table"),
        ((ref, "--table", f"{table}-other-key"), 2, "'id' (S) where the backup has 'pk' (S)"),
        ((ref, "--from-diff", str(diff_file)), 2, f"not from {ref!r}"),
        ((ref, "--table", other, "--from-diff", str(diff_file)), 2, "not from"),
        ((ref, "--from-diff", str(keys_only)), 2, "--keys-only"),
        ((ref, "--keys", str(bad_keys)), 2, "bad-keys.jsonl line 2: key attribute 'sk'"),
        (("--undo", "2026-01-01-00-00-00-abcd", "--repo", str(repo)), 3, "no recovery"),
        (("--undo", "nonsense", "--repo", str(repo)), 3, "not a recovery id"),
        ((ref, "--keys", str(bad_keys), "--partition-key", "p0"), 2, "one of"),
    ]
    for args, code, words in cases:
        got, out, err = run(capsys, "recover", *args, *url)
        assert got == code, (args, err)
        lines = [line for line in err.splitlines() if line.startswith("hippolyte: error")]
        assert len(lines) == 1 or "Usage" in err, (args, err)
        assert words in err, (args, err)
    assert table_items(db, table) == deployed
    assert not (repo / "@recoveries").exists()


def test_an_unfinished_recovery_must_be_resumed_or_undone_and_is_listed(
    db: Db, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_table(db, n=14, nasty=False)
    repo = tmp_path / "repo"
    ref = backup(db, table, repo)
    bad_deploy(db, table)
    stop = threading.Event()

    def interrupt(event: Event) -> None:
        if isinstance(event, Step) and event.text.startswith("saving the live state"):
            stop.set()

    with pytest.raises(Exception, match="interrupted"):
        recover_api(
            settings_for(db),
            ref,
            table=None,
            selection=Selection(),
            params=RecoverParams(),
            emit=interrupt,
            stop=stop,
        )
    code, _, err = run(capsys, "recover", ref, "--endpoint-url", db.server.endpoint_url)
    assert code == 2 and "did not finish: give --resume" in err, err
    code, out, _ = run(capsys, "list", "--recoveries", "--repo", str(repo), "--json")
    (row,) = orjson.loads(out)
    assert row["status"] == "interrupted" and row["table"] == table and row["planned"] > 0
    code, report = recover(capsys, db, ref, "--resume")
    assert code == 0 and report["resumed"], report
    code, out, _ = run(capsys, "list", "--recoveries", "--repo", str(repo))
    assert report["recovery_id"] in out and "done" in out


def test_on_a_terminal_each_item_and_the_outcome_are_shown(
    dynalite: Server, tmp_path: Path
) -> None:
    from tests.test_demo import run_on_terminal
    from tests.test_render import terminal_screen

    db = db_for(dynalite)
    table = make_table(db, n=7, nasty=False)
    repo = tmp_path / "repo"
    ref = backup(db, table, repo)
    db.client.delete_item(TableName=table, Key=key("p1", 1))
    db.client.update_item(
        TableName=table,
        Key=key("p2", 2),
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": "-1"}},
    )
    old = dict(os.environ)
    os.environ.update(aws_env(dynalite))
    try:
        base = [sys.executable, "-m", "hippolyte", "recover", ref, "--endpoint-url"]
        dry = terminal_screen(run_on_terminal([*base, dynalite.endpoint_url, "--dry-run"]))
        done = terminal_screen(run_on_terminal([*base, dynalite.endpoint_url]))
    finally:
        os.environ.clear()
        os.environ.update(old)
    text = "\n".join(dry)
    assert f"recover would write 2 items into {table}; nothing changed" in text, text
    assert 're-create {"pk":{"S":"p1"},"sk":{"N":"1"}}' in text
    assert 'put back  {"pk":{"S":"p2"},"sk":{"N":"2"}}' in text
    assert 'v: {"N":"-1"} -> {"N":"20"}' in text
    text = "\n".join(done)
    assert "put back 2, deleted 0, already so 0, skipped 0" in text, text
    assert "proven: 2 items read back" in text
    assert "recover --undo " in text
