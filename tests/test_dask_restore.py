"""``restore --engine dask`` on a LocalCluster of worker processes: the check, the load and the
proof's digest as tasks; the table proven exact; a worker killed mid-load, its task run again
(puts are idempotent), the table still proven. On dynalite and DynamoDB Local."""

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
from hippolyte.core.errors import BackupCorrupt
from hippolyte.core.events import Event, Note
from hippolyte.engines import dask_engine
from hippolyte.formats.open import open_source
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.restore import RestoreParams
from hippolyte.ops.restore_dask import restore_over_dask
from hippolyte.ops.sample_tables import order_item
from hippolyte.repo import proofs
from tests.corpus import same_items
from tests.helpers import db_for, run
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
        dask_engine.close_clients()


def _backed_up(
    server: Server, tmp_path: Path, n: int, *, wcu: int = 1000
) -> tuple[Any, str, Any, list[Any]]:
    db = db_for(server)
    items = [order_item(i) for i in range(n)]
    table = db.table(key=ORDER_KEY, items=items, wcu=wcu)
    storage = open_storage(str(tmp_path / "repo"))
    params = BackupParams(segments=3, file_max_raw_bytes=15_000)  # several files
    (result,) = backup_tables([table], conn=db.conn, storage=storage, params=params,
                              emit=lambda e: None)  # fmt: skip
    assert result.ok, result.error
    return db, table, result.ref, items


@pytest.mark.parametrize("server", ["dynalite", "dynamodb_local"])
def test_cli_restore_on_dask_is_proven(
    server: str,
    request: pytest.FixtureRequest,
    cluster: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ddb: Server = request.getfixturevalue(server)
    db, table, ref, items = _backed_up(ddb, tmp_path, 400)
    code, out, err = run(
        capsys, "restore", str(ref), "--repo", str(tmp_path / "repo"), "--table", f"{table}-dask",
        "--engine", "dask", "--scheduler", cluster.scheduler_address,
        "--endpoint-url", ddb.endpoint_url, "--region", "us-east-1", "--state-dir",
        str(tmp_path / "state"), "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = orjson.loads(out.strip().splitlines()[-1])
    assert doc["engine"] == "dask" and doc["proof"]["ok"], doc
    assert doc["proof"]["table"]["items"] == doc["itemsWritten"] == 400
    assert same_items(db.stock_items(f"{table}-dask"), items)


def test_a_worker_killed_mid_load_is_replaced_and_the_table_proven(
    dynamodb_local: Server, cluster: Any, tmp_path: Path
) -> None:
    # DynamoDB Local: dynalite (Node) exits when a client is killed in the middle of a request
    # 240 WCU at the source, so the restored table gets 240 too (a restore gives a table at
    # least the source's capacity), half of it for the load: 600 writes at ~120/s, ~5 s
    db, table, ref, items = _backed_up(dynamodb_local, tmp_path, 600, wcu=240)
    storage = open_storage(str(tmp_path / "repo"))
    source = open_source(storage, ref.prefix, location=str(ref))
    assert len(source.files) >= 4
    params = RestoreParams(
        write_capacity=240, write_percent=0.5, workers=2, state_dir=tmp_path / "state"
    )  # fmt: skip
    reports: list[Any] = []
    errors: list[BaseException] = []

    def restore() -> None:
        try:
            reports.append(
                restore_over_dask(
                    source,
                    conn=db.conn,
                    table=f"{table}-killed",
                    params=params,
                    description=None,
                    scheduler=cluster.scheduler_address,
                    emit=lambda e: None,
                )  # fmt: skip
            )
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    thread = threading.Thread(target=restore)
    thread.start()
    victim = _worker_loading(cluster.scheduler_address)
    with distributed.Client(cluster.scheduler_address) as client:
        with contextlib.suppress(OSError):  # the worker dies before it can answer
            client.run(os._exit, 1, workers=[victim])
    thread.join(timeout=180)
    assert not errors, errors
    (report,) = reports
    assert report.proven and report.restored.count == len(items)
    assert same_items(db.stock_items(f"{table}-killed"), items)


def _worker_loading(scheduler: str) -> str:
    """A worker in the middle of a file's load."""
    deadline = time.monotonic() + 60
    with distributed.Client(scheduler) as client:
        while time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any(str(k).startswith("load_task") for k in keys):
                    time.sleep(0.3)  # let it write some of its items
                    return str(worker)
            time.sleep(0.05)
    raise AssertionError("no load task ran in time")


def test_dask_restore_records_its_check_and_a_later_one_only_hashes(
    dynalite: Server, cluster: Any, tmp_path: Path
) -> None:
    """As a local restore: the first restore on the cluster checks every file there and
    records the pass (proof.json); the next one hashes the stored files only (no check task)
    and is proven with the same backup digest; a file changed since is refused by its hash
    before any table is created."""
    db, table, ref, items = _backed_up(dynalite, tmp_path, 300)
    storage = open_storage(str(tmp_path / "repo"))
    source = open_source(storage, ref.prefix, location=str(ref))

    def restore(name: str) -> tuple[Any, list[Event]]:
        events: list[Event] = []
        report = restore_over_dask(
            source,
            conn=db.conn,
            table=name,
            params=RestoreParams(state_dir=tmp_path / f"state-{name}"),
            description=None,
            scheduler=cluster.scheduler_address,
            emit=events.append,
        )
        return report, events

    def notes(events: list[Event]) -> str:
        return "\n".join(e.text for e in events if isinstance(e, Note))

    first, events = restore(f"{table}-first")
    assert first.proven and "on the cluster" in notes(events)
    assert proofs.load(storage, ref.prefix) is not None
    second, events = restore(f"{table}-second")
    assert second.proven and second.backup == first.backup
    assert "on the cluster" not in notes(events) and proofs.PROOF in notes(events)
    assert same_items(db.stock_items(f"{table}-second"), items)

    key = source.files[0].key
    data = bytearray(storage.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    storage.put_bytes(key, bytes(data))
    with pytest.raises(BackupCorrupt, match=f"{key}.*sha256 mismatch"):
        restore(f"{table}-changed")
    assert f"{table}-changed" not in db.client.list_tables()["TableNames"]
