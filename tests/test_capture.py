"""capture: DynamoDB Streams into change sets, on DynamoDB Local and moto (both serve Streams;
dynalite does not). The committed change sets, replayed in order (the last change of a key
wins, one without a new image deletes it), must give exactly the table's state; a capture
killed with SIGKILL and restarted loses nothing; SIGTERM commits and exits 0; gaps are
recorded, never papered over. Lineage (parents before children) is tested on a recorded
multi-shard stream, since neither server splits shards."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hippolyte.adapters import streams
from hippolyte.adapters.storage import open_storage
from hippolyte.core.events import Event
from hippolyte.engines import capture as engine
from hippolyte.ops.capture import CaptureParams, capture
from hippolyte.repo import capture_state, changes
from tests import corpus
from tests.helpers import Db, db_for, run
from tests.support import faults
from tests.support.faults import FaultProxy
from tests.support.servers import Server, aws_env

pytestmark = pytest.mark.servers
STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


@pytest.fixture(
    params=[pytest.param("dynamodb_local"), pytest.param("moto_server")], scope="module"
)
def streams_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(request.param)
    return server


def make_table(db: Db, *, stream: bool = True) -> str:
    name = f"cap-{time.monotonic_ns()}"
    spec: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        spec["StreamSpecification"] = STREAM
    db.client.create_table(**spec)
    db.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    return name


def has_empty_map(value: Any) -> bool:
    if isinstance(value, dict):
        if "M" in value and value["M"] == {}:
            return True
        return any(has_empty_map(v) for v in value.values())
    if isinstance(value, list):
        return any(has_empty_map(v) for v in value)
    return False


def item_pool(db: Db, attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The generated attributes and the hostile corpus, as far as the server streams them:
    DynamoDB Local drops the type of an empty map in stream images (tested on its own)."""
    pool = [a for a in attrs] + [
        {k: v for k, v in i.items() if k != "pk"} for i in corpus.nasty_items()[:-1]
    ]
    if db.server.name == "dynamodb-local":
        pool = [a for a in pool if not has_empty_map(a)]
    return pool or [{}]


def writer(db: Db, table: str, pool: list[dict[str, Any]], *, ops: int, seed: int) -> None:
    """Puts, updates and deletes over 150 keys, in one thread (one order of writes)."""
    rnd = random.Random(seed)
    for n in range(ops):
        key = {"pk": {"S": f"k{rnd.randrange(150)}"}}
        roll = rnd.random()
        if roll < 0.6:
            db.client.put_item(TableName=table, Item={**rnd.choice(pool), **key})
        elif roll < 0.85:
            db.client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #a = :v",
                ExpressionAttributeNames={"#a": "updated"},
                ExpressionAttributeValues={":v": {"N": str(n)}},
            )
        else:
            db.client.delete_item(TableName=table, Key=key)


def replayed(root: Path, table: str) -> dict[Any, Any]:
    """The change sets replayed in order; also checks that each shard's sequence ranges
    follow each other without overlap (nothing read twice into the chain)."""
    storage = open_storage(str(root))
    state: dict[Any, Any] = {}
    last: dict[str, int] = {}
    sets = changes.change_sets(storage, table)
    for cs in sets:
        for entry in cs.source.get("shards", []):
            first, end = int(entry["firstSequence"]), int(entry["lastSequence"])
            assert first > last.get(entry["shardId"], -1), (cs.id, entry)
            last[entry["shardId"]] = end
        for change in changes.read_changes(storage, cs):
            key = corpus.normal_item(orjson.loads(change.keys))
            if change.new is None:
                state.pop(key, None)
            else:
                state[key] = corpus.normal_item(orjson.loads(change.new))
    return state


def table_state(db: Db, table: str) -> dict[Any, Any]:
    out = {}
    for page in db.client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            out[corpus.normal_item({"pk": item["pk"]})] = corpus.normal_item(item)
    return out


def run_capture(db: Db, root: Path, *tables: str, **params: Any) -> list[Any]:
    events: list[Event] = []
    stop = params.pop("stop", None) or threading.Event()
    return capture(
        list(tables),
        conn=db.conn,
        storage=open_storage(str(root)),
        params=CaptureParams(**{"flush_seconds": 0.3, "poll_seconds": 0.1, **params}),
        emit=events.append,
        stop=stop,
    )


