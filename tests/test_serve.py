"""The scheduler daemon: the repository lock, and `hippolyte serve` as a real process with
/metrics, /healthz, JSON logs and a clean SIGTERM."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.repo.lock import KEY, RepoLock
from tests.helpers import db_for
from tests.support.servers import Server


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
