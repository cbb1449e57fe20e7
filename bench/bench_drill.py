"""15. Restore drills on dynalite: the RTO a drill measures (restore seconds per GB), beside a
plain `hippolyte restore` of the same backup measured the same way.

bench_dynalite's cached table (100,000 items of ~1 KB of every type; --quick: 10,000) is
backed up once by the CLI. Then, alternately, `hippolyte restore` and `hippolyte drill`
(both the CLI in a measured child, --workers 4, --write-capacity 40,000), each into a fresh,
empty dynalite on disk (the restore benchmark's set-up; the drill through
--target-endpoint-url): order restore, drill, drill, restore (--quick: one of each).

Reported: the drill's own RTO figure (its record's seconds per GB: create, check, load,
proof), its process wall (with start-up and the guarded delete), the restore's process wall
per GB of the same data, and their ratio. GB = 10^9 bytes of item data as the backup records
it (``rawBytes``: the items' DynamoDB JSON).

Standalone: ``python bench/bench_drill.py [--quick]`` prints its metrics.
"""

from __future__ import annotations

import argparse
import shutil
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
    hippolyte_backup,
    isolate_aws,
    machine,
    metric,
    run_measured,
)

NAME = "drill"
TITLE = "Restore drills on dynalite: the measured RTO beside a plain restore"
WORKERS = 4
WRITE_CAPACITY = 40_000
GB = 1_000_000_000


def run(*, quick: bool) -> Report:
    isolate_aws()
    began = time.monotonic()
    count = 10_000 if quick else 100_000
    plan = ["restore", "drill"] if quick else ["restore", "drill", "drill", "restore"]
    report = Report(name=NAME, title=TITLE, quick=quick)
    data = bench_dynalite._dataset(count)
    restores: list[ProcessRun] = []
    drills: list[tuple[ProcessRun, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench-drill-") as tmp_name:
        tmp = Path(tmp_name)
        shutil.copytree(data, tmp / "source-db", ignore=shutil.ignore_patterns("LOCK"))
        with testing.start_dynalite(path=tmp / "source-db") as source:
            made = hippolyte_backup(bench_dynalite.TABLE, repo=tmp / "repo",
                                    endpoint_url=source.endpoint_url, segments=WORKERS,
                                    workers=WORKERS, read_percent=1)
            raw_bytes = int(made.result["raw_bytes"])
            for i, kind in enumerate(plan):
                (tmp / f"cwd-{i}").mkdir()
                with testing.start_dynalite(path=tmp / f"db-{i}") as fresh:
                    if kind == "restore":
                        restores.append(_restore(made.folder, fresh.endpoint_url, tmp, i, count))
                    else:
                        drills.append(_drill(tmp, source.endpoint_url, fresh.endpoint_url, i,
                                             count))
                print(f"   {kind} {i + 1}/{len(plan)} done", flush=True)
    _metrics(report, restores, drills, raw_bytes=raw_bytes, count=count)
    report.seconds = time.monotonic() - began
    report.raw["machine"] = machine()
    return report


def _restore(folder: Path, endpoint_url: str, tmp: Path, i: int, count: int) -> ProcessRun:
    command = [*HIPPOLYTE, "restore", str(folder), "--table", f"restored-{i}",
               "--endpoint-url", endpoint_url, "--region", REGION,
               "--write-capacity", str(WRITE_CAPACITY), "--workers", str(WORKERS),
               "--state-dir", str(tmp / f"state-{i}"), "--json"]
    p = run_measured(command, cwd=tmp / f"cwd-{i}", timeout=1800).check()
    doc = orjson.loads(p.stdout)
    if not doc["proof"]["ok"] or doc["itemsWritten"] != count:
        raise RuntimeError(f"restore {i}: {doc}")
    return p


def _drill(tmp: Path, source_url: str, target_url: str, i: int,
           count: int) -> tuple[ProcessRun, dict]:
    command = [*HIPPOLYTE, "drill", bench_dynalite.TABLE, "--repo", str(tmp / "repo"),
               "--endpoint-url", source_url, "--region", REGION,
               "--target-endpoint-url", target_url, "--write-capacity", str(WRITE_CAPACITY),
               "--no-notify", "--json"]
    p = run_measured(command, cwd=tmp / f"cwd-{i}", timeout=1800).check()
    doc = orjson.loads(p.stdout)
    (table,) = doc["tables"]
    if not (table["ok"] and table["deleted"] and table["items"] == count):
        raise RuntimeError(f"drill {i}: {doc}")
    return p, table


def _metrics(report: Report, restores: list[ProcessRun], drills: list[tuple[ProcessRun, dict]],
             *, raw_bytes: int, count: int) -> None:
    gb = raw_bytes / GB
    rto = statistics.median(t["seconds_per_gb"] for _, t in drills)
    drill_wall = statistics.median(p.wall_s for p, _ in drills)
    restore_wall = statistics.median(p.wall_s for p in restores)
    spans = ", ".join(f"{t['seconds_per_gb']:,.0f}" for _, t in drills)
    report.metrics += [
        metric("drill_s_per_gb", f"drill RTO, its record's seconds per GB (create, check, load, "
               f"proof; runs: {spans})", rto, "s/GB", digits=0),
        metric("drill_wall_s_per_gb", "drill, process wall per GB (start-up, the guarded "
               "delete and the record included)", drill_wall / gb, "s/GB", digits=0),
        metric("restore_wall_s_per_gb", "plain `hippolyte restore` of the same backup, process "
               "wall per GB", restore_wall / gb, "s/GB", digits=0),
        metric("drill_rto_over_restore", "drill RTO / plain restore wall (same data, same "
               "fresh dynalite)", rto / (restore_wall / gb), "x", digits=2),
        metric("drill_items_per_s", "drill, items restored and proven per second of its RTO",
               count / (rto * gb), "items/s", digits=0),
    ]
    report.notes.append(
        f"bench_dynalite's cached {count:,}-item table backed up by hippolyte "
        f"({raw_bytes / 1e6:,.1f} MB of item JSON); each restore or drill into a fresh, empty "
        f"dynalite on disk, --workers {WORKERS}, --write-capacity {WRITE_CAPACITY:,}; the drill "
        "restores through --target-endpoint-url and deletes its scratch table after the guard's "
        "DescribeTable + ListTagsOfResource. GB = 10^9 bytes of item JSON (the backup's "
        "rawBytes). Wall times: drill "
        + ", ".join(f"{p.wall_s:.1f}" for p, _ in drills)
        + " s; restore " + ", ".join(f"{p.wall_s:.1f}" for p in restores) + " s.")
    report.raw.update(drills=[t for _, t in drills], raw_bytes=raw_bytes,
                      restore_wall_s=[p.wall_s for p in restores],
                      drill_wall_s=[p.wall_s for p, _ in drills])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 items, one of each")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(f"{result.title}{' (quick)' if result.quick else ''}: {result.seconds:.0f} s")
    for m in result.metrics:
        print(f"  {m.label}: {m.shown()}")
    for note in result.notes:
        print(f"  - {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
