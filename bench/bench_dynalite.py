"""2. End to end on dynalite: hippolyte's backup against the server's own ceiling (the cheapest
possible parallel Scan) and against dynamodump, on a 100,000-item table of mixed types."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

import items
import load
import servers as testing
from common import (
    BENCH,
    CACHE,
    MB,
    REGION,
    BackupRun,
    Report,
    hippolyte_backup,
    metric,
    run_measured,
)
from rawscan import ScanTotals, parallel_scan

NAME = "dynalite"
TITLE = "End to end on dynalite"
TABLE = "bench"
DATA_VERSION = 1  # bump when bench/items.py changes what it generates
DYNAMODUMP_VENV = BENCH / ".venv-dynamodump"
# dynamodump starts its 25 worker threads one second apart before it scans anything; that
# sleep is set to 0 so the comparison is about the scan, not a fixed 24 s start-up delay.
DYNAMODUMP_RUN = ("import sys; import dynamodump.dynamodump as d; "
                  "d.THREAD_START_DELAY = 0; sys.exit(d.main())")


@dataclass(frozen=True, kw_only=True)
class Sizes:
    items: int
    segment_counts: tuple[int, ...]
    reps: int  # backups per segment count, each between two ceiling scans

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        return cls(items=10_000, segment_counts=(4,), reps=1) if quick else cls(
            items=100_000, segment_counts=(4, 8), reps=3)


def run(*, quick: bool) -> Report:
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    data = _dataset(sizes.items)
    table_mb = items.table_size(sizes.items) / MB
    report.raw["table"] = {"items": sizes.items, "ddb_mb": table_mb, "cache": str(data)}
    report.notes.append(f"Table: {sizes.items:,} items of ~1 KB of every type, "
                        f"{table_mb:,.1f} MB as DynamoDB sizes them; dynalite data cached "
                        f"in {data.relative_to(BENCH.parent)}.")
    with testing.start_dynalite(path=data) as server:
        parallel_scan(server.endpoint_url, table=TABLE, segments=4)  # warm the server up
        for segments in sizes.segment_counts:
            _compare(report, server.endpoint_url, sizes.items, table_mb, segments, sizes.reps)
        if DYNAMODUMP_VENV.exists() or not quick:
            _dynamodump(report, server, sizes.items, table_mb)
        else:
            report.notes.append("dynamodump skipped: its venv is made by the first full run.")
    return report


def _compare(report: Report, endpoint_url: str, count: int, table_mb: float,
             segments: int, reps: int) -> None:
    """Backups interleaved with ceiling scans (c b c b ... c); medians of each. dynalite's
    speed drifts by 10-20% from one scan to the next, so single scans make a noisy ratio."""
    ceilings = [_ceiling(endpoint_url, count, segments)]
    runs: list[BackupRun] = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="bench-dynalite-") as tmp:
            run = hippolyte_backup(TABLE, repo=Path(tmp), endpoint_url=endpoint_url,
                                   segments=segments, workers=segments, read_percent=1)
        if run.result["item_count"] != count:
            raise RuntimeError(f"backup saw {run.result['item_count']} items of {count}")
        runs.append(run)
        ceilings.append(_ceiling(endpoint_url, count, segments))
    ceiling_rates = [count / c.wall_s for c in ceilings]
    wall_rates = [count / r.process.wall_s for r in runs]
    scan_rates = [count / r.result["duration_s"] for r in runs]
    ceiling, ours = statistics.median(ceiling_rates), statistics.median(wall_rates)
    report.raw[f"segments_{segments}"] = {
        "ceilings": [c.__dict__ for c in ceilings],
        "backups": [{"wall_s": r.process.wall_s, "user_s": r.process.user_s,
                     "sys_s": r.process.sys_s, "max_rss_mb": r.process.max_rss_mb,
                     "result": r.result} for r in runs]}
    report.raw.setdefault("hippolyte_items_s", {})[segments] = ours
    s, n = f"{segments} segments", f"median of {len(runs)}" if len(runs) > 1 else "1 run"
    report.metrics += [
        metric(f"ceiling_{segments}_items_s", f"ceiling: raw parallel Scan, {s} (median of "
               f"{len(ceilings)}: {_span(ceiling_rates)})", ceiling,
               f"items/s ({ceiling * table_mb / count:,.1f} MB/s)", digits=0),
        metric(f"backup_{segments}_items_s", f"hippolyte backup, {s}, {segments} workers, "
               f"process wall ({n}: {_span(wall_rates)})", ours,
               f"items/s ({ours * table_mb / count:,.1f} MB/s)", digits=0),
        metric(f"ratio_{segments}", f"hippolyte / ceiling, {s} (process wall)",
               ours / ceiling, "", at_least=0.8, digits=2),
        metric(f"ratio_{segments}_scan", f"hippolyte / ceiling, {s} (scan only, start-up "
               "excluded)", statistics.median(scan_rates) / ceiling, "", digits=2),
        metric(f"backup_{segments}_cpu", f"hippolyte CPU (user+sys), {s}",
               statistics.median(r.process.cpu_s for r in runs), "s", digits=2),
        metric(f"backup_{segments}_rss_mb", f"hippolyte peak RSS, {s} (highest)",
               max(r.process.max_rss_mb for r in runs), "MiB", at_most=200),
    ]


def _span(rates: list[float]) -> str:
    return f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else f"{rates[0]:,.0f}"


def _ceiling(endpoint_url: str, count: int, segments: int) -> ScanTotals:
    totals = parallel_scan(endpoint_url, table=TABLE, segments=segments)
    if totals.items != count:
        raise RuntimeError(f"raw scan saw {totals.items} items of {count}")
    return totals


def _dynamodump(report: Report, server: testing.Server, count: int, table_mb: float) -> None:
    python = _dynamodump_python()
    port = server.endpoint_url.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="bench-dynamodump-") as tmp:
        command = [python, "-c", DYNAMODUMP_RUN, "-m", "backup", "-r", REGION, "-s", TABLE,
                   "--host", "127.0.0.1", "--port", port, "--accessKey", server.access_key,
                   "--secretKey", server.secret_key, "--dumpPath", str(Path(tmp) / "dump"),
                   "--log", "WARNING"]
        p = run_measured(command, cwd=Path(tmp), timeout=1800).check()
        dumped = sum(orjson.loads(f.read_bytes())["Count"]
                     for f in (Path(tmp) / "dump" / TABLE / "data").glob("*.json"))
    if dumped != count:
        raise RuntimeError(f"dynamodump wrote {dumped} items of {count}")
    rate = count / p.wall_s
    report.raw["dynamodump"] = {"wall_s": p.wall_s, "user_s": p.user_s, "sys_s": p.sys_s,
                                "max_rss_mb": p.max_rss_mb, "version": _dynamodump_version()}
    report.metrics += [
        metric("dynamodump_items_s", "dynamodump backup (1 Scan stream, as it ships)", rate,
               f"items/s ({table_mb / p.wall_s:,.1f} MB/s)", digits=0),
        metric("dynamodump_cpu", "dynamodump CPU (user+sys)", p.cpu_s, "s", digits=2),
        metric("dynamodump_rss_mb", "dynamodump peak RSS", p.max_rss_mb, "MiB"),
    ]
    for segments, ours in report.raw["hippolyte_items_s"].items():
        report.metrics.append(metric(
            f"vs_dynamodump_{segments}", f"hippolyte ({segments} segments) / dynamodump, wall",
            ours / rate, "x", at_least=5))


def _dataset(count: int) -> Path:
    """A dynalite data folder holding TABLE with items 0..count-1, loaded once and cached."""
    version = json.loads((testing.servers_dir() / "node_modules" / "dynalite" /
                          "package.json").read_text())["version"]
    folder = CACHE / f"dynalite-{version}-{count}-v{DATA_VERSION}"
    if (folder / "READY").exists():
        return folder / "db"
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    print(f"   loading {count:,} items into dynalite (once; cached in {folder.name})",
          flush=True)
    with testing.start_dynalite(path=partial / "db") as server:
        load.create_table(server.endpoint_url, TABLE, read_capacity=40_000)
        load.fill(server.endpoint_url, TABLE, count=count)
    (partial / "READY").write_text(f"{count} items\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder / "db"


def _dynamodump_python() -> str:
    python = DYNAMODUMP_VENV / "bin" / "python"
    if not (DYNAMODUMP_VENV / "bin" / "dynamodump").exists():
        print("   installing dynamodump into bench/.venv-dynamodump (once)", flush=True)
        base = shutil.which("python3") or "python3"
        for command in ([base, "-m", "venv", str(DYNAMODUMP_VENV)],
                        [str(python), "-m", "pip", "install", "--quiet", "dynamodump"]):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(DYNAMODUMP_VENV, ignore_errors=True)
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return str(python)


def _dynamodump_version() -> str:
    done = subprocess.run([str(DYNAMODUMP_VENV / "bin" / "python"), "-m", "pip", "show",
                           "dynamodump"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def backed_up(count: int, tmp: Path, *, workers: int) -> BackupRun:
    """The cached ``count``-item table copied under ``tmp`` and backed up there once by the
    CLI (``tmp / "repo"``), on a dynalite of its own, stopped again: the restore side's
    benchmarks start from this. The ``hippolyte_backup`` result (``.folder``, ``.result``)."""
    shutil.copytree(_dataset(count), tmp / "source-db", ignore=shutil.ignore_patterns("LOCK"))
    with testing.start_dynalite(path=tmp / "source-db") as source:
        return hippolyte_backup(TABLE, repo=tmp / "repo", endpoint_url=source.endpoint_url,
                                segments=workers, workers=workers, read_percent=1)
