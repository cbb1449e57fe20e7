"""The run records under ``@runs/`` and the capacity journal: their schema on disk (pinned key by
key), the round trip through it, records written before the format was named (literal files as
the code before ``hippolyte-result/1`` wrote them), and refusal of what this version cannot read.
The statuses are string enums: they compare, format and serialise as the bare strings did."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core import planning
from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.core.model import (
    BackupRef,
    CapacityOutcome,
    CapacityStatus,
    CheckStatus,
    MonitorReport,
    RunResult,
    TableCheck,
    TableInfo,
    TableResult,
    to_plain,
)
from hippolyte.ops.status import last_run_states
from hippolyte.repo import journal as journal_mod
from hippolyte.repo import runs
from hippolyte.repo.journal import BoostState, Journal, PipelineStatus

RID = "2026-11-22-00-10-00"

# --- records as the code before the formats were named wrote them (generated with it) -------

OLD_RESULT = (
    b'{"run_id":"2026-11-22-00-10-00","results":[{"table":"orders","ref":{"repo":"file:///tmp/'
    b'repo","table":"orders","backup_id":"2026-11-22-00-10-00"},"ok":true,"item_count":1500,"raw'
    b'_bytes":123456,"stored_bytes":23456,"consumed_read_units":40.5,"duration_s":12.25,"error":'
    b'null,"started_in":null},{"table":"users","ref":null,"ok":false,"item_count":0,"raw_bytes":'
    b'0,"stored_bytes":0,"consumed_read_units":0.0,"duration_s":0.0,"error":"table \'users\' doe'
    b's not exist","started_in":null},{"table":"events","ref":{"repo":"s3://bucket/night","tabl'
    b'e":"events","backup_id":"2026-11-22-00-10-00"},"ok":true,"item_count":0,"raw_bytes":0,"st'
    b'ored_bytes":0,"consumed_read_units":0.0,"duration_s":0.0,"error":null,"started_in":"Data '
    b'Pipeline df-0123"}],"capacity":[{"table":"orders","status":"boosted","note":"20 -> 400 RC'
    b'U"},{"table":"orders","status":"reverted","note":"400 -> 20 RCU"}]}'
)

OLD_MONITOR = (
    b'{"run_id":"2026-11-22-00-10-00","checked_at":"2026-11-22T05:15:00+00:00","ran":true,"repo'
    b'sitory":"file:///tmp/repo","tables":[{"table":"orders","target":"123456789012/eu-west-1",'
    b'"ok":true,"reason":"committed 2026-11-22-00-10-00","pipeline":0,"backup":"orders/2026-11-'
    b'22-00-10-00","running":false},{"table":"events","target":"123456789012/eu-west-1","ok":fa'
    b'lse,"reason":"still running in Data Pipeline df-0123 RUNNING; not a failure before ...","'
    b'pipeline":1,"backup":null,"running":true},{"table":"users","target":"123456789012/eu-west'
    b'-1","ok":false,"reason":"no backup","pipeline":null,"backup":null,"running":false}],"capa'
    b'city":["orders: reverted 400 -> 20 RCU"],"logs":"file:///tmp/repo/@runs/2026-11-22-00-10-'
    b'00/"}'
)

# lambda.json as aws_lambda._backup_target wrote it (its own dict, TableResults by to_plain)
OLD_LAMBDA = (
    b'{"run_id":"2026-11-22-00-10-00","target":"123456789012/eu-west-1","ok":false,"remaining_s"'
    b':898.2,"backed_up":[{"table":"orders","ref":{"repo":"s3://bucket/night","table":"orders",'
    b'"backup_id":"2026-11-22-00-10-00"},"ok":true,"item_count":3,"raw_bytes":300,"stored_bytes'
    b'":120,"consumed_read_units":1.5,"duration_s":0.5,"error":null,"started_in":null}],"failur'
    b'es":[{"table":"big","reason":"its backup needs about 2000 s"}],"skipped":[{"table":"e","r'
    b'eason":"empty: nothing to back up"}],"error":null}'
)

OLD_JOURNAL = b"""{
  "run": "2026-11-22-00-10-00",
  "entries": {
    "123456789012/eu-west-1/orders": {
      "history": [
        {"at": "2026-11-22T00:10:05+00:00", "status": "boosting"},
        {"at": "2026-11-22T00:10:05+00:00", "status": "boosted"},
        {"at": "2026-11-22T00:10:05+00:00", "status": "revert-pending", "note": "decrease refused"}
      ],
      "table": "orders",
      "target": {
        "region": "eu-west-1",
        "profile": null,
        "role_arn": null,
        "endpoint_url": "http://localhost:8000",
        "account": "123456789012"
      },
      "status": "revert-pending",
      "before": {
        "read": 20,
        "write": 5,
        "autoscaling": {
          "target": {"MinCapacity": 5, "MaxCapacity": 100},
          "policies": [{"PolicyName": "read-70"}]
        }
      },
      "boost": {"read": 400},
      "note": "decrease refused"
    },
    "123456789012/eu-west-1/users": {
      "history": [
        {"at": "2026-11-22T00:10:05+00:00", "status": "not-boosted",
         "note": "on-demand: no RCU to raise"}
      ],
      "table": "users",
      "target": {
        "region": "eu-west-1",
        "profile": null,
        "role_arn": null,
        "endpoint_url": "http://localhost:8000",
        "account": "123456789012"
      },
      "status": "not-boosted",
      "note": "on-demand: no RCU to raise"
    },
    "pipeline/0": {
      "history": [
        {"at": "2026-11-22T00:10:05+00:00", "status": "creating"},
        {"at": "2026-11-22T00:10:05+00:00", "status": "created"},
        {"at": "2026-11-22T00:10:05+00:00", "status": "activating"},
        {"at": "2026-11-22T00:10:05+00:00", "status": "activated"}
      ],
      "index": 0,
      "name": "hippolyte-2026-11-22-00-10-00-0",
      "unique_id": "hippolyte-2026-11-22-00-10-00-0",
      "tables": ["events"],
      "folders": {"events": "s3://bucket/night/events/2026-11-22-00-10-00/"},
      "target": {
        "region": "us-east-1",
        "profile": null,
        "role_arn": null,
        "endpoint_url": null,
        "account": null
      },
      "status": "activated",
      "pipeline_id": "df-0123",
      "state": "FINISHED",
      "health": "HEALTHY",
      "note": "not deleted yet: boom"
    }
  }
}"""

ORDERS = TableResult(
    table="orders",
    ref=BackupRef(repo="file:///tmp/repo", table="orders", backup_id=RID),
    ok=True,
    item_count=1500,
    raw_bytes=123456,
    stored_bytes=23456,
    consumed_read_units=40.5,
    duration_s=12.25,
)
RESULT = RunResult(
    run_id=RID,
    results=[
        ORDERS,
        TableResult(table="users", ref=None, ok=False, error="table 'users' does not exist"),
        TableResult(
            table="events",
            ref=BackupRef(repo="s3://bucket/night", table="events", backup_id=RID),
            ok=True,
            started_in="Data Pipeline df-0123",
        ),
    ],
    capacity=[
        CapacityOutcome(table="orders", status=CapacityStatus.BOOSTED, note="20 -> 400 RCU"),
        CapacityOutcome(table="orders", status=CapacityStatus.REVERTED, note="400 -> 20 RCU"),
    ],
)
TARGET = "123456789012/eu-west-1"
REPORT = MonitorReport(
    run_id=RID,
    checked_at=dt.datetime(2026, 11, 22, 5, 15, tzinfo=dt.UTC),
    ran=True,
    repository="file:///tmp/repo",
    tables=[
        TableCheck(
            table="orders",
            target=TARGET,
            ok=True,
            reason=f"committed {RID}",
            pipeline=0,
            backup=f"orders/{RID}",
        ),
        TableCheck(
            table="events",
            target=TARGET,
            ok=False,
            reason="still running in Data Pipeline df-0123 RUNNING; not a failure before ...",
            pipeline=1,
            running=True,
        ),
        TableCheck(table="users", target=TARGET, ok=False, reason="no backup"),
    ],
    capacity=["orders: reverted 400 -> 20 RCU"],
    logs=f"file:///tmp/repo/@runs/{RID}/",
)
LAMBDA = runs.LambdaRecord(
    run_id=RID,
    target=TARGET,
    remaining_s=898.2,
    backed_up=[
        TableResult(
            table="orders",
            ref=BackupRef(repo="s3://bucket/night", table="orders", backup_id=RID),
            ok=True,
            item_count=3,
            raw_bytes=300,
            stored_bytes=120,
            consumed_read_units=1.5,
            duration_s=0.5,
        )
    ],
    failures=[runs.Reason(table="big", reason="its backup needs about 2000 s")],
    skipped=[runs.Reason(table="e", reason="empty: nothing to back up")],
)


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return open_storage(str(tmp_path / "repo"))


def _on_disk(storage: Storage, name: str, run_id: str = RID) -> Any:
    return orjson.loads(storage.get_bytes(runs.key(run_id, name)))


# --- result.json --------------------------------------------------------------------------


def test_result_schema_on_disk(storage: Storage) -> None:
    runs.write_result(storage, RESULT)
    doc = _on_disk(storage, "result.json")
    assert list(doc) == ["format", "runId", "results", "capacity"]
    assert doc["format"] == "hippolyte-result/1" and doc["runId"] == RID
    assert doc["results"][0] == {
        "table": "orders",
        "ok": True,
        "backup": {"repository": "file:///tmp/repo", "table": "orders", "id": RID},
        "itemCount": 1500,
        "rawBytes": 123456,
        "storedBytes": 23456,
        "consumedReadUnits": 40.5,
        "durationSeconds": 12.25,
        "error": None,
        "startedIn": None,
        "warnings": [],
    }
    assert doc["results"][1]["backup"] is None
    assert doc["results"][2]["startedIn"] == "Data Pipeline df-0123"
    assert doc["capacity"] == [
        {"table": "orders", "status": "boosted", "note": "20 -> 400 RCU"},
        {"table": "orders", "status": "reverted", "note": "400 -> 20 RCU"},
    ]


def test_result_round_trip(storage: Storage) -> None:
    runs.write_result(storage, RESULT)
    back = runs.read_result(storage, RID)
    assert back == RESULT
    assert all(type(o.status) is CapacityStatus for o in back.capacity)


def test_old_result_reads(storage: Storage) -> None:
    storage.put_bytes(runs.key(RID, "result.json"), OLD_RESULT)
    assert runs.read_result(storage, RID) == RESULT


def test_status_reads_old_and_new_results(storage: Storage) -> None:
    storage.put_bytes(runs.key(RID, "result.json"), OLD_RESULT)
    expected = {
        "orders": f"{RID}: ok",
        "users": f"{RID}: failed: table 'users' does not exist",
        "events": f"{RID}: started in Data Pipeline df-0123",
    }
    assert last_run_states(storage) == expected
    runs.write_result(storage, RESULT)
    assert last_run_states(storage) == expected


def test_status_skips_an_unreadable_newer_result(storage: Storage) -> None:
    runs.write_result(storage, RESULT)
    newer = "2026-11-23-00-10-00"
    storage.put_bytes(runs.key(newer, "result.json"), b"{not json")
    assert last_run_states(storage)["orders"] == f"{RID}: ok"
    storage.put_bytes(runs.key(newer, "result.json"), b'{"format": "hippolyte-result/9"}')
    assert last_run_states(storage)["orders"] == f"{RID}: ok"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"format": "hippolyte-result/2", "runId": "x"}', "this version reads"),
        (b'{"format": "hippolyte-result/1", "runId": "x"}', "malformed"),
        (
            b'{"runId": "x", "results": [], "capacity": [{"table": "a", "status": "boosting"}]}',
            "malformed",
        ),
    ],
)
def test_unreadable_results_are_refused(storage: Storage, data: bytes, why: str) -> None:
    storage.put_bytes(runs.key(RID, "result.json"), data)
    with pytest.raises(BackupCorrupt, match=why):
        runs.read_result(storage, RID)


def test_a_missing_record_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        runs.read_result(storage, RID)
    with pytest.raises(NotFound):
        runs.read_monitor(storage, RID)


# --- monitor.json -------------------------------------------------------------------------


def test_monitor_schema_on_disk(storage: Storage) -> None:
    runs.write_monitor(storage, REPORT)
    doc = _on_disk(storage, "monitor.json")
    assert doc == {
        "format": "hippolyte-monitor/1",
        "runId": RID,
        "checkedAt": "2026-11-22T05:15:00+00:00",
        "ran": True,
        "repository": "file:///tmp/repo",
        "tables": [
            {
                "table": "orders",
                "target": TARGET,
                "status": "ok",
                "reason": f"committed {RID}",
                "pipeline": 0,
                "backup": f"orders/{RID}",
            },
            {
                "table": "events",
                "target": TARGET,
                "status": "running",
                "reason": REPORT.tables[1].reason,
                "pipeline": 1,
                "backup": None,
            },
            {
                "table": "users",
                "target": TARGET,
                "status": "failed",
                "reason": "no backup",
                "pipeline": None,
                "backup": None,
            },
        ],
        "capacity": ["orders: reverted 400 -> 20 RCU"],
        "logs": f"file:///tmp/repo/@runs/{RID}/",
    }


def test_monitor_round_trip_and_old_reports(storage: Storage) -> None:
    runs.write_monitor(storage, REPORT)
    back = runs.read_monitor(storage, RID)
    assert back == REPORT and back.failed == REPORT.failed and back.running == REPORT.running
    storage.put_bytes(runs.key(RID, "monitor.json"), OLD_MONITOR)
    assert runs.read_monitor(storage, RID) == REPORT


def test_a_report_of_no_run_has_no_folder(storage: Storage) -> None:
    nothing = MonitorReport(
        run_id=None, checked_at=REPORT.checked_at, ran=False, repository=storage.url
    )
    with pytest.raises(ValueError):
        runs.write_monitor(storage, nothing)


def test_check_status_from_its_two_flags() -> None:
    assert [c.status for c in REPORT.tables] == [
        CheckStatus.OK,
        CheckStatus.RUNNING,
        CheckStatus.FAILED,
    ]


# --- plan.json ----------------------------------------------------------------------------


def _plan() -> planning.Plan:
    big = TableInfo(name="big", read_capacity=10, size_bytes=10**12)
    small = TableInfo(name="small", read_capacity=100, size_bytes=10**6)
    return planning.plan([big, small], settings=planning.PlanSettings())


def test_plan_record(storage: Storage) -> None:
    plan = _plan()
    assert not runs.has_plan(storage, RID)
    runs.write_plan(storage, RID, plan)
    assert runs.has_plan(storage, RID)
    doc = _on_disk(storage, "plan.json")
    expected = orjson.loads(orjson.dumps(planning.to_json(plan)))
    assert doc == {"format": "hippolyte-plan/1", **expected}  # `hippolyte plan --json`'s data
    assert runs.read_plan(storage, RID) == expected


def test_old_plan_reads_and_a_newer_one_is_refused(storage: Storage) -> None:
    old = orjson.dumps(planning.to_json(_plan()))  # as the run (and aws_lambda) wrote it
    storage.put_bytes(runs.key(RID, "plan.json"), old)
    assert runs.read_plan(storage, RID) == orjson.loads(old)
    storage.put_bytes(runs.key(RID, "plan.json"), b'{"format": "hippolyte-plan/2"}')
    with pytest.raises(BackupCorrupt, match="hippolyte-plan/2"):
        runs.read_plan(storage, RID)


# --- lambda.json --------------------------------------------------------------------------


def test_lambda_record(storage: Storage) -> None:
    runs.write_lambda(storage, LAMBDA)
    doc = _on_disk(storage, "lambda.json")
    assert list(doc) == [
        "format",
        "runId",
        "target",
        "ok",
        "remainingSeconds",
        "backedUp",
        "failures",
        "skipped",
        "error",
    ]
    assert doc["format"] == "hippolyte-lambda/1" and doc["ok"] is False
    assert doc["failures"] == [{"table": "big", "reason": "its backup needs about 2000 s"}]
    assert doc["backedUp"][0]["itemCount"] == 3
    assert runs.read_lambda(storage, RID) == LAMBDA


def test_old_lambda_record_reads(storage: Storage) -> None:
    storage.put_bytes(runs.key(RID, "lambda.json"), OLD_LAMBDA)
    old = runs.read_lambda(storage, RID)
    assert old == LAMBDA and not old.ok


# --- journal.json -------------------------------------------------------------------------

ORDERS_KEY = "123456789012/eu-west-1/orders"
TARGET_CONN = {
    "region": "eu-west-1",
    "profile": None,
    "role_arn": None,
    "endpoint_url": "http://localhost:8000",
    "account": "123456789012",
}


def test_old_journal_reads(storage: Storage) -> None:
    storage.put_bytes(runs.key(RID, "journal.json"), OLD_JOURNAL)
    journal = Journal.open(storage, RID, create=False)
    orders = journal.entries[ORDERS_KEY]
    assert orders["target"] == TARGET_CONN
    assert orders["status"] == "revert-pending" and orders["status"] is BoostState.REVERT_PENDING
    assert orders["before"]["read"] == 20 and orders["boost"] == {"read": 400}
    assert orders["before"]["autoscaling"]["policies"] == [{"PolicyName": "read-70"}]
    assert [h["status"] for h in orders["history"]] == ["boosting", "boosted", "revert-pending"]
    assert orders["history"][2]["note"] == "decrease refused"
    assert list(journal.open_entries()) == [ORDERS_KEY]  # not-boosted is final
    (pipeline,) = journal.pipelines().values()
    assert pipeline["pipeline_id"] == "df-0123" and pipeline["unique_id"].endswith("-0")
    assert pipeline["status"] is PipelineStatus.ACTIVATED and pipeline["state"] == "FINISHED"
    assert pipeline["target"]["region"] == "us-east-1"


def test_old_journal_is_rewritten_in_the_format(storage: Storage) -> None:
    storage.put_bytes(runs.key(RID, "journal.json"), OLD_JOURNAL)
    old = Journal.open(storage, RID, create=False)
    old.record(ORDERS_KEY, status=BoostState.REVERTED)
    doc = _on_disk(storage, "journal.json")
    assert doc["format"] == "hippolyte-journal/1" and doc["runId"] == RID and "run" not in doc
    orders, pipeline = doc["entries"][ORDERS_KEY], doc["entries"]["pipeline/0"]
    assert set(orders) == {"history", "table", "target", "status", "before", "boost", "note"}
    assert orders["target"] == {
        "region": "eu-west-1",
        "profile": None,
        "roleArn": None,
        "endpointUrl": "http://localhost:8000",
        "account": "123456789012",
    }
    assert orders["status"] == "reverted" and len(orders["history"]) == 4
    assert set(pipeline) == {
        "history",
        "index",
        "name",
        "uniqueId",
        "tables",
        "folders",
        "target",
        "status",
        "pipelineId",
        "state",
        "health",
        "note",
    }
    assert pipeline["pipelineId"] == "df-0123"
    again = Journal.open(storage, RID, create=False)
    assert again.entries == old.entries  # the same entries through the new format


def test_journal_schema_on_disk(storage: Storage) -> None:
    journal = Journal.open(storage, RID, create=True)
    journal.record(
        "-/-/t",
        table="t",
        target={**TARGET_CONN, "role_arn": "arn:aws:iam::123456789012:role/r"},
        status=BoostState.BOOSTING,
        before={"read": 5, "write": 1, "autoscaling": None},
        boost={"read": 50},
    )
    journal.record("pipeline/3", index=3, pipeline_id="df-9", status=PipelineStatus.CREATED)
    doc = _on_disk(storage, "journal.json")
    entry = doc["entries"]["-/-/t"]
    assert list(doc) == ["format", "runId", "entries"]
    assert entry["target"]["roleArn"] == "arn:aws:iam::123456789012:role/r"
    assert "role_arn" not in entry["target"] and "endpoint_url" not in entry["target"]
    assert entry["status"] == "boosting" and entry["history"][0]["status"] == "boosting"
    assert entry["before"] == {"read": 5, "write": 1, "autoscaling": None}
    assert doc["entries"]["pipeline/3"]["pipelineId"] == "df-9"
    assert Journal.open(storage, RID, create=False).entries == journal.entries


def test_journal_refuses_what_its_schema_lacks(storage: Storage) -> None:
    journal = Journal.open(storage, RID, create=True)
    with pytest.raises(TypeError, match="pipeline_id"):
        journal.record("-/-/t", table="t", pipeline_id="df-1")  # a pipeline's field
    with pytest.raises(TypeError, match="role"):
        journal.record("-/-/t", target={"role": "x"})
    with pytest.raises(ValueError):
        journal.record("-/-/t", status="boosterd")
    with pytest.raises(ValueError):
        journal.record("pipeline/0", status=BoostState.BOOSTED)  # not a pipeline's status
    assert journal.entries == {}
    with pytest.raises(NotFound):
        Journal.open(storage, RID, create=False)  # nothing was written


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{", "not valid JSON"),
        (b'{"format": "hippolyte-journal/2", "entries": {}}', "this version reads"),
        (b'{"entries": {"-/-/t": {"status": "boosterd"}}}', "malformed"),
    ],
)
def test_unreadable_journals_are_refused(storage: Storage, data: bytes, why: str) -> None:
    storage.put_bytes(runs.key(RID, "journal.json"), data)
    with pytest.raises(BackupCorrupt, match=why):
        Journal.open(storage, RID, create=False)


def test_one_definition_of_the_runs_folder() -> None:
    assert journal_mod.RUNS is runs.RUNS and journal_mod.run_ids is runs.run_ids
    assert journal_mod.journal_key(RID) == f"@runs/{RID}/journal.json"


# --- statuses are string enums --------------------------------------------------------------


def test_statuses_behave_as_the_strings_they_were() -> None:
    outcome = CapacityOutcome(table="t", status=CapacityStatus.REVERT_PENDING, note="later")
    assert outcome.status == "revert-pending" and f"{outcome.status}" == "revert-pending"
    assert orjson.dumps(to_plain(outcome)) == (
        b'{"table":"t","status":"revert-pending","note":"later"}'
    )
    assert {**outcome.__dict__}["status"] == "revert-pending"
    assert "reverted" in journal_mod.FINAL and "revert-pending" not in journal_mod.FINAL
    assert [s.value for s in CapacityStatus] == [
        "boosted",
        "not-boosted",
        "reverted",
        "revert-pending",
        "gone",
        "still-running",
        "boost-failed",
    ]
    assert [s.value for s in BoostState] == [
        "boosting",
        "boosted",
        "not-boosted",
        "reverted",
        "revert-pending",
        "gone",
        "boost-failed",
    ]
    assert [s.value for s in PipelineStatus] == [
        "creating",
        "created",
        "activating",
        "activated",
        "failed",
        "gone",
        "deleted",
    ]
