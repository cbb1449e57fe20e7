"""The servers the tests and benchmarks start beside the product's own DynamoDB Local: dynalite,
moto and ``rclone serve s3``, with S3 helpers. Test code: it stays out of the wheel.

    with start_dynalite() as server:
        boto3.client("dynamodb", endpoint_url=server.endpoint_url, ...)
"""

from __future__ import annotations

import functools
import shutil
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hippolyte.adapters.local_servers import (
    DUMMY_KEY,
    REGION,
    Server,
    ServerError,
    dynamodb_ready,
    free_port,
    http_answers,
    node_package,
    servers_dir,
    start_dynamodb_local,
    start_process,
)

__all__ = [
    "DUMMY_KEY",
    "REGION",
    "Server",
    "ServerError",
    "aws_env",
    "create_bucket",
    "free_port",
    "s3_client",
    "servers_dir",
    "start_dynalite",
    "start_dynamodb_local",
    "start_moto",
    "start_rclone_s3",
]


def aws_env(server: Server, *, services: Iterable[str] = ()) -> dict[str, str]:
    """Environment for a subprocess (CLI) talking to ``server`` with dummy credentials.

    ``services`` (e.g. ``["s3"]``) also points ``AWS_ENDPOINT_URL_<SERVICE>`` at the server.
    Merge into ``os.environ`` and drop ``AWS_PROFILE`` so nothing reaches a real account.
    """
    env = {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for service in services:
        env[f"AWS_ENDPOINT_URL_{service.upper()}"] = server.endpoint_url
    return env


# -- locating the npm installs ---------------------------------------------------------------


def _venv_bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServerError(
            f"{name!r} not found next to {sys.executable} nor on PATH; "
            "install the test extras: pip install -e '.[test]'"
        )
    return found


# -- starting ----------------------------------------------------------------------------------


def start_dynalite(*, path: Path | None = None) -> Server:
    cli = node_package("dynalite") / "cli.js"

    def command(port: int) -> list[str]:
        cmd = [
            shutil.which("node") or "node",
            str(cli),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--createTableMs",
            "0",
            "--deleteTableMs",
            "0",
            "--updateTableMs",
            "0",
        ]
        return cmd + (["--path", str(path)] if path is not None else [])

    return start_process("dynalite", command, ready=dynamodb_ready)


def start_moto() -> Server:
    moto = _venv_bin("moto_server")
    return start_process(
        "moto", lambda port: [moto, "-H", "127.0.0.1", "-p", str(port)], ready=http_answers
    )


def start_rclone_s3(root: Path) -> Server:
    """``rclone serve s3`` over ``root``: each top-level folder of ``root`` is a bucket."""
    rclone = _venv_bin("rclone")
    root.mkdir(parents=True, exist_ok=True)
    key, secret = f"rclone-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

    def command(port: int) -> list[str]:
        return [
            rclone,
            "--config",
            "rclone.conf",
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{key},{secret}",
            str(root),
        ]

    return start_process(
        "rclone-s3",
        command,
        ready=http_answers,
        files={"rclone.conf": ""},
        access_key=key,
        secret_key=secret,
    )


@functools.cache
def s3_client(server: Server) -> Any:
    """A boto3 S3 client for ``server``, with its credentials and path-style addressing."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=REGION,
    ).client("s3", endpoint_url=server.endpoint_url, config=Config(s3={"addressing_style": "path"}))


def create_bucket(server: Server, *, name: str | None = None) -> str:
    """Create a bucket (a fresh uniquely named one by default) and return its name."""
    bucket = name or f"test-{uuid.uuid4().hex[:12]}"
    s3_client(server).create_bucket(Bucket=bucket)
    return bucket
