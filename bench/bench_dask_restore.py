"""16. Restore over Dask (issue 15): `restore --engine dask` on a LocalCluster of 2 worker
processes against the local engine, the same backup into the same fresh dynalite.

bench_dynalite's cached table (100,000 items of ~1 KB of every type; --quick: 10,000) is
backed up once by the CLI. Then, alternately, `hippolyte restore` with the local engine and
with `--engine dask --scheduler` (a LocalCluster of 2 processes x 2 threads started here),
both the CLI in a measured child, --workers 4, --write-capacity 40,000, each into a fresh,
empty dynalite on disk: local, dask, dask, local (--quick: one of each). Both prove the table.

Reported: each engine's median wall, and the Dask restore's overhead against the local one
(target: under 10%).

Standalone: ``python bench/bench_dask_restore.py [--quick]`` prints its metrics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

import servers as testing

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dynalite  # noqa: E402
from common import (  # noqa: E402
    HIPPOLYTE,
    REGION,
    ProcessRun,
    Report,
    isolate_aws,
    machine,
    metric,
    run_measured,
)

NAME = "dask_restore"
TITLE = "Restore over Dask (LocalCluster, 2 processes) against the local engine on dynalite"
WORKERS = 4
WRITE_CAPACITY = 40_000


def run(*, quick: bool) -> Report:
    from distributed import LocalCluster

    isolate_aws()
    began = time.monotonic()
    count = 10_000 if quick else 100_000
    plan = ["local", "dask"] if quick else ["local", "dask", "dask", "local"]
    report = Report(name=NAME, title=TITLE, quick=quick)
    walls: dict[str, list[ProcessRun]] = {"local": [], "dask": []}
    with tempfile.TemporaryDirectory(prefix="bench-dask-restore-") as tmp_name, LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0",
        host="127.0.0.1",
    ) as cluster:
        tmp = Path(tmp_name)
        made = bench_dynalite.backed_up(count, tmp, workers=WORKERS)
        for i, kind in enumerate(plan):
            (tmp / f"cwd-{i}").mkdir()
            with testing.start_dynalite(path=tmp / f"db-{i}") as fresh:
                extra = ["--engine", "dask", "--scheduler", cluster.scheduler_address] \
                    if kind == "dask" else ["--engine", "load"]
                command = [*HIPPOLYTE, "restore", str(made.folder), "--table", f"restored-{i}",
                           "--endpoint-url", fresh.endpoint_url, "--region", REGION,
                           "--write-capacity", str(WRITE_CAPACITY), "--workers", str(WORKERS),
                           "--state-dir", str(tmp / f"state-{i}"), *extra, "--json"]
                p = run_measured(command, cwd=tmp / f"cwd-{i}", timeout=1800).check()
                doc = orjson.loads(p.stdout.decode().strip().splitlines()[-1])
                if not doc["proof"]["ok"] or doc["itemsWritten"] != count:
                    raise RuntimeError(f"{kind} restore {i}: {doc}")
                walls[kind].append(p)
            print(f"   {kind} {i + 1}/{len(plan)} done", flush=True)
    local = statistics.median(p.wall_s for p in walls["local"])
    dask = statistics.median(p.wall_s for p in walls["dask"])
    report.metrics += [
        metric("local_wall_s", f"local engine, {count:,} items, median wall", local, "s"),
        metric("dask_wall_s", "Dask engine (2 processes x 2 threads), median wall", dask, "s"),
        metric("dask_overhead", "Dask restore's overhead against the local engine",
               dask / local - 1, "", at_most=0.10, digits=2),
    ]
    report.notes.append(
        "walls: local " + ", ".join(f"{p.wall_s:.1f}" for p in walls["local"]) + " s; dask "
        + ", ".join(f"{p.wall_s:.1f}" for p in walls["dask"]) + " s; CPU of the CLI: local "
        + ", ".join(f"{p.cpu_s:.1f}" for p in walls["local"]) + " s, dask "
        + ", ".join(f"{p.cpu_s:.1f}" for p in walls["dask"]) + " s (the workers' CPU is theirs)")
    report.raw.update(local=[p.wall_s for p in walls["local"]],
                      dask=[p.wall_s for p in walls["dask"]])
    report.seconds = time.monotonic() - began
    report.raw["machine"] = machine()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 items, one of each")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(f"{result.title}{' (quick)' if result.quick else ''}: {result.seconds:.0f} s")
    for m in result.metrics:
        print(f"  {m.label}: {m.shown()} {m.target}")
    for note in result.notes:
        print(f"  - {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
