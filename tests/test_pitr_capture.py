"""The whole history path on a real server: a writer changes a table while a full backup
scans it and while `capture` reads its stream; the table restored as of several instants
(one inside the backup's scan) is exactly what the writer's own log says it was then.

On moto, whose stream records carry the write's time to the millisecond. (DynamoDB Local
stamps them to the minute: its instants are minutes; the demo and tests/test_capture.py cover
it.) An instant is only asked where no write was in flight, so the log is unambiguous."""

from __future__ import annotations

import datetime as dt
import functools
import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.events import discard
from hippolyte.formats.base import checked_items
from hippolyte.ops import pitr
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.capture import CaptureParams, capture
from hippolyte.ops.pitr import PointInTime
from tests.corpus import normal_item
from tests.helpers import db_for
from tests.support.servers import Server

pytestmark = pytest.mark.servers
KEYS = 60

Write = tuple[float, float, str, dict[str, Any] | None]  # began, ended, key, item (None: delete)


def now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def writer(client: Any, table: str, log: list[Write], *, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for n in range(count):
        k = f"k{rng.randrange(KEYS)}"
        began = now()
        if rng.random() < 0.2:
            client.delete_item(TableName=table, Key={"pk": {"S": k}})
            item = None
        else:
            item = {
                "pk": {"S": k},
                "n": {"N": str(n)},
                "doc": {"M": {"v": {"N": str(rng.randint(0, 9))}, "s": {"SS": ["a", str(n)]}}},
            }
            if rng.random() < 0.5:
                client.put_item(TableName=table, Item=item)
            else:
                client.update_item(
                    TableName=table,
                    Key={"pk": {"S": k}},
                    UpdateExpression="SET n = :n, doc = :d",
                    ExpressionAttributeValues={":n": item["n"], ":d": item["doc"]},
                )
        log.append((began, now(), k, item))
        time.sleep(0.004)  # a pause between writes: an instant there is unambiguous


def state_at(initial: dict[str, Any], log: list[Write], t: float) -> dict[str, Any]:
    state = dict(initial)
    for _, ended, k, item in log:
        if ended <= t:
            if item is None:
                state.pop(k, None)
            else:
                state[k] = item
    return state


def between(log: list[Write], t: float) -> float:
    """The middle of the pause between two writes nearest to ``t`` (or ``t`` itself, after
    the last write): an instant at which the log says exactly what the table held."""
    last = max(e for _, e, _, _ in log)
    if t > last:
        return t
    spans = sorted((b, e) for b, e, _, _ in log)
    pauses = [(e, b2) for (_, e), (b2, _) in zip(spans, spans[1:], strict=False) if b2 > e]
    start, end = min(pauses, key=lambda p: abs((p[0] + p[1]) / 2 - t))
    return (start + end) / 2


def test_restore_at_instants_during_and_after_a_backup_is_exact(
    moto_server: Server, tmp_path: Path
) -> None:
    db = db_for(moto_server)
    table = db.table(key=(("pk", "S"),), prefix="hist")
    initial = {f"k{i}": {"pk": {"S": f"k{i}"}, "n": {"N": "-1"}} for i in range(KEYS)}
    for item in initial.values():
        db.client.put_item(TableName=table, Item=item)
    db.client.update_table(
        TableName=table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    storage = open_storage(str(tmp_path / "repo"))
    stop = threading.Event()
    captured: list[Any] = []
    capturer = threading.Thread(
        target=lambda: captured.extend(
            capture(
                [table],
                conn=db.conn,
                storage=storage,
                params=CaptureParams(flush_seconds=0.5, poll_seconds=0.1),
                emit=discard,
                stop=stop,
            )
        )
    )
    capturer.start()
    time.sleep(1)
    log: list[Write] = []
    writing = threading.Thread(
        target=writer, args=(db.client, table, log), kwargs={"count": 600, "seed": 3}
    )
    writing.start()
    time.sleep(0.5)
    began = now()
    (result,) = backup_tables(
        [table], conn=db.conn, storage=storage, params=BackupParams(segments=2), emit=discard
    )
    ended = now()
    writing.join()
    assert result.ok
    time.sleep(2)  # past the last write, for the capture to commit it
    stop.set()
    capturer.join()
    assert captured and captured[0].ok, captured
    last = max(e for _, e, _, _ in log)
    (backup,), _ = pitr.history(storage, table)
    began = backup.start / 1e6  # the scan's start as the backup records it
    targets = [began + (ended - began) * f for f in (0.2, 0.35, 0.5, 0.65, 0.8)]
    targets += [ended + 0.2, (ended + last) / 2, last + 0.5]
    instants = sorted({t for t in map(functools.partial(between, log), targets) if t > began})
    for t in instants:
        at = dt.datetime.fromtimestamp(t, dt.UTC)
        source = pitr.materialize(storage, PointInTime(table=table, at=at))
        got = {}
        for f in source.files:
            for line in checked_items(source, f, schema=None):
                doc = orjson.loads(line)
                got[doc["pk"]["S"]] = normal_item(doc)
        expected = {k: normal_item(v) for k, v in state_at(initial, log, t).items()}
        assert got == expected, (at, began, ended)
    inside = [t for t in instants if began < t < ended]
    assert inside, "no instant inside the backup's scan was quiet enough to check"
