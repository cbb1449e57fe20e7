"""Each local server starts on 127.0.0.1, answers, and is gone once stopped."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from tests.support import servers as testing
from tests.support.servers import Server

pytestmark = pytest.mark.servers


def _list_tables(server: Server) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )
    assert isinstance(client.list_tables()["TableNames"], list)


def _list_buckets(server: Server) -> None:
    assert "Buckets" in testing.s3_client(server).list_buckets()


STARTERS: dict[str, tuple[Callable[[Path], Server], Callable[[Server], None]]] = {
    "dynalite": (lambda tmp: testing.start_dynalite(), _list_tables),
    "dynalite-on-disk": (lambda tmp: testing.start_dynalite(path=tmp / "db"), _list_tables),
    "dynamodb-local": (lambda tmp: testing.start_dynamodb_local(xmx="256m"), _list_tables),
    "moto": (lambda tmp: testing.start_moto(), _list_buckets),
    "rclone-s3": (lambda tmp: testing.start_rclone_s3(tmp / "root"), _list_buckets),
}


@pytest.mark.parametrize("name", STARTERS)
def test_server_starts_answers_and_stops(name: str, tmp_path: Path) -> None:
    start, answer = STARTERS[name]
    with start(tmp_path) as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        answer(server)
        log = server.log_path
        assert log.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert not log.exists()  # the temp folder went with the server
    server.stop()  # twice is fine


def test_free_ports_differ() -> None:
    assert len({testing.free_port() for _ in range(5)}) > 1


def test_aws_env_is_dummy_and_points_at_the_server(rclone_s3: Server) -> None:
    env = testing.aws_env(rclone_s3, services=["s3"])
    assert env["AWS_ACCESS_KEY_ID"] == rclone_s3.access_key
    assert env["AWS_SECRET_ACCESS_KEY"] == rclone_s3.secret_key
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL_S3"] == rclone_s3.endpoint_url


def test_missing_install_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPPOLYTE_SERVERS_DIR", str(tmp_path))
    with pytest.raises(testing.ServerError, match="npm ci"):
        testing.start_dynalite()


def test_early_exit_shows_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_venv_bin", lambda name: "/bin/false")
    with pytest.raises(testing.ServerError, match="moto exited with code 1"):
        testing.start_moto()


def test_ddb_server_runs_on_both_dynamodb_servers(ddb_server: Server) -> None:
    _list_tables(ddb_server)
