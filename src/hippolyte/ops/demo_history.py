"""The demo's history: `capture` keeps the orders table's changes from its stream while the
demo runs; after the bad deploy, the table as it was just before it is compared with the live
table (`diff demo-orders@T --live`) and restored (`restore --at T`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.config import Settings
from hippolyte.core.diff import key_of
from hippolyte.core.events import Emit, Step, discard
from hippolyte.ops.bad_deploy import BadDeploy
from hippolyte.ops.capture import CaptureParams, capture
from hippolyte.ops.sample_tables import ORDERS, ORDERS_KEY
from hippolyte.repo import changes, manifest


@contextlib.contextmanager
def capturing(settings: Settings, storage: Storage, client: Any, emit: Emit) -> Iterator[None]:
    """The orders table's stream turned on and captured, a change set a second, until the
    block ends (then what was read is committed)."""
    client.update_table(
        TableName=ORDERS,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            capture(
                [ORDERS],
                conn=settings.effective_targets()[0].connection(),
                storage=storage,
                params=CaptureParams(flush_seconds=1, poll_seconds=0.2),
                emit=discard,
                stop=stop,
            )
        except BaseException as exc:  # noqa: BLE001 - told below, in the demo's thread
            failure.append(exc)

    emit(
        Step(text=f"capturing {ORDERS}'s changes from its DynamoDB stream (a change set a second)")
    )
    thread = threading.Thread(target=run, name="hippolyte-demo-capture")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


def instant_before_deploy(backup_start: dt.datetime) -> dt.datetime:
    """An instant after the backup started and before anything the deploy writes, as the
    stream stamps it: DynamoDB Local stamps a record to the minute, so the deploy must come in
    a later minute than T (this may wait for the next minute to begin)."""
    now = dt.datetime.now(dt.UTC)
    minute = now.replace(second=0, microsecond=0)
    if minute - dt.timedelta(milliseconds=1) < backup_start:
        minute += dt.timedelta(minutes=1)
        time.sleep(max(0.0, (minute - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
    return minute - dt.timedelta(milliseconds=1)


def wait_for_changes(storage: Storage, *, past: dt.datetime, timeout_s: float = 60) -> None:
    """Until the captured chain of the orders table reaches past ``past``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sets = changes.change_sets(storage, ORDERS)
        if sets and max(c.end for c in sets) > changes.micros(past):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the capture of {ORDERS} did not reach {manifest.iso(past)}")


def history_of_deploy(
    settings: Settings,
    *,
    storage: Storage,
    deploy: BadDeploy,
    at: dt.datetime,
    emit: Emit,
) -> dict[str, Any]:
    """diff ORDERS@T --live (it must find exactly the deploy), then restore --at T (proven)."""
    from hippolyte.ops.context import open_backup
    from hippolyte.ops.diff import DiffParams, diff_live
    from hippolyte.ops.restore import RestoreParams, restore

    wait_for_changes(storage, past=at)
    ref = f"{ORDERS}@{manifest.iso(at)}"
    conn = settings.effective_targets()[0].connection()
    emit(Step(text=f"running hippolyte diff {ref} --live (the table just before the deploy)"))
    result = diff_live(
        open_backup(settings, ref, repo=settings.repository),
        conn=conn,
        table=ORDERS,
        schema=None,
        params=DiffParams(workers=settings.workers, limit=100),
    )
    found = {
        key_of(orjson.loads(d.key), ORDERS_KEY): (str(d.kind), tuple(d.attributes))
        for d in result.first
    }
    matches = found == deploy.expected and len(result.first) == result.summary.differences
    s = result.summary
    emit(
        Step(
            text=f"diff {ref} found {s.deleted} deleted, {s.added} added, {s.changed} changed: "
            + ("exactly the bad deploy" if matches else "NOT the bad deploy: FAILED")
        )
    )
    target = f"{ORDERS}-at"
    emit(Step(text=f"running hippolyte restore {ORDERS} --at {manifest.iso(at)} --table {target}"))
    with tempfile.TemporaryDirectory(prefix="hippolyte-demo-") as state_dir:
        report = restore(
            open_backup(settings, ref, repo=settings.repository),
            conn=conn,
            table=target,
            description=None,
            emit=emit,
            params=RestoreParams(write_capacity=4000, state_dir=Path(state_dir)),
        )
    emit(
        Step(
            text=f"restored {target} as of {manifest.iso(at)}: {report.restored.count:,} items, "
            + ("identical to the computed state" if report.proven else "DIFFERENT: FAILED")
        )
    )
    return {
        "at": manifest.iso(at),
        "deleted": s.deleted,
        "added": s.added,
        "changed": s.changed,
        "matches": matches,
        "restored": target,
        "items": report.restored.count,
        "proven": report.proven,
        "ok": matches and report.proven,
    }
