"""The nightly job as a whole under faults and kills (issue 16, "the fleet under faults"), the
small version for the suite; bench/bench_fleet.py runs 50 tables and 10 kill seeds.

A fleet of 14 tables on DynamoDB Local (provisioned, on-demand, empty, with GSI and LSI,
boosted by the plan with autoscaling on moto, one deleted mid-run, one of 400 KB items) runs
through ``backup --all`` behind the fault proxy, then ``monitor``; then killed with SIGKILL at
moments its own events choose, each followed by ``revert`` and a new run; and ``serve`` is sent
SIGTERM during a boosted table's backup. Every check compares with what was measured before
the run: the tables' digests, RCU and autoscaling (tests/support/fleet.py)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import orjson
import pytest

from hippolyte.adapters import aws, dynamodb
from tests.support import fleet
from tests.support.faults import FaultProxy
from tests.support.servers import Server

pytestmark = pytest.mark.servers
SEEDS = [0, 1, 3]  # phases: before any table, right after a boost, right after a commit
_fleets = itertools.count()


class Night:
    """One fleet, its proxy and its configuration, shared by the tests of this file."""

    def __init__(self, ddb: Server, moto: Server, root: Path, n: int) -> None:
        self.ddb, self.root = ddb, root
        conn = aws.Connection(region=fleet.REGION, endpoint_url=ddb.endpoint_url)
        aas = boto3.client(
            "application-autoscaling", region_name=fleet.REGION, endpoint_url=moto.endpoint_url
        )
        prefix = f"fleet{next(_fleets)}x{os.getpid() % 1000}-"
        self.fleet = fleet.build(prefix=prefix, n=n, client=dynamodb.control_client(conn), aas=aas)
        self.proxy = FaultProxy(
            upstream=ddb.endpoint_url, mix=fleet.FAULTS, seed=16, slow_s=fleet.SLOW_S
        )
        self.repo = root / "repo"
        self.cfg = fleet.config(
            root / "hippolyte.toml",
            repo=self.repo,
            endpoint=self.proxy.endpoint_url,
            prefix=prefix,
            workers=4,
        )
        self.events: list[tuple[float, dict[str, object]]] = []  # the fault run's, for kills
        self.env = {**os.environ, "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": moto.endpoint_url}

    def runs(self) -> list[str]:
        return sorted(p.name for p in (self.repo / "@runs").glob("*"))

    def check(self, job: fleet.Job, before: fleet.Snapshot, *, restore: bool) -> fleet.Night:
        rid = fleet.run_id_of(job, self.repo)
        assert rid, job.stderr
        return fleet.check_night(
            self.fleet,
            before,
            cfg=self.cfg,
            repo=self.repo,
            run_id=rid,
            restore_endpoint=self.ddb.endpoint_url,
            restore=lambda _: restore,
        )


@pytest.fixture(scope="module")
def night(
    dynamodb_local: Server, moto_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Night]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
        mp.setattr(aws, "_sessions", {})
        shared = Night(dynamodb_local, moto_server, tmp_path_factory.mktemp("fleet"), n=14)
        try:
            yield shared
        finally:
            shared.proxy.close()


@pytest.fixture
def aas_on_moto(moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Application Auto Scaling on moto for the commands run in this process."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    monkeypatch.setattr(aws, "_sessions", {})


def _assert_clean(night: Night, before: fleet.Snapshot) -> None:
    """Nothing left boosted, no autoscaling missing, every journal entry final, nothing
    committed half."""
    assert fleet.capacity_problems(night.fleet, before) == []
    assert fleet.journal_problems(night.repo) == []
    bad, _, _ = fleet.half_commits(night.repo, night.fleet)
    assert bad == []


def test_the_fleet_under_faults_then_monitor(night: Night) -> None:
    before = fleet.snapshot(night.fleet)
    victim = night.fleet.victim.name
    deleted = []

    def delete_victim(_: int, event: dict[str, object]) -> bool:
        """The victim goes once another table is done: mid-run."""
        if not deleted and event.get("event") == "table_done" and event.get("table") != victim:
            night.fleet.client.delete_table(TableName=victim)
            deleted.append(event.get("table"))
        return False

    job = fleet.run_job(night.cfg, env=night.env, on_event=delete_victim)
    night.events = job.events
    assert deleted, "the victim should have been deleted mid-run"
    assert job.doc is not None and job.returncode in (0, 1), job.stderr
    faults = {k: v for k, v in night.proxy.counts.items() if k != "ok"}
    assert faults.get("throttle", 0) + faults.get("throttling", 0) >= 10, faults
    assert faults.get("500", 0) + faults.get("503", 0) >= 2, faults  # ~10 expected
    assert faults.get("drop", 0) + faults.get("slow", 0) >= 2, faults  # ~10 expected
    result = fleet.check_night(
        night.fleet,
        before,
        cfg=night.cfg,
        repo=night.repo,
        run_id=job.doc["runs"][0]["run"],
        restore_endpoint=night.ddb.endpoint_url,
    )
    assert result.problems == []
    failed_in_run = {r["table"]: r["error"] for r in job.results if not r["ok"]}
    assert set(result.failed) == set(failed_in_run)  # each failure, and only those, reported
    for table, error in failed_in_run.items():  # with the run's own reason
        assert error and error in result.failed[table], (table, result.failed[table])
    assert set(result.failed) <= {victim}, result.failed  # retries absorb the rest
    expected = {t.name for t in night.fleet.tables if not t.empty and t.name != victim}
    assert expected <= set(result.committed)
    assert result.restored == len(result.committed)
    boosts = [c for c in job.doc["runs"][0]["capacity"] if c["status"] == "boosted"]
    assert len(boosts) >= 2, job.doc["runs"][0]["capacity"]
    _assert_clean(night, before)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_a_moment_of_the_job_then_revert_and_run_again(night: Night, seed: int) -> None:
    """Faults off here, to keep the suite quick: the benchmark kills the faulty job."""
    night.proxy.enabled = False
    try:
        _kill_revert_run_again(night, seed)
    finally:
        night.proxy.enabled = True


def _kill_revert_run_again(night: Night, seed: int) -> None:
    before = fleet.snapshot(night.fleet)
    if not night.events:  # run alone: the events the moment is chosen from
        night.events = fleet.run_job(night.cfg, env=night.env).events
    point = fleet.kill_point(night.events, seed=seed)
    known = night.runs()
    killed = fleet.run_job(
        night.cfg,
        env=night.env,
        on_event=lambda _, e: point.matches(e),
        kill_delay_s=point.delay_s,
    )
    assert killed.killed_after is not None and killed.returncode == -signal.SIGKILL, point
    bad, _, _ = fleet.half_commits(night.repo, night.fleet)
    assert bad == []  # before any revert: nothing committed half
    code, outcomes, err = fleet.hippolyte("--config", str(night.cfg), "revert", "--json")
    assert code == 0, err
    if point.phase == "boost":  # killed during a boosted table's backup: revert put it back
        assert point.table in {o["table"] for o in outcomes if o["status"] == "reverted"}
    _assert_clean(night, before)
    assert fleet.run_id_of(killed, night.repo, known=known) is not None
    again = fleet.run_job(night.cfg, env=night.env)
    result = night.check(again, before, restore=False)
    assert result.problems == [] and result.failed == {}
    assert set(result.committed) == {
        t.name for t in night.fleet.tables if not t.empty and t.name in before.digests
    }
    _assert_clean(night, before)


def test_sigterm_during_a_boosted_backup(
    dynamodb_local: Server, moto_server: Server, tmp_path: Path, aas_on_moto: None
) -> None:
    """serve, SIGTERM while a boosted table is read (its Scans slowed by the proxy): the
    capacity is put back, the lock released, exit 0; the monitor reports the table's backup
    incomplete."""
    conn = aws.Connection(region=fleet.REGION, endpoint_url=dynamodb_local.endpoint_url)
    aas = boto3.client(
        "application-autoscaling", region_name=fleet.REGION, endpoint_url=moto_server.endpoint_url
    )
    prefix = f"sigterm{os.getpid() % 1000}x{next(_fleets)}-"
    small = fleet.build(
        prefix=prefix,
        n=3,
        client=dynamodb.control_client(conn),
        aas=aas,
        composition=["provisioned", "boosted", "provisioned"],
    )
    before = fleet.snapshot(small, digests=False)
    with FaultProxy(
        upstream=dynamodb_local.endpoint_url, operation="Scan", schedule=["slow"], slow_s=1.0
    ) as proxy:
        repo = tmp_path / "repo"
        cfg = fleet.config(
            tmp_path / "hippolyte.toml", repo=repo, endpoint=proxy.endpoint_url, prefix=prefix
        )
        cfg.write_text(cfg.read_text() + "[serve]\nport = 0\n")
        env = {**os.environ, "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": moto_server.endpoint_url}
        log = tmp_path / "serve.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hippolyte", "--config", str(cfg), "serve", "--run-now",
                 "backup"],
                env=env,
                stderr=sink,
            )  # fmt: skip
        try:
            reading = _wait_for_boosted_read(repo, proc, deadline=time.monotonic() + 90)
            assert reading is not None, "no boosted table was read"
            assert fleet.rcu_of(small.client, reading) > before.rcu[reading]
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = log.read_bytes()
        assert proc.returncode == 0, err.decode()[-2000:]
        logs = [orjson.loads(x) for x in err.splitlines() if x.startswith(b"{")]
        finished = [x for x in logs if x.get("message") == "job finished"]
        assert finished and finished[0]["result"] == "interrupted"
        assert [p for p in repo.glob("@locks/**/*") if p.is_file()] == []  # the lock released
        assert fleet.capacity_problems(small, before) == []
        assert fleet.journal_problems(repo) == []
        (rid,) = sorted(p.name for p in (repo / "@runs").glob("*"))
        code, report, errs = fleet.hippolyte(
            "--config", str(cfg), "monitor", "--run", rid, "--no-notify", "--json"
        )
    assert code == 1 and isinstance(report, dict), errs
    checks = {c["table"]: c for r in report["reports"] for c in r["tables"]}
    assert not checks[reading]["ok"] and "incomplete" in checks[reading]["reason"], checks[reading]
    assert "interrupted" in checks[reading]["reason"]  # the run's result says why
    result = orjson.loads((repo / "@runs" / rid / "result.json").read_bytes())
    by_table = {r["table"]: r for r in result["results"]}
    assert set(by_table) == {t.name for t in small.tables}  # each table accounted for
    assert by_table[reading]["error"].startswith("interrupted")
    assert all(
        r["ok"] or r["error"].startswith(("interrupted", "not started")) for r in by_table.values()
    )


def _wait_for_boosted_read(
    repo: Path, proc: subprocess.Popen[bytes], *, deadline: float
) -> str | None:
    """The table that is boosted and whose backup folder exists (its Scan under way)."""
    while time.monotonic() < deadline and proc.poll() is None:
        for journal in repo.glob("@runs/*/journal.json"):
            entries = orjson.loads(journal.read_bytes())["entries"].values()
            for e in entries:
                if e.get("status") == "boosted" and any((repo / e["table"]).glob("*/_started")):
                    return str(e["table"])
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("operation", ["Scan", "DescribeTable"])
def test_a_body_that_is_not_json_is_asked_again_never_taken_for_an_answer(
    dynamodb_local: Server, tmp_path: Path, operation: str
) -> None:
    """A 200 whose body is not JSON (a captive proxy's page) parsed by botocore as a success
    holding only ``message``: a Scan page with no items and no next key ended its segment,
    and the backup committed a fraction of the table; a DescribeTable without ``Table``
    crashed the nightly job with a KeyError. Both are asked again now."""
    conn = aws.Connection(region=fleet.REGION, endpoint_url=dynamodb_local.endpoint_url)
    small = fleet.build(
        prefix=f"garbage{next(_fleets)}-",
        n=1,
        client=dynamodb.control_client(conn),
        aas=None,
        composition=["provisioned"],
    )
    (table,) = small.tables
    schedule = ["ok", "garbage"] if operation == "Scan" else ["garbage", "ok"]
    with FaultProxy(
        upstream=dynamodb_local.endpoint_url, operation=operation, schedule=schedule
    ) as proxy:
        code, doc, err = fleet.hippolyte(
            "backup", table.name, "--repo", str(tmp_path / "repo"), "--segments", "1",
            "--endpoint-url", proxy.endpoint_url, "--region", fleet.REGION, "--json",
        )  # fmt: skip
        assert proxy.counts["garbage"] >= 1
    assert code == 0, err
    assert doc["results"][0]["item_count"] == table.items


def test_a_put_back_that_fails_stays_pending_and_costs_no_backup(
    dynamodb_local: Server, moto_server: Server, tmp_path: Path, aas_on_moto: None
) -> None:
    """The boosted table's put-back is refused after its retries (UpdateTable answers 500):
    it used to raise out of the pipeline, so backup --all failed (exit 7) with no run record
    and the table's entry left 'boosted'. Now: pending, the backups and the record stand, and
    the monitor puts it back."""
    conn = aws.Connection(region=fleet.REGION, endpoint_url=dynamodb_local.endpoint_url)
    aas = boto3.client(
        "application-autoscaling", region_name=fleet.REGION, endpoint_url=moto_server.endpoint_url
    )
    prefix = f"pending{next(_fleets)}-"
    small = fleet.build(
        prefix=prefix,
        n=2,
        client=dynamodb.control_client(conn),
        aas=aas,
        composition=["boosted", "provisioned"],
    )
    before = fleet.snapshot(small, digests=False)
    # the boost's UpdateTable passes, the put-back's 4 attempts fail, the monitor's passes
    with FaultProxy(
        upstream=dynamodb_local.endpoint_url, operation="UpdateTable", schedule=["ok"] + ["500"] * 4
    ) as proxy:
        repo = tmp_path / "repo"
        cfg = fleet.config(
            tmp_path / "hippolyte.toml", repo=repo, endpoint=proxy.endpoint_url, prefix=prefix
        )
        env = {**os.environ, "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": moto_server.endpoint_url}
        job = fleet.run_job(cfg, env=env)
        assert job.returncode == 0 and job.doc is not None, job.stderr
        assert all(r["ok"] for r in job.results) and len(job.results) == 2
        statuses = [c["status"] for c in job.doc["runs"][0]["capacity"]]
        assert statuses == ["boosted", "revert-pending"], job.doc["runs"][0]["capacity"]
        assert (repo / "@runs" / job.doc["runs"][0]["run"] / "result.json").exists()
        assert fleet.capacity_problems(small, before) != []  # still boosted, and known to be
        code, report, err = fleet.hippolyte(
            "--config", str(cfg), "monitor", "--no-notify", "--json"
        )
        assert proxy.counts["500"] == 4  # botocore: max_attempts 3 is 3 retries
    assert code == 0, (err, report)
    assert fleet.capacity_problems(small, before) == []
    assert fleet.journal_problems(repo) == []


def test_revert_after_a_run_that_boosted_nothing(
    dynamodb_local: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that boosts nothing (or is killed before its first boost) writes no journal:
    revert read every run's journal and failed on it (exit 3), so after such a night no run
    could be reverted without --run."""
    conn = aws.Connection(region=fleet.REGION, endpoint_url=dynamodb_local.endpoint_url)
    prefix = f"noboost{next(_fleets)}-"
    fleet.build(
        prefix=prefix,
        n=1,
        client=dynamodb.control_client(conn),
        aas=None,
        composition=["on-demand"],
    )
    repo = tmp_path / "repo"
    cfg = fleet.config(
        tmp_path / "hippolyte.toml", repo=repo, endpoint=dynamodb_local.endpoint_url, prefix=prefix
    )
    code, doc, err = fleet.hippolyte("--config", str(cfg), "backup", "--all", "--json")
    assert code == 0 and doc["runs"][0]["capacity"] == [], err
    assert not list(repo.glob("@runs/*/journal.json"))
    code, outcomes, err = fleet.hippolyte("--config", str(cfg), "revert", "--json")
    assert code == 0 and outcomes == [], err
