"""Run the benchmarks: ``python bench/run.py [--only NAME]... [--quick]`` (see bench/README.md).

Prints a table, writes bench/results/latest.json (latest-quick.json for --quick) and, for a
full run, rewrites the results section of bench/README.md. Exits 1 when a benchmark fails to
run (and with ``--strict`` when a target is missed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_copy  # noqa: E402
import bench_dashboard  # noqa: E402
import bench_dask  # noqa: E402
import bench_dask_restore  # noqa: E402
import bench_drill  # noqa: E402
import bench_fleet  # noqa: E402
import bench_history  # noqa: E402
import bench_import  # noqa: E402
import bench_lock  # noqa: E402
import bench_planning  # noqa: E402
import bench_recover  # noqa: E402
import bench_restore  # noqa: E402
import bench_signer  # noqa: E402

import bench_ceiling  # noqa: E402
import bench_diff  # noqa: E402
import bench_dynalite  # noqa: E402
import bench_pacing  # noqa: E402
import report as show  # noqa: E402
from common import BENCH, Report, compile_hippolyte, isolate_aws, machine  # noqa: E402

BENCHMARKS: dict[str, tuple[str, Callable[..., Report]]] = {
    bench_ceiling.NAME: (bench_ceiling.TITLE, bench_ceiling.run),
    bench_dynalite.NAME: (bench_dynalite.TITLE, bench_dynalite.run),
    bench_pacing.NAME: (bench_pacing.TITLE, bench_pacing.run),
    bench_restore.NAME: (bench_restore.TITLE, bench_restore.run),
    bench_planning.NAME: (bench_planning.TITLE, bench_planning.run),
    bench_dask.NAME: (bench_dask.TITLE, bench_dask.run),
    bench_signer.NAME: (bench_signer.TITLE, bench_signer.run),
    bench_diff.NAME: (bench_diff.TITLE, bench_diff.run),
    bench_recover.NAME: (bench_recover.TITLE, bench_recover.run),
    bench_history.NAME: (bench_history.TITLE, bench_history.run),
    bench_copy.NAME: (bench_copy.TITLE, bench_copy.run),
    bench_import.NAME: (bench_import.TITLE, bench_import.run),
    bench_dask_restore.NAME: (bench_dask_restore.TITLE, bench_dask_restore.run),
    bench_fleet.NAME: (bench_fleet.TITLE, bench_fleet.run),
    bench_dashboard.NAME: (bench_dashboard.TITLE, bench_dashboard.run),
    bench_lock.NAME: (bench_lock.TITLE, bench_lock.run),
    bench_drill.NAME: (bench_drill.TITLE, bench_drill.run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hippolyte's speed benchmarks.")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of every benchmark in under a minute")
    parser.add_argument("--readme", choices=["auto", "yes", "no"], default="auto",
                        help="rewrite bench/README.md's results (auto: only on a full run)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    isolate_aws()
    compile_hippolyte()
    names = args.only or list(BENCHMARKS)
    reports = [_run_one(name, quick=args.quick) for name in names]
    host = machine()
    print(show.table(reports))
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    latest = results / ("latest-quick.json" if args.quick else "latest.json")
    latest.write_bytes(show.to_json(reports, machine=host))
    if args.readme == "yes" or (args.readme == "auto" and not args.quick):
        show.update_readme(BENCH / "README.md", [r for r in reports if not r.raw.get("error")],
                           machine=host, order=list(BENCHMARKS))
    failed = [r.name for r in reports if r.raw.get("error")]
    missed = [r.name for r in reports if not r.ok]
    if args.quick:
        print("\nQuick run: the sizes are too small for the speed targets (start-up weighs as "
              "much as the data); read its verdicts as a smoke test only.")
    print(f"\n{len(reports)} benchmarks in {sum(r.seconds for r in reports):.0f} s; "
          f"failed to run: {', '.join(failed) or 'none'}; targets missed: "
          f"{', '.join(missed) or 'none'}")
    return 1 if failed or (args.strict and missed) else 0


def _run_one(name: str, *, quick: bool) -> Report:
    title, run = BENCHMARKS[name]
    print(f"== {name}: {title}{' (quick)' if quick else ''}", flush=True)
    began, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        result = run(quick=quick)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        result = Report(name=name, title=title, quick=quick,
                        notes=[f"failed to run: {exc}"], raw={"error": repr(exc)})
    result.seconds = time.monotonic() - began
    load_after = os.getloadavg()[0]
    result.raw["load_average"] = {"before": load_before, "after": load_after}
    result.notes.append(f"1-minute load average {load_before:.1f} before, {load_after:.1f} "
                        f"after, on {os.cpu_count()} cores (other work on the machine skews "
                        "wall-clock figures more than CPU figures).")
    print(f"   {name} done in {result.seconds:.0f} s", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
