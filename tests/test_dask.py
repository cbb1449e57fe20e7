"""The Dask engine on a LocalCluster of worker processes: exact backups, and a worker killed
mid-backup whose units are rescheduled and resume from their checkpoints."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.engines import dask_engine
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.sample_tables import order_item
from hippolyte.repo.verify import verify
from tests.corpus import same_items
from tests.helpers import backup_lines, db_for, run
from tests.support.servers import Server

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.servers
ORDER_KEY = (("customer", "S"), ("order", "N"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0", host="127.0.0.1"
    ) as c:
        yield c
        dask_engine.close_clients()  # before the cluster: no reconnect attempts at exit


def test_cli_backup_on_dask_is_exact(
    dynalite: Server, cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    items = [order_item(i) for i in range(300)]
    table = db.table(key=ORDER_KEY, items=items)
    repo = tmp_path / "repo"
    code, out, err = run(
        capsys,
        "backup",
        table,
        "--repo",
        str(repo),
        "--engine",
        "dask",
        "--scheduler",
        cluster.scheduler_address,
        "--segments",
        "6",
        "--endpoint-url",
        dynalite.endpoint_url,
        "--json",
    )
    assert code == 0, err
    assert "Dask dashboard" in err
    result = orjson.loads(out)["results"][0]
    assert result["item_count"] == 300
    storage = open_storage(str(repo))
    from hippolyte.core.model import BackupRef

    ref = BackupRef(repo=str(repo), table=table, backup_id=result["ref"]["backup_id"])
    assert verify(storage, ref).ok
    lines = backup_lines(storage, ref)
    assert same_items([orjson.loads(x)["Item"] for x in lines], items)


def test_worker_killed_mid_backup(dynamodb_local: Server, cluster: Any, tmp_path: Path) -> None:
    # DynamoDB Local: dynalite (Node) exits when a client is killed in the middle of a request
    _worker_killed(dynamodb_local, cluster, tmp_path)


def _worker_killed(dynalite: Server, cluster: Any, tmp_path: Path) -> None:
    db = db_for(dynalite)
    items = [order_item(i) for i in range(600)]
    table = db.table(key=ORDER_KEY, items=items, rcu=30)
    storage = open_storage(str(tmp_path / "repo"))
    params = BackupParams(
        engine="dask", scheduler=cluster.scheduler_address, segments=4, file_max_raw_bytes=20_000
    )
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.extend(
            backup_tables(
                [table], conn=db.conn, storage=storage, params=params, emit=lambda e: None
            )
        )
    )
    thread.start()
    victim = _worker_with_a_checkpointed_unit(cluster.scheduler_address, storage)
    with distributed.Client(cluster.scheduler_address) as client:
        with contextlib.suppress(OSError):  # the worker dies before it can answer
            client.run(os._exit, 1, workers=[victim])  # a hard crash of one worker process
    thread.join(timeout=120)
    (result,) = results
    assert result.ok, result.error
    assert result.item_count == len(items)
    assert verify(storage, result.ref).ok
    lines = backup_lines(storage, result.ref)
    assert len(lines) == len(set(lines)) == len(items)
    assert same_items([orjson.loads(x)["Item"] for x in lines], items)
    assert not [k for k in storage.list(result.ref.prefix) if "_checkpoints" in k]
    from hippolyte.repo.catalog import load_descriptor

    attempts: dict[str, set[str]] = {}
    for f in load_descriptor(storage, result.ref)["files"]:
        segment, _, attempt = f.key.removeprefix("data/").removesuffix(".json.gz").split("-")
        attempts.setdefault(segment, set()).add(attempt)
    assert any(len(a) > 1 for a in attempts.values()), f"no resumed unit: {attempts}"


def _worker_with_a_checkpointed_unit(scheduler: str, storage: Any) -> str:
    """A worker running a unit that has committed at least one file (so it must resume)."""
    deadline = time.monotonic() + 60
    with distributed.Client(scheduler) as client:
        while time.monotonic() < deadline:
            checkpointed = {
                key.rsplit("/", 1)[1].removesuffix(".json")
                for key in storage.list("")
                if "/_checkpoints/" in key
            }
            for worker, keys in client.processing().items():
                segments = {f"{int(k.rsplit('-', 2)[-2]):05d}" for k in keys}
                if segments & checkpointed:
                    return str(worker)
            time.sleep(0.05)
    raise AssertionError("no running unit checkpointed in time")


def test_unreachable_scheduler_is_a_clear_error(
    dynalite: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT", "1s")  # (nothing listens there)
    table = db_for(dynalite).table(items=[{"pk": {"S": "a"}}])
    code, _, err = run(
        capsys,
        "backup",
        table,
        "--repo",
        str(tmp_path / "repo"),
        "--engine",
        "dask",
        "--scheduler",
        "tcp://127.0.0.1:9",
        "--endpoint-url",
        dynalite.endpoint_url,
    )
    assert code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err
