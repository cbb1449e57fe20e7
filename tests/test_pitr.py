"""A table as of any instant: a full backup (a scan smeared over its duration) plus change
sets, computed exactly. The test keeps its own log of writes and knows the true state at every
instant; the backup holds each item as the scan read it, at its own moment inside the scan."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import ConfigError
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.formats.base import checked_items
from hippolyte.ops import pitr
from hippolyte.ops.pitr import PointInTime
from hippolyte.repo import changes, manifest, writer
from hippolyte.repo.changes import Change, ChangeSetWriter

TABLE = "orders"
T0 = dt.datetime(2026, 11, 28, 14, 0, 0, tzinfo=dt.UTC)
KEYS = 6
STEP = 1_000_000  # a microsecond stamp per event: one second apart


def at(second: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=second)


def description() -> dict[str, Any]:
    return {
        "TableName": TABLE,
        "TableArn": f"arn:aws:dynamodb:us-east-1:000000000000:table/{TABLE}",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    }


def item(k: int, v: int) -> bytes:
    return orjson.dumps({"pk": {"S": f"k{k}"}, "v": {"N": str(v)}})


def keys(k: int) -> bytes:
    return orjson.dumps({"pk": {"S": f"k{k}"}})


Event = tuple[int, int, int | None]  # second, key, new value (None: delete)


def replay(events: list[Event], second: float) -> dict[int, int]:
    """The true state after every event at or before ``second``; all keys start at value 0."""
    state: dict[int, int] = {k: 0 for k in range(KEYS)}
    for when, k, v in events:
        if when <= second:
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
    return state


def write_backup(
    storage: Any, *, start: float, end: float, reads: list[float], events: list[Event]
) -> None:
    """A full backup whose scan ran from ``start`` to ``end`` and read key k at ``reads[k]``."""
    ref = BackupRef(repo=storage.url, table=TABLE, backup_id=manifest.backup_id(at(start)))
    out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(0, 0))
    for k in range(KEYS):
        state = replay(events, reads[k])
        if k in state:
            out.write_items([item(k, state[k])])
    writer.commit(
        storage,
        ref=ref,
        info=TableInfo.from_description(description()),
        extras={},
        files=[out.commit()],
        start=at(start),
        end=at(end),
        run={},
        consumed=0.0,
        source={},
    )


def write_changes(storage: Any, events: list[Event], *, start: float, end: float) -> None:
    w = ChangeSetWriter(storage, table=TABLE, start=at(start))
    previous = replay(events, start - 0.5)
    for when, k, v in events:
        if start <= when < end:
            old = item(k, previous[k]) if k in previous else None
            new = item(k, v) if v is not None else None
            w.add(Change(stamp=changes.micros(at(when)), keys=keys(k), new=new, old=old))
        if when < end:
            previous = replay(events, when)
    w.commit(end=at(end), source={"kind": "test"})


def state_of(source: Any) -> dict[int, int]:
    out = {}
    for f in source.files:
        for line in checked_items(source, f, schema=None):
            doc = orjson.loads(line)
            out[int(doc["pk"]["S"][1:])] = int(doc["v"]["N"])
    return out


events_strategy = st.lists(
    st.tuples(st.integers(0, KEYS - 1), st.one_of(st.none(), st.integers(1, 99))),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(writes=events_strategy, data=st.data())
def test_every_instant_of_the_chain_is_exact_even_inside_the_scan(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[int, int | None]], data: Any
) -> None:
    events = [(10 + i, k, v) for i, (k, v) in enumerate(writes)]  # one a second from 10 s
    last = events[-1][0]
    start = data.draw(st.integers(0, last), label="scan start")
    end = data.draw(st.integers(start, last + 1), label="scan end")
    reads = [data.draw(st.floats(start, end), label=f"read k{k}") for k in range(KEYS)]
    repo = tmp_path_factory.mktemp("repo")
    storage = open_storage(str(repo))
    write_backup(storage, start=start, end=end, reads=reads, events=events)
    cut = data.draw(st.integers(min(start, 5) + 1, last + 2), label="sets split at")
    write_changes(storage, events, start=min(start, 5), end=cut)
    write_changes(storage, events, start=cut, end=last + 3)
    for second in sorted({start, end, (start + end) / 2, last, last + 2, *(e[0] for e in events)}):
        if not start <= second < last + 3:
            continue
        source = pitr.materialize(storage, PointInTime(table=TABLE, at=at(second)))
        assert state_of(source) == replay(events, second), second


def test_an_instant_outside_the_history_is_refused_with_the_nearest(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    events: list[Event] = [(12, 1, 5)]
    write_backup(storage, start=10, end=11, reads=[10.5] * KEYS, events=events)
    write_changes(storage, events, start=10, end=20)
    write_changes(storage, events, start=30, end=40)  # a hole from 20 to 30
    for second, near in ((25, "2026-11-28T14:00:19.999Z"), (5, "2026-11-28T14:00:10.000Z")):
        with pytest.raises(ConfigError, match=f"cannot be restored.*nearest restorable: {near}"):
            pitr.materialize(storage, PointInTime(table=TABLE, at=at(second)))
    assert state_of(pitr.materialize(storage, PointInTime(table=TABLE, at=at(15)))) == replay(
        events, 15
    )


def test_a_time_must_have_a_zone() -> None:
    with pytest.raises(ConfigError, match="no time zone"):
        pitr.split_ref("orders@2026-11-28T14:03:07")
    assert pitr.split_ref("orders@2026-11-28T14:03:07Z") == ("orders", at(187))
    assert pitr.split_ref("orders/2026-11-28-14-00-00") is None


def test_the_history_lists_ranges_and_gaps(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    events: list[Event] = [(12, 1, 5)]
    write_backup(storage, start=10, end=11, reads=[10.5] * KEYS, events=events)
    write_changes(storage, events, start=10, end=20)
    write_changes(storage, events, start=30, end=40)
    doc = pitr.history_report(storage, TABLE, now=at(45))
    assert doc["ranges"] == [
        {
            "from": "2026-11-28T14:00:10.000Z",
            "to": "2026-11-28T14:00:20.000Z",
            "backup": "2026-11-28-14-00-10",
            "changeSets": 1,
        }
    ]
    assert doc["gaps"] == [
        {
            "from": "2026-11-28T14:00:20.000Z",
            "to": "2026-11-28T14:00:30.000Z",
            "cause": "no change set covers this time",
            "detail": None,
        }
    ]
    assert doc["lagSeconds"] == 5.0 and doc["changeSets"] == 2


@pytest.fixture(params=["dynalite", "dynamodb_local"])
def server_db(request: pytest.FixtureRequest) -> Any:
    from tests.helpers import db_for

    return db_for(request.getfixturevalue(request.param))


@pytest.mark.servers
def test_restore_diff_and_recover_at_an_instant_on_a_real_server(
    server_db: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writes after a real backup, logged as a capture would commit them; then the table as of
    an instant between them is restored, diffed against the live table and recovered into it,
    each exactly the state the log says."""
    import time

    from hippolyte.adapters import dynamodb
    from hippolyte.ops.backup import BackupParams, backup_tables
    from tests.helpers import run

    db = server_db
    table = db.table(key=(("pk", "S"),), items=[orjson.loads(item(k, 0)) for k in range(KEYS)])
    repo = tmp_path / "repo"
    storage = open_storage(str(repo))
    began = dt.datetime.now(dt.UTC)
    (result,) = backup_tables(
        [table], conn=db.conn, storage=storage, params=BackupParams(), emit=lambda e: None
    )
    assert result.ok
    state = {k: item(k, 0) for k in range(KEYS)}
    log: list[tuple[dt.datetime, Change]] = []
    for n, (k, v) in enumerate([(1, 7), (2, None), (3, 8), (1, 9), (4, None), (2, 5)]):
        time.sleep(0.01)
        when = dt.datetime.now(dt.UTC)
        if v is None:
            db.client.delete_item(TableName=table, Key={"pk": {"S": f"k{k}"}})
        else:
            db.client.put_item(TableName=table, Item=orjson.loads(item(k, v)))
        new = item(k, v) if v is not None else None
        log.append(
            (when, Change(stamp=changes.micros(when), keys=keys(k), new=new, old=state.get(k)))
        )
        if new is None:
            state.pop(k, None)
        else:
            state[k] = new
        if n == 2:
            middle = dt.datetime.now(dt.UTC)
            expected = dict(state)
            time.sleep(0.01)
    w = ChangeSetWriter(storage, table=table, start=began - dt.timedelta(seconds=1))
    for _, c in log:
        w.add(c)
    w.commit(end=dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=1), source={"kind": "test"})
    t = manifest.iso(middle)
    url = ["--endpoint-url", db.server.endpoint_url, "--repo", str(repo)]

    code, _, err = run(
        capsys, "restore", table, "--at", t, "--table", f"{table}-at", *url, "--json"
    )
    assert code == 0, err
    restored = {
        int(i["pk"]["S"][1:]): dynamodb.encode_item(i)
        for i in db.client.scan(TableName=f"{table}-at")["Items"]
    }
    assert {k: orjson.loads(v) for k, v in restored.items()} == {
        k: orjson.loads(v) for k, v in expected.items()
    }
    db.client.delete_table(TableName=f"{table}-at")

    out = tmp_path / "at.jsonl"
    code, _, err = run(capsys, "diff", f"{table}@{t}", "--live", "--out", str(out), *url)
    assert code == 1, err
    *lines, summary = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(int(d["key"]["pk"]["S"][1:]) for d in lines) == [1, 2, 4]  # after T
    assert summary["summary"]["before"]["source"].endswith(f"{table}@{t}")

    code, outp, err = run(capsys, "recover", f"{table}@{t}", "--delete-added", *url, "--json")
    assert code == 0, err
    assert orjson.loads(outp)["proven"] is True
    live = {
        int(i["pk"]["S"][1:]): orjson.loads(dynamodb.encode_item(i))
        for i in db.client.scan(TableName=table, ConsistentRead=True)["Items"]
    }
    assert live == {k: orjson.loads(v) for k, v in expected.items()}
    db.client.delete_table(TableName=table)
