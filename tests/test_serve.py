"""The scheduler daemon: the repository lock, and `hippolyte serve` as a real process with
/metrics, /healthz, JSON logs and a clean SIGTERM."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core import config
from hippolyte.repo.journal import Journal
from hippolyte.repo.lock import KEY, RepoLock
from hippolyte.serve.daemon import Daemon, serve
from tests.helpers import db_for
from tests.support.servers import Server, start_dynalite


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_stale_locks_are_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = open_storage(str(tmp_path / "repo"))
    first = RepoLock(storage=storage, lease_s=60)
    assert first.acquire()
    assert not RepoLock(storage=storage, lease_s=60).acquire()  # live holder, valid lease
    first.release()
    assert not storage.exists(KEY)

    import socket

    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    storage.put_bytes(
        KEY,
        orjson.dumps(
            {"token": "old", "host": socket.gethostname(), "pid": _dead_pid(), "expires": past}
        ),
    )
    with caplog.at_level(logging.WARNING, logger="hippolyte.lock"):
        taker = RepoLock(storage=storage, lease_s=60)
        assert taker.acquire()
    assert "stale lock" in caplog.text
    taker.release()

    storage.put_bytes(
        KEY,
        orjson.dumps(
            {"token": "alive", "host": socket.gethostname(), "pid": os.getpid(), "expires": past}
        ),
    )
    assert not RepoLock(storage=storage, lease_s=60).acquire()  # expired but holder alive


@pytest.mark.servers
def test_serve_runs_a_job_exposes_metrics_and_stops_on_sigterm(
    dynalite: Server, moto_server: Server, tmp_path: Path
) -> None:
    db = db_for(dynalite)
    table = db.table(prefix="served", items=[{"pk": {"S": str(i)}} for i in range(20)])
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{tmp_path / "repo"}"\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{dynalite.endpoint_url}"\n[selection]\n'
        f'include = ["{table}$"]\n[serve]\nport = 0\n'
    )
    env = {**os.environ, "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": moto_server.endpoint_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "--config", str(cfg), "serve", "--run-now", "backup"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = ""
        while not url:
            line = proc.stderr.readline()
            assert line, "serve exited early"
            if line.startswith("listening on "):
                url = line.split()[-1]
        health: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "backup" not in health.get("last", {}):  # type: ignore[operator]
            health = orjson.loads(urllib.request.urlopen(f"{url}/healthz").read())
            time.sleep(0.2)
        assert health["last"]["backup"]["result"] == "ok"  # type: ignore[index]
        assert set(health["next"]) == {"backup", "monitor"}  # type: ignore[arg-type]
        metrics = urllib.request.urlopen(f"{url}/metrics").read().decode()
        assert f'hippolyte_backup_items{{table="{table}",target="us-east-1"}} 20.0' in metrics
        assert 'hippolyte_runs_total{job="backup",result="ok"} 1.0' in metrics
        assert "hippolyte_boosts_outstanding 0.0" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    logs = [orjson.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert {"job started", "job finished", "stopped"} <= {x["message"] for x in logs}
    assert not open_storage(str(tmp_path / "repo")).exists(KEY)


@pytest.mark.servers
def test_serve_with_two_targets_locks_both_repositories_and_labels_each_table(
    dynalite: Server, moto_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two accounts on two endpoints, each with its own repository: a job runs only with
    both repositories' locks, each table's metrics carry its own target's label, and the
    boosts gauge counts open journal entries in both repositories."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", moto_server.endpoint_url)
    second = start_dynalite()
    try:
        first_table = db_for(dynalite).table(
            prefix="served", items=[{"pk": {"S": str(i)}} for i in range(20)]
        )
        second_table = db_for(second).table(
            prefix="served", items=[{"pk": {"S": str(i)}} for i in range(5)]
        )
        repos = [tmp_path / "repo-a", tmp_path / "repo-b"]
        settings = config.validate(
            {
                "targets": [
                    {
                        "account": account,
                        "region": "us-east-1",
                        "endpoint_url": server.endpoint_url,
                        "repository": str(repo),
                    }
                    for account, server, repo in zip(
                        ("111111111111", "222222222222"), (dynalite, second), repos, strict=True
                    )
                ],
                "selection": {"include": [f"{first_table}$", f"{second_table}$"]},
                "serve": {"port": 0},
            },
            source="test",
        )

        held = RepoLock(storage=open_storage(str(repos[1])), lease_s=60)  # another run
        assert held.acquire()
        try:
            daemon = Daemon(settings=settings, stop=threading.Event())
            daemon.run_job("backup")
        finally:
            held.release()
        metrics = daemon.metrics.render().decode()
        assert 'hippolyte_runs_total{job="backup",result="skipped"} 1.0' in metrics
        assert not (repos[0] / first_table).exists() and not (repos[1] / second_table).exists()
        assert not open_storage(str(repos[0])).exists(KEY)  # the lock it did take, released

        Journal.open(open_storage(str(repos[1])), "crashed-run", create=True).record(
            "some-table", status="boosted"
        )
        metrics = _serve_backup_once(settings)
        assert (
            f'hippolyte_backup_items{{table="{first_table}",target="111111111111/us-east-1"}} 20.0'
            in metrics
        )
        assert (
            f'hippolyte_backup_items{{table="{second_table}",target="222222222222/us-east-1"}} 5.0'
            in metrics
        )
        assert "hippolyte_boosts_outstanding 1.0" in metrics
        assert (repos[0] / first_table).is_dir() and (repos[1] / second_table).is_dir()
        assert not any(open_storage(str(r)).exists(KEY) for r in repos)
    finally:
        second.stop()


def _serve_backup_once(settings: config.Settings) -> str:
    """`serve --run-now backup` in a thread: /metrics once the backup has finished."""
    stop, urls = threading.Event(), []
    thread = threading.Thread(
        target=serve,
        args=(settings,),
        kwargs={"stop": stop, "run_now": ["backup"], "on_listen": urls.append},
    )
    thread.start()
    try:
        health: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "backup" not in health.get("last", {}):  # type: ignore[operator]
            if urls:
                health = orjson.loads(urllib.request.urlopen(f"{urls[0]}/healthz").read())
            time.sleep(0.2)
        assert health["last"]["backup"]["result"] == "ok", health  # type: ignore[index]
        return str(urllib.request.urlopen(f"{urls[0]}/metrics").read().decode())
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.mark.servers
def test_serve_with_capture_keeps_change_sets_until_sigterm(
    dynamodb_local: Server, tmp_path: Path
) -> None:
    from hippolyte.repo import changes

    db = db_for(dynamodb_local)
    table = db.table(prefix="captured", items=[{"pk": {"S": str(i)}} for i in range(3)])
    db.client.update_table(
        TableName=table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    repo = tmp_path / "repo"
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{repo}"\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{dynamodb_local.endpoint_url}"\n[selection]\n'
        f'include = ["{table}$"]\n[serve]\nport = 0\n[capture]\nflush_seconds = 0.5\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "--config", str(cfg), "serve"],
        env=os.environ.copy(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)
        for i in range(5):
            db.client.put_item(TableName=table, Item={"pk": {"S": f"new{i}"}})
        storage = open_storage(str(repo))
        deadline = time.monotonic() + 60
        seen = 0
        while time.monotonic() < deadline and seen < 5:
            seen = sum(
                1
                for c in changes.change_sets(storage, table)
                for ch in changes.read_changes(storage, c)
                if b"new" in ch.keys
            )
            time.sleep(0.3)
        assert seen == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    db.client.delete_table(TableName=table)


@pytest.mark.servers
def test_a_job_whose_lock_is_taken_over_stops_and_leaves_the_new_holder_alone(
    dynalite: Server, tmp_path: Path
) -> None:
    """A backup job whose lock another run takes over (its lease ran out unrenewed; here the
    lock object is replaced under it) stops at the next page, as if interrupted: nothing
    committed, its journal closed, result "lock-lost"; the new holder's lock stays."""
    from tests.support.faults import FaultProxy

    db = db_for(dynalite)
    blob = "x" * 3000  # ~3 KB items: three 1 MB pages in one segment
    table = db.table(
        prefix="lost", items=[{"pk": {"S": f"{i}"}, "b": {"S": blob}} for i in range(900)]
    )
    repo = tmp_path / "repo"
    # only the Scans slowed: discovery lists every table of the shared server
    slow = FaultProxy(
        upstream=dynalite.endpoint_url, mix={"slow": 1.0}, operations={"Scan"}, slow_s=1.5
    )
    with slow as proxy:
        settings = config.validate(
            {
                "targets": [
                    {
                        "region": "us-east-1",
                        "endpoint_url": proxy.endpoint_url,
                        "repository": str(repo),
                    }
                ],
                "selection": {"include": [f"{table}$"]},
                "segments": 1,
                "read_percent": 1,
                "serve": {"port": 0, "lock_lease_s": 0.6},
            },
            source="test",
        )
        daemon = Daemon(settings=settings, stop=threading.Event())
        job = threading.Thread(target=daemon.run_job, args=("backup",))
        job.start()
        storage = open_storage(str(repo))
        deadline = time.monotonic() + 30
        while not (daemon.running == "backup" and storage.exists(KEY)):
            assert time.monotonic() < deadline, "the job never took its lock"
            time.sleep(0.02)
        other = orjson.loads(storage.get_bytes(KEY)) | {"token": "another-run", "pid": 1}
        storage.put_bytes(KEY, orjson.dumps(other))  # taken over
        job.join(timeout=60)
    assert not job.is_alive()
    assert daemon.last["backup"]["result"] == "lock-lost", daemon.last
    assert not list(repo.glob(f"{table}/*/_SUCCESS"))  # nothing committed
    assert orjson.loads(storage.get_bytes(KEY))["token"] == "another-run"  # left alone
    (run,) = (repo / "@runs").iterdir()
    journal = run / "journal.json"  # only when something was boosted
    assert (
        not journal.exists() or Journal.open(storage, run.name, create=False).open_entries() == []
    )


def test_the_lambda_s_job_stops_on_the_event_its_lock_sets_when_taken_over(tmp_path: Path) -> None:
    from hippolyte import aws_lambda

    repo = tmp_path / "repo"
    settings = config.validate(
        {"repository": str(repo), "serve": {"lock_lease_s": 0.3}}, source="test"
    )
    storage = open_storage(str(repo))

    def run(lost: threading.Event) -> dict[str, object]:
        other = orjson.loads(storage.get_bytes(KEY)) | {"token": "another-run"}
        storage.put_bytes(KEY, orjson.dumps(other))  # taken over
        return {"stopped": lost.wait(10)}

    assert aws_lambda._locked(settings, "backup", run) == {"stopped": True}
    assert orjson.loads(storage.get_bytes(KEY))["token"] == "another-run"  # left alone
