"""The repository lock excludes: two ``serve`` processes and a Lambda invocation race for one
repository (moto S3, rclone's S3, a folder), each round all at once, with S3-like latency on
every storage call: never two holders at once. A holder killed mid-lease on another host is
taken over only once its lease has ended, and the takeover is logged.

``make test`` runs LOCK_ROUNDS rounds per repository (HIPPOLYTE_LOCK_ROUNDS overrides);
``python bench/run.py --only lock`` runs 100.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import RepositoryError
from hippolyte.repo.lock import KEY, RepoLock
from tests.support import lock_race
from tests.support.servers import Server, aws_env, create_bucket

LOCK_ROUNDS = int(os.environ.get("HIPPOLYTE_LOCK_ROUNDS", "10"))
LATENCY_S = 0.03
REPOSITORIES = [
    pytest.param("moto_server", marks=pytest.mark.servers),
    pytest.param("rclone_s3", marks=pytest.mark.servers),
    pytest.param("folder"),
]


def _repository(
    request: pytest.FixtureRequest, where: str, tmp_path: Path, use_s3: Callable[[Server], None]
) -> tuple[str, dict[str, str]]:
    """(URL, environment for another process) of a fresh repository on ``where``."""
    if where == "folder":
        return str(tmp_path / "repo"), {}
    server: Server = request.getfixturevalue(where)
    use_s3(server)
    return f"s3://{create_bucket(server)}/repo", aws_env(server, services=["s3"])


@pytest.mark.parametrize("where", REPOSITORIES)
def test_two_serve_processes_and_a_lambda_never_hold_the_lock_at_once(
    where: str, request: pytest.FixtureRequest, tmp_path: Path, use_s3: Callable[[Server], None]
) -> None:
    url, env = _repository(request, where, tmp_path, use_s3)
    outcome = lock_race.race(
        url, rounds=LOCK_ROUNDS, latency=LATENCY_S, record=tmp_path / "holders", env=env
    )
    assert outcome.overlaps == []
    assert outcome.holds >= LOCK_ROUNDS * 0.8  # someone won (nearly) every round
    assert not open_storage(url).exists(KEY)  # every holder released


_HOLDER = """
import sys, time
from hippolyte.adapters.storage import open_storage
from hippolyte.repo.lock import RepoLock
lock = RepoLock(storage=open_storage(sys.argv[1]), lease_s=float(sys.argv[2]), host="elsewhere")
assert lock.acquire()
print("held", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("where", REPOSITORIES)
def test_a_holder_killed_mid_lease_is_taken_over_only_once_its_lease_ended(
    where: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_s3: Callable[[Server], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The holder runs on "another host" (its pid means nothing here): only its lease counts."""
    url, env = _repository(request, where, tmp_path, use_s3)
    lease = 1.5
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(lease)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        time.sleep(lease / 2)  # mid-lease, after a renewal or two
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    storage = open_storage(url)
    records = [orjson.loads(storage.get_bytes(k)) for k in storage.list(KEY)]
    (expires,) = [dt.datetime.fromisoformat(r["expires"]) for r in records]
    taker = RepoLock(storage=storage, lease_s=lease)
    with caplog.at_level(logging.INFO, logger="hippolyte.lock"):
        while not taker.acquire():
            assert dt.datetime.now(dt.UTC) < expires + dt.timedelta(seconds=lease)
            time.sleep(0.1)
    taken_at = dt.datetime.now(dt.UTC)
    try:
        assert taken_at >= expires  # never before the dead holder's lease ended
        stale = [r for r in caplog.records if r.getMessage() == "taking over a stale lock"]
        assert [r.holder["host"] for r in stale] == ["elsewhere"]  # type: ignore[attr-defined]
        assert "lock busy" in caplog.text  # it was refused while the lease ran
    finally:
        taker.release()
    assert list(storage.list(KEY)) == []


@pytest.mark.parametrize("where", REPOSITORIES)
def test_renewal_release_and_a_lost_lease(
    where: str, request: pytest.FixtureRequest, tmp_path: Path, use_s3: Callable[[Server], None]
) -> None:
    """A holder renews and releases only its own lock: once another took it over (its lease
    ended unrenewed), its renewal fails (``lost``, logged) and its release removes nothing."""
    url, _ = _repository(request, where, tmp_path, use_s3)
    storage = open_storage(url)
    now = [dt.datetime.now(dt.UTC)]
    first = RepoLock(storage=storage, lease_s=60, host="a", clock=lambda: now[0])
    assert first.acquire() and first.renew()
    assert not RepoLock(storage=storage, lease_s=60, host="b").acquire()
    now[0] += dt.timedelta(minutes=5)  # "a" stalled past its lease
    second = RepoLock(storage=storage, lease_s=60, host="b", clock=lambda: now[0])
    assert second.acquire()
    assert not first.renew() and first.lost
    first.release()  # not its lock any more: left alone
    assert not RepoLock(storage=storage, lease_s=60, host="c", clock=lambda: now[0]).acquire()
    second.release()
    assert list(storage.list(KEY)) == []


@pytest.mark.servers
def test_which_s3_servers_honour_conditional_writes(
    moto_server: Server, rclone_s3: Server, use_s3: Callable[[Server], None]
) -> None:
    """moto answers 412 to a second If-None-Match PUT; ``rclone serve s3`` overwrites, so its
    repositories get the listed protocol (and conditional methods refuse to pretend)."""
    honours = {}
    for server in (moto_server, rclone_s3):
        use_s3(server)
        s3 = open_storage(f"s3://{create_bucket(server)}")
        honours[server.name] = s3.conditional_writes()
        if honours[server.name]:
            etag = s3.put_if_absent("k", b"1")
            assert etag is not None and s3.put_if_absent("k", b"2") is None
            assert s3.replace_if("k", b"3", "0" * 32) is None
            new = s3.replace_if("k", b"3", etag)
            assert new is not None and not s3.delete_if("k", etag) and s3.delete_if("k", new)
            assert not s3.exists("k")
        else:
            with pytest.raises(RepositoryError, match="ignores conditional"):
                s3.put_if_absent("k", b"1")
    assert honours == {"moto": True, "rclone-s3": False}


def test_a_folder_compares_and_swaps(tmp_path: Path) -> None:
    folder = open_storage(str(tmp_path / "repo"))
    etag = folder.put_if_absent("@locks/x", b"1")
    assert etag is not None and folder.put_if_absent("@locks/x", b"2") is None
    assert folder.get_tagged("@locks/x") == (b"1", etag)
    assert folder.replace_if("@locks/x", b"3", "0" * 32) is None
    new = folder.replace_if("@locks/x", b"3", etag)
    assert new is not None and not folder.delete_if("@locks/x", etag)
    assert folder.delete_if("@locks/x", new) and list(folder.list()) == []
    assert not (tmp_path / "repo" / "@locks").exists()  # pruned, as delete does


def test_a_folder_without_hard_links_creates_the_lock_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    folder = open_storage(str(tmp_path / "repo"))
    first = RepoLock(storage=folder, lease_s=60)
    assert first.acquire()
    assert not RepoLock(storage=folder, lease_s=60, host="b").acquire()
    first.release()
    assert list(folder.list()) == []
