"""What the benchmarks share: a safe AWS environment, measured child processes, the hippolyte
CLI as a subprocess, reading a committed backup back, and the result types."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
REGION = "us-east-1"
# The CLI under test; HIPPOLYTE_BENCH_CLI (a command line, split on spaces) measures another
# build, e.g. "python /path/to/candidate/cli_wrapper.py", with everything else unchanged.
HIPPOLYTE = os.environ.get("HIPPOLYTE_BENCH_CLI", "").split() or [
    str(Path(sys.executable).parent / "hippolyte")]
MB = 1_000_000

_AWS_VARS_TO_DROP = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB", "HIPPOLYTE_CONFIG",
)


def compile_hippolyte() -> None:
    """Hippolyte's bytecode written beside its sources, as pip writes it when it installs the
    package. The bench runs an editable install, which has none, and where
    PYTHONDONTWRITEBYTECODE is set (as on this project's machines) every CLI process, and
    every fork server it starts, would compile all of hippolyte from source again (~0.4 s of
    CPU each): a cost of the checkout, not of the tool. dynamodump, installed by pip, has its
    bytecode."""
    import compileall

    import hippolyte

    compileall.compile_dir(str(Path(hippolyte.__file__).parent), quiet=1)


def isolate_aws() -> None:
    """Dummy credentials, no profile, no config file: nothing can reach a real account.
    Set on this process, so in-process clients and every child inherit it."""
    for name in _AWS_VARS_TO_DROP:
        os.environ.pop(name, None)
    nowhere = str(Path(tempfile.gettempdir()) / "hippolyte-bench-no-aws-config")
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": nowhere,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
    })


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- results -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Metric:
    key: str  # stable name in latest.json
    label: str  # what a reader sees
    value: float
    unit: str
    target: str = ""  # e.g. ">= 60"; empty when informative only
    ok: bool | None = None  # None: no target
    digits: int = 1

    def shown(self) -> str:
        return f"{self.value:,.{self.digits}f} {self.unit}".strip()


def metric(key: str, label: str, value: float, unit: str, *, at_least: float | None = None,
           at_most: float | None = None, digits: int = 1) -> Metric:
    if at_least is not None:
        return Metric(key=key, label=label, value=value, unit=unit, digits=digits,
                      target=f">= {at_least:g}", ok=value >= at_least)
    if at_most is not None:
        return Metric(key=key, label=label, value=value, unit=unit, digits=digits,
                      target=f"< {at_most:g}", ok=value < at_most)
    return Metric(key=key, label=label, value=value, unit=unit, digits=digits)


@dataclass(kw_only=True)
class Report:
    name: str
    title: str
    quick: bool
    seconds: float = 0.0
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(m.ok is not False for m in self.metrics)


# -- measured child processes --------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ProcessRun:
    """One child process: its exit code, wall time, CPU (user + sys) and peak RSS from
    ``wait4``, its stdout, and its stderr lines with their arrival time since the start
    (of the launcher, ~20 ms earlier than the command itself)."""

    command: Sequence[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float  # ru_maxrss is in KiB on Linux; reported in MiB
    stdout: bytes
    stderr: list[tuple[float, bytes]]

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def stderr_text(self, *, last: int = 20) -> str:
        return b"".join(line for _, line in self.stderr[-last:]).decode("utf-8", "replace")

    def check(self) -> ProcessRun:
        if self.returncode != 0:
            raise RuntimeError(f"{' '.join(self.command[:3])}... exited {self.returncode}:\n"
                               f"{self.stderr_text()}\n{self.stdout[-2000:].decode(errors='replace')}")
        return self


def run_measured(command: Sequence[str], *, cwd: Path, timeout: float,
                 env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``command`` to completion through bench/measure.py, which reaps it with
    ``os.wait4`` and reports its own resource usage (see measure.py for why not from here)."""
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        usage_file = Path(tmp) / "usage.json"
        launcher = [sys.executable, str(BENCH / "measure.py"), str(usage_file), "--", *command]
        began = time.monotonic()
        proc = subprocess.Popen(launcher, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = proc.stdout, proc.stderr
        out: list[bytes] = []
        err: list[tuple[float, bytes]] = []
        readers = [
            threading.Thread(target=lambda: out.append(stdout.read()), daemon=True),
            threading.Thread(target=lambda: err.extend(
                (time.monotonic() - began, line) for line in iter(stderr.readline, b"")),
                daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)  # the launcher and the command: one process group
            proc.wait()
        for reader in readers:
            reader.join()
        stdout.close()
        stderr.close()
        usage: dict[str, Any] = orjson.loads(usage_file.read_bytes()) if usage_file.exists() else {
            "returncode": proc.returncode, "wall_s": time.monotonic() - began,
            "user_s": 0.0, "sys_s": 0.0, "max_rss_kib": 0}
    return ProcessRun(command=list(command), returncode=usage["returncode"],
                      wall_s=usage["wall_s"], user_s=usage["user_s"], sys_s=usage["sys_s"],
                      max_rss_mb=usage["max_rss_kib"] / 1024, stdout=b"".join(out), stderr=err)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- hippolyte as the user runs it ----------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class BackupRun:
    process: ProcessRun
    result: dict[str, Any]  # the one TableResult in the CLI's --json document
    folder: Path  # the committed backup folder

    @property
    def events(self) -> list[tuple[float, dict[str, Any]]]:
        """The JSON-lines events from stderr, with their arrival time since the start."""
        found = []
        for at, line in self.process.stderr:
            if line.startswith(b"{"):
                try:
                    found.append((at, orjson.loads(line)))
                except orjson.JSONDecodeError:
                    continue
        return found


def hippolyte_backup(
    table: str, *, repo: Path, endpoint_url: str, segments: int | None = None,
    workers: int | None = None, read_percent: float | None = None, timeout: float = 1800,
    extra: Sequence[str] = (),
) -> BackupRun:
    """``hippolyte backup TABLE --json`` in a child process, from an empty working directory
    (so no ./hippolyte.toml is picked up)."""
    command = [*HIPPOLYTE, "backup", table, "--repo", str(repo), "--endpoint-url", endpoint_url,
               "--region", REGION, "--json"]
    for flag, value in (("--segments", segments), ("--workers", workers),
                        ("--read-percent", read_percent)):
        if value is not None:
            command += [flag, str(value)]
    command += list(extra)
    repo.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hippolyte-bench-cwd-") as cwd:
        run = run_measured(command, cwd=Path(cwd), timeout=timeout).check()
    doc = orjson.loads(run.stdout)
    (result,) = doc["results"]
    if not result["ok"]:
        raise RuntimeError(f"backup of {table} failed: {result.get('error')}")
    ref = result["ref"]
    folder = repo / ref["table"] / ref["backup_id"]
    if not (folder / "_SUCCESS").exists():
        raise RuntimeError(f"{folder} has no _SUCCESS marker")
    return BackupRun(process=run, result=result, folder=folder)


def backup_items(folder: Path) -> dict[int, list[Any]]:
    """Every item of a committed backup, parsed, per segment in file order."""
    found: dict[int, list[Any]] = {}
    for path in sorted((folder / "data").glob("*.json.gz")):
        segment = int(path.name.split("-", 1)[0])
        with gzip.open(path, "rb") as lines:
            found.setdefault(segment, []).extend(orjson.loads(line)["Item"] for line in lines)
    return found


# -- the canned Scan server ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Canned:
    pid: int
    endpoint_url: str
    port: int


@contextmanager
def canned_server(*, extras: bool = True) -> Iterator[Canned]:
    """bench/canned_server.py in its own process on 127.0.0.1; stopped by its pid."""
    args = [] if extras else ["--no-extras"]
    with script_server("canned_server.py", *args) as (pid, port):
        yield Canned(pid=pid, endpoint_url=f"http://127.0.0.1:{port}", port=port)


@contextmanager
def script_server(script: str, *args: str) -> Iterator[tuple[int, int]]:
    """A bench/ server script in its own process: it prints its port on its first line;
    yields (pid, port); stopped by its pid (SIGTERM, then SIGKILL after 10 s)."""
    proc = subprocess.Popen([sys.executable, str(BENCH / script), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{script} did not start (said {line!r})")
        yield proc.pid, int(line)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
