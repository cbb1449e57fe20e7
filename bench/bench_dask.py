"""Dask versus local threads (issue 6), on dynalite, in one run on this machine.

1. One table of 100,000 items of ~1 KB (bench_dynalite's cached dataset): `hippolyte backup
   --engine dask` on a LocalCluster of 2 worker processes versus `--engine local`, same
   segments. Target: Dask's overhead under 10% of the local wall time.
2. A fleet of small tables through `backup --all` (the plan's pipelines): total time and
   tables per minute, local versus Dask.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

import bench_dynalite
import load
import servers as testing
from common import (
    HIPPOLYTE,
    REGION,
    Report,
    hippolyte_backup,
    isolate_aws,
    metric,
    run_measured,
)

NAME = "dask"
TITLE = "Dask engine versus local threads"
FLEET_PREFIX = "fleet-"


@dataclass(frozen=True)
class Sizes:
    items: int
    fleet: int
    fleet_items: int

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        return cls(items=10_000, fleet=100, fleet_items=5) if quick else cls(
            items=100_000, fleet=2_000, fleet_items=5)


@contextmanager
def local_cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        yield str(cluster.scheduler_address)


def run(*, quick: bool) -> Report:
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    data = bench_dynalite._dataset(sizes.items)
    with testing.start_dynalite(path=data) as server, local_cluster() as scheduler:
        _one_table(report, server.endpoint_url, scheduler)
    with testing.start_dynalite() as server, local_cluster() as scheduler:
        _fleet(report, server.endpoint_url, scheduler, sizes)
    return report


def _one_table(report: Report, endpoint: str, scheduler: str) -> None:
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        for engine in ("local", "dask", "local", "dask"):  # interleaved: fairer on 2 cores
            extra = ["--engine", engine] + (["--scheduler", scheduler] if engine == "dask" else [])
            run_ = hippolyte_backup(bench_dynalite.TABLE, repo=Path(tmp) / engine,
                                    endpoint_url=endpoint, segments=4, workers=4,
                                    extra=extra)
            wall = run_.process.wall_s
            walls[engine] = min(walls.get(engine, wall), wall)
            items = run_.result["item_count"]
    report.metrics += [
        metric("local_wall_s", f"local threads, {items:,} items, 4 segments", walls["local"], "s"),
        metric("dask_wall_s", "Dask, 2 worker processes, same table", walls["dask"], "s"),
        metric("dask_overhead_pct", "Dask overhead versus local (best of 2 each)",
               100 * (walls["dask"] / walls["local"] - 1), "%", at_most=10),
    ]


def _fleet(report: Report, endpoint: str, scheduler: str, sizes: Sizes) -> None:
    ddb = load.client(endpoint, pool=16)
    for i in range(sizes.fleet):
        name = f"{FLEET_PREFIX}{i:05d}"
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         ProvisionedThroughput={"ReadCapacityUnits": 1000,
                                                "WriteCapacityUnits": 1000})
    for i in range(sizes.fleet):
        ddb.batch_write_item(RequestItems={f"{FLEET_PREFIX}{i:05d}": [
            {"PutRequest": {"Item": {"pk": {"S": f"k{j}"}, "v": {"S": "x" * 200}}}}
            for j in range(sizes.fleet_items)]})
    rates: dict[str, float] = {}
    for engine in ("local", "dask"):
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            cfg = Path(tmp) / "hippolyte.toml"
            cfg.write_text(_config(Path(tmp) / "repo", endpoint, engine, scheduler))
            proc = run_measured([*HIPPOLYTE, "--config", str(cfg), "backup", "--all", "--json"],
                                cwd=Path(tmp), timeout=3600).check()
            results = orjson.loads(proc.stdout)["results"]
            ok = sum(1 for r in results if r["ok"])
            if ok != sizes.fleet:
                raise RuntimeError(f"{engine}: {ok} of {sizes.fleet} tables backed up")
            rates[engine] = ok / proc.wall_s * 60
            report.metrics.append(metric(f"fleet_{engine}_s", f"{ok:,} tables, backup --all, "
                                         f"{engine}", proc.wall_s, "s"))
            report.metrics.append(metric(f"fleet_{engine}_tpm", f"tables per minute, {engine}",
                                         rates[engine], "tables/min", digits=0))
    report.notes.append(f"Fleet: {sizes.fleet:,} tables of {sizes.fleet_items} items on one "
                        "dynalite; 4 pipelines at a time; Dask: LocalCluster, 2 processes x 2 "
                        "threads on the same 2 cores.")


def _config(repo: Path, endpoint: str, engine: str, scheduler: str) -> str:
    lines = [f'repository = "{repo}"', "workers = 4", f'engine = "{engine}"']
    if engine == "dask":
        lines.append(f'scheduler = "{scheduler}"')
    lines += ["[[targets]]", f'region = "{REGION}"', f'endpoint_url = "{endpoint}"',
              "[selection]", f'include = ["{FLEET_PREFIX}"]']
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    isolate_aws()
    report = run(quick=args.quick)
    for m in report.metrics:
        print(f"{m.label:60} {m.shown():>20} {m.target} {'' if m.ok is None else m.ok}")
    for note in report.notes:
        print(note)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