def cli_capture(
    server: Server, root: Path, *args: str, flush: float = 0.3
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **aws_env(server)}
    env.pop("AWS_PROFILE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "capture", *args, "--repo", str(root), "--json"]
        + ["--endpoint-url", server.endpoint_url, "--flush-seconds", str(flush)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def wait_for_sets(root: Path, table: str, n: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while len(list((root / table / "@changes").glob("*/_SUCCESS"))) < n:
        assert proc.poll() is None, "capture ended early"
        assert time.monotonic() < deadline
        time.sleep(0.05)


# --- the whole path, while a writer writes ------------------------------------------------------


@settings(
    max_examples=2,  # the first example is hypothesis's simplest (empty items)
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(attrs=st.lists(corpus.attributes, min_size=30, max_size=30))
def test_capture_while_writing_replays_to_the_table(
    streams_server: Server, tmp_path_factory: pytest.TempPathFactory, attrs: list[Any]
) -> None:
    """500 writes per example while capture runs, half of them after it has committed a
    change set (so that it surely commits while writes go on, however fast the writer is
    against the capture's start); stop; capture --once; replay == scan."""
    db = db_for(streams_server)
    root = tmp_path_factory.mktemp("repo")
    table = make_table(db)
    stop = threading.Event()
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.extend(run_capture(db, root, table, stop=stop)))
    t.start()
    try:
        pool = item_pool(db, attrs)
        writer(db, table, pool, ops=250, seed=1)
        deadline = time.monotonic() + 30
        while not list((root / table / "@changes").glob("*/_SUCCESS")):
            assert t.is_alive() and time.monotonic() < deadline, "no change set committed"
            time.sleep(0.05)
        writer(db, table, pool, ops=250, seed=2)
    finally:
        stop.set()
        t.join(30)
    (first,) = results
    assert first.status == "stopped" and first.records > 0 and first.change_sets >= 2, first
    (last,) = run_capture(db, root, table, once=True)
    assert last.status == "caught-up" and last.gaps == [], last
    assert replayed(root, table) == table_state(db, table)
    sets = changes.change_sets(open_storage(str(root)), table)
    assert all(a.end == b.start for a, b in zip(sets, sets[1:], strict=False))  # no hole


def test_kill_9_then_restart_loses_nothing(streams_server: Server, tmp_path: Path) -> None:
    db = db_for(streams_server)
    root = tmp_path / "repo"
    table = make_table(db)
    pool = item_pool(db, [{"a": {"S": "x"}}, {"b": {"N": "1"}}])
    w = threading.Thread(target=writer, args=(db, table, pool), kwargs={"ops": 1000, "seed": 2})
    w.start()
    proc = cli_capture(streams_server, root, table)
    try:
        wait_for_sets(root, table, 2, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    w.join()
    (result,) = run_capture(db, root, table, once=True)
    assert result.status == "caught-up" and result.gaps == [], result
    assert replayed(root, table) == table_state(db, table)


def test_sigterm_commits_and_exits_0(streams_server: Server, tmp_path: Path) -> None:
    """No periodic commit (a flush every 60 s): what was read is committed on SIGTERM."""
    db = db_for(streams_server)
    root = tmp_path / "repo"
    table = make_table(db)
    proc = cli_capture(streams_server, root, table, flush=60)
    for i in range(50):
        db.client.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    db.client.delete_item(TableName=table, Key={"pk": {"S": "k0"}})
    time.sleep(3)  # read (polls every second), not committed
    assert not list(root.glob(f"{table}/@changes/*/_SUCCESS"))
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    report = orjson.loads(out)
    assert report["ok"] and report["results"][0]["status"] == "stopped", report
    assert report["results"][0]["records"] == 51
    assert replayed(root, table) == table_state(db, table)
    checkpoint = orjson.loads((root / table / "@capture" / "checkpoint.json").read_bytes())
    (only,) = (root / table / "@changes").iterdir()
    assert checkpoint["changeSet"] == only.name


def test_a_table_without_a_stream_is_left_alone_unless_asked(
    dynamodb_local: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynamodb_local)
    table = make_table(db, stream=False)
    root = str(tmp_path / "repo")
    args = ("capture", table, "--repo", root, "--once", "--json")
    code, out, _ = run(capsys, *args, "--endpoint-url", dynamodb_local.endpoint_url)
    (result,) = orjson.loads(out)["results"]
    assert code == 1 and result["status"] == "no-stream" and "--enable-stream" in result["error"]
    assert "StreamSpecification" not in db.client.describe_table(TableName=table)["Table"]
    code, out, _ = run(
        capsys, *args, "--enable-stream", "--endpoint-url", dynamodb_local.endpoint_url
    )
    (result,) = orjson.loads(out)["results"]
    assert code == 0 and result["enabled"] and result["status"] == "caught-up", result
    spec = db.client.describe_table(TableName=table)["Table"]["StreamSpecification"]
    assert spec == STREAM


# --- gaps ---------------------------------------------------------------------------------------


def _chain(root: Path, table: str) -> list[changes.ChangeSet]:
    return changes.change_sets(open_storage(str(root)), table)


def _assert_one_gap(root: Path, table: str, cause: str) -> dict[str, Any]:
    (gap,) = capture_state.read_gaps(open_storage(str(root)), table)
    assert gap["cause"] == cause, gap
    sets = _chain(root, table)
    holes = [(a, b) for a, b in zip(sets, sets[1:], strict=False) if a.end != b.start]
    ((before, after),) = holes
    assert (before.end, after.start) == (gap["fromMicros"], gap["toMicros"])
    assert after.source["gapBefore"]["cause"] == cause
    return gap


def test_a_re_enabled_stream_is_a_gap(dynamodb_local: Server, tmp_path: Path) -> None:
    """Disabled and enabled again: the changes in between were never streamed."""
    db = db_for(dynamodb_local)
    root = tmp_path / "repo"
    table = make_table(db)
    db.client.put_item(TableName=table, Item={"pk": {"S": "a"}})
    run_capture(db, root, table, once=True)
    db.client.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
    db.client.put_item(TableName=table, Item={"pk": {"S": "unseen"}})
    db.client.update_table(TableName=table, StreamSpecification=STREAM)
    db.client.put_item(TableName=table, Item={"pk": {"S": "b"}})
    (result,) = run_capture(db, root, table, once=True)
    assert result.status == "caught-up" and len(result.gaps) == 1
    gap = _assert_one_gap(root, table, "stream-replaced")
    assert gap["streamArn"] == result.stream_arn
    state = replayed(root, table)
    assert len(state) == 2 and len(table_state(db, table)) == 3  # "unseen" is in the gap


def test_a_lost_position_is_a_gap(streams_server: Server, tmp_path: Path) -> None:
    """A checkpointed sequence number the shard does not hold: recorded, re-read from the
    oldest record, the replay still exact."""
    db = db_for(streams_server)
    root = tmp_path / "repo"
    table = make_table(db)
    for i in range(20):
        db.client.put_item(TableName=table, Item={"pk": {"S": f"k{i % 7}"}, "v": {"N": str(i)}})
    run_capture(db, root, table, once=True)
    path = root / table / "@capture" / "checkpoint.json"
    doc = orjson.loads(path.read_bytes())
    for shard in doc["shards"].values():
        shard["sequence"] = "0" * len(shard["sequence"])
    path.write_bytes(orjson.dumps(doc))
    db.client.delete_item(TableName=table, Key={"pk": {"S": "k1"}})
    (result,) = run_capture(db, root, table, once=True)
    assert result.status == "caught-up" and result.records == 21, result
    _assert_one_gap(root, table, "position-lost")
    assert replayed_tolerant(root, table) == table_state(db, table)


def replayed_tolerant(root: Path, table: str) -> dict[Any, Any]:
    """Replay without the no-overlap check (a gap re-reads a shard from its oldest record)."""
    storage = open_storage(str(root))
    state: dict[Any, Any] = {}
    for cs in changes.change_sets(storage, table):
        for change in changes.read_changes(storage, cs):
            key = corpus.normal_item(orjson.loads(change.keys))
            if change.new is None:
                state.pop(key, None)
            else:
                state[key] = corpus.normal_item(orjson.loads(change.new))
    return state


@pytest.fixture
def stream_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(faults._ERRORS, "trimmed", (400, "TrimmedDataAccessException"))
    monkeypatch.setitem(faults._ERRORS, "expired", (400, "ExpiredIteratorException"))


def test_trimmed_records_are_a_gap(
    dynamodb_local: Server, tmp_path: Path, stream_faults: None
) -> None:
    db = db_for(dynamodb_local)
    root = tmp_path / "repo"
    table = make_table(db)
    db.client.put_item(TableName=table, Item={"pk": {"S": "a"}})
    run_capture(db, root, table, once=True)
    db.client.put_item(TableName=table, Item={"pk": {"S": "b"}})
    schedule = ["trimmed"] + ["ok"] * 100
    with FaultProxy(
        upstream=dynamodb_local.endpoint_url, operation="GetShardIterator", schedule=schedule
    ) as proxy:
        via_conn = db.conn.__class__(region="us-east-1", endpoint_url=proxy.endpoint_url)
        (result,) = capture(
            [table],
            conn=via_conn,
            storage=open_storage(str(root)),
            params=CaptureParams(flush_seconds=0.3, poll_seconds=0.1, once=True),
            emit=lambda _: None,
            stop=threading.Event(),
        )
    assert result.status == "caught-up" and proxy.counts["trimmed"] == 1
    _assert_one_gap(root, table, "trimmed")
    assert replayed_tolerant(root, table) == table_state(db, table)


def test_throttling_and_expired_iterators_lose_nothing(
    moto_server: Server, tmp_path: Path, stream_faults: None
) -> None:
    db = db_for(moto_server)
    root = tmp_path / "repo"
    table = make_table(db)
    for i in range(30):
        db.client.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    schedule = ["ok", "decrease-limit", "expired", "ok", "expired", "ok"]
    with FaultProxy(
        upstream=moto_server.endpoint_url, operation="GetRecords", schedule=schedule
    ) as proxy:
        conn = db.conn.__class__(region="us-east-1", endpoint_url=proxy.endpoint_url)
        stop = threading.Event()
        done: list[Any] = []
        t = threading.Thread(
            target=lambda: done.extend(
                capture(
                    [table],
                    conn=conn,
                    storage=open_storage(str(root)),
                    params=CaptureParams(flush_seconds=0.2, poll_seconds=0.05),
                    emit=lambda _: None,
                    stop=stop,
                )
            )
        )
        t.start()
        for i in range(30, 60):
            db.client.put_item(TableName=table, Item={"pk": {"S": f"k{i % 40}"}})
        time.sleep(1.5)
        stop.set()
        t.join(30)
    (result,) = done
    assert result.status == "stopped" and result.gaps == [], result
    assert proxy.counts["expired"] >= 2 and proxy.counts["decrease-limit"] >= 1
    assert replayed(root, table) == table_state(db, table)


def test_dynamodb_locals_untyped_empty_map_is_named(dynamodb_local: Server, tmp_path: Path) -> None:
    """DynamoDB Local streams {"M": {}} as {}: the capture stops before that record with an
    error that says so, having committed what came before it."""
    db = db_for(dynamodb_local)
    root = tmp_path / "repo"
    table = make_table(db)
    db.client.put_item(TableName=table, Item={"pk": {"S": "fine"}})
    db.client.put_item(TableName=table, Item={"pk": {"S": "quirk"}, "m": {"M": {}}})
    (result,) = run_capture(db, root, table, once=True)
    assert result.status == "failed" and "empty map" in (result.error or ""), result
    assert result.exit_code == 7
    assert list(replayed(root, table)) == [corpus.normal_item({"pk": {"S": "fine"}})]


# --- lineage, on a recorded multi-shard stream ---------------------------------------------------


def _shard(sid: str, parent: str | None, start: int, end: int | None) -> dict[str, Any]:
    rng: dict[str, Any] = {"StartingSequenceNumber": f"{start:021d}"}
    if end is not None:
        rng["EndingSequenceNumber"] = f"{end:021d}"
    out: dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": rng}
    if parent:
        out["ParentShardId"] = parent
    return out


# As DynamoDB describes a stream after a split and a rollover, listed out of lineage order,
# over two pages: p (closed) -> c1, c2 (c1 closed -> g1); r is a root with an expired parent.
RECORDED_SHARDS = [
    _shard("shardId-c2", "shardId-p", 300, None),
    _shard("shardId-g1", "shardId-c1", 500, None),
    _shard("shardId-p", None, 100, 199),
    _shard("shardId-r", "shardId-expired", 50, None),
    _shard("shardId-c1", "shardId-p", 200, 299),
]


class RecordedStream:
    """DescribeStream pages, shard iterators and records of the recorded stream above: every
    shard has three records, one key written in each generation in turn."""

    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-29T00:00:00.000"

    def __init__(self) -> None:
        self.read: list[str] = []
        start = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
        self.records: dict[str, list[dict[str, Any]]] = {}
        for s in RECORDED_SHARDS:
            first = int(s["SequenceNumberRange"]["StartingSequenceNumber"])
            self.records[s["ShardId"]] = [
                {
                    "eventName": "MODIFY",
                    "dynamodb": {
                        "Keys": {"pk": {"S": "k"}},
                        "NewImage": {"pk": {"S": "k"}, "by": {"S": f"{s['ShardId']}/{i}"}},
                        "SequenceNumber": f"{first + i:021d}",
                        "ApproximateCreationDateTime": start + dt.timedelta(seconds=first + i),
                    },
                }
                for i in range(3)
            ]

    def describe_stream(self, StreamArn: str, **kw: Any) -> dict[str, Any]:  # noqa: N803
        page = RECORDED_SHARDS[3:] if kw.get("ExclusiveStartShardId") else RECORDED_SHARDS[:3]
        desc = {
            "StreamArn": self.arn,
            "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "CreationRequestDateTime": dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
            "Shards": page,
        }
        if not kw.get("ExclusiveStartShardId"):
            desc["LastEvaluatedShardId"] = page[-1]["ShardId"]
        return {"StreamDescription": desc}

    def get_shard_iterator(self, *, ShardId: str, **kw: Any) -> dict[str, Any]:  # noqa: N803
        return {"ShardIterator": f"{ShardId}|0"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        sid, at = ShardIterator.split("|")
        recs = self.records[sid][int(at) : int(at) + 2]
        self.read += [sid] * len(recs)
        closed = next(s for s in RECORDED_SHARDS if s["ShardId"] == sid)["SequenceNumberRange"]
        end = int(at) + len(recs)
        if "EndingSequenceNumber" in closed and end >= len(self.records[sid]):
            return {"Records": recs}
        return {"Records": recs, "NextShardIterator": f"{sid}|{end}"}


def test_lineage_puts_parents_before_children() -> None:
    shards = streams.describe(RecordedStream(), RecordedStream.arn).shards
    assert len(shards) == 5
    order = [s.id for s in engine.lineage(shards)]
    assert order.index("shardId-p") < order.index("shardId-c1") < order.index("shardId-g1")
    assert order.index("shardId-p") < order.index("shardId-c2")
    assert order[0] == "shardId-r"  # its parent expired: a root, and the oldest


def test_closed_parents_are_read_to_their_end_before_their_children(tmp_path: Path) -> None:
    recorded = RecordedStream()
    cap = engine.TableCapture(
        client=recorded,
        storage=open_storage(str(tmp_path / "repo")),
        table="t",
        stream_arn=recorded.arn,
        settings=engine.CaptureSettings(flush_seconds=0, poll_seconds=0.01, once=True),
        emit=lambda _: None,
        stop=threading.Event(),
        clock=lambda: dt.datetime(2026, 11, 29, 1, tzinfo=dt.UTC),
    )
    summary = cap.run()
    assert summary.records == 15 and summary.ended == "caught-up", summary
    seen = recorded.read
    for parent, child in [("p", "c1"), ("p", "c2"), ("c1", "g1")]:
        last_parent = max(i for i, s in enumerate(seen) if s == f"shardId-{parent}")
        assert last_parent < seen.index(f"shardId-{child}")
    # the chain's last change of the key is the newest generation's
    storage = open_storage(str(tmp_path / "repo"))
    last = [
        c for cs in changes.change_sets(storage, "t") for c in changes.read_changes(storage, cs)
    ]
    assert orjson.loads(last[-1].new or b"")["by"]["S"] in {"shardId-g1/2", "shardId-c2/2"}
    checkpoint = capture_state.load_position(storage, "t")
    assert checkpoint is not None
    assert {k for k, v in checkpoint.shards.items() if v.done} == {"shardId-p", "shardId-c1"}


def test_one_capture_of_a_table_at_a_time(dynamodb_local: Server, tmp_path: Path) -> None:
    from hippolyte.repo.capture_state import lock_key
    from hippolyte.repo.lock import RepoLock

    db = db_for(dynamodb_local)
    table = make_table(db)
    storage = open_storage(str(tmp_path / "repo"))
    held = RepoLock(storage=storage, lease_s=60, purpose="capture", key=lock_key(table))
    assert held.acquire()
    try:
        (result,) = capture(
            [table],
            conn=db.conn,
            storage=storage,
            params=CaptureParams(flush_seconds=0.3, poll_seconds=0.1, once=True),
            emit=lambda _: None,
            stop=threading.Event(),
        )
    finally:
        held.release()
    assert result.status == "busy" and result.ok and result.records == 0
    assert changes.change_sets(storage, table) == []
