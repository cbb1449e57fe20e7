"""Dashboard generation over a large repository: 1,000 tables x 30 committed backups and 100
runs (each with its plan and the result of 1,000 tables), in the real layout. No servers.

    .venv/bin/python bench/bench_dashboard.py [--tables N] [--backups N] [--runs N] [--json]

The repository is built quickly: one backup is written through ``repo.writer.commit`` (the
real descriptor, manifests and ``_SUCCESS``, with a realistic DescribeTable: key schema, two
GSIs, stream, SSE, tags) and every other backup is a copy of its files with the table, id,
item count, size and duration changed in ``hippolyte.json``; the runs are written through
``repo.runs`` (``plan.json`` from the real planner, ``result.json``, and ``monitor.json``
for every tenth). 5% of the tables are late (their newest backup 3 days old); every run has
failures and boosts.

Measured (best of 3): ``gather`` + ``render`` as ``hippolyte dashboard`` runs them (cold: no
memo; the file page embeds the Gantt), and as ``serve`` regenerates its page (the committed
backups' facts kept in memory between pages: ``warm``). Page weight: the file's and serve's
(which links the Gantt at /plan rather than embedding it). Also the CLI end to end in a child
process (interpreter start-up included), informative.

Targets: generation under 2 s, page under 1 MB (1,000 tables x 30 backups, 100 runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters.storage import open_storage
from hippolyte.core import planning
from hippolyte.core.config import Settings
from hippolyte.core.dashboard_html import render
from hippolyte.core.model import (
    BackupRef,
    CapacityOutcome,
    CapacityStatus,
    CheckStatus,
    FileEntry,
    MonitorReport,
    RunResult,
    TableCheck,
    TableInfo,
    TableResult,
)
from hippolyte.ops.dashboard import RUNS_SHOWN, TREND, gather
from hippolyte.repo import manifest, runs, writer

NAME = "dashboard"
TITLE = "Dashboard: generation and page weight, 1,000 tables x 30 backups and 100 runs"
TIME_TARGET_S = 2.0
WEIGHT_TARGET_MB = 1.0
REPEATS = 3
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
LATE_SHARE = 0.05


def description(name: str) -> dict[str, Any]:
    """A DescribeTable ``Table`` as large as a real one with two GSIs."""
    gsi = [
        {
            "IndexName": f"by-{attr}",
            "KeySchema": [
                {"AttributeName": attr, "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
            "IndexStatus": "ACTIVE",
            "ProvisionedThroughput": {"ReadCapacityUnits": 100, "WriteCapacityUnits": 50},
            "IndexSizeBytes": 123_456_789,
            "ItemCount": 1_000_000,
            "IndexArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}/index/by-{attr}",
        }
        for attr in ("customer", "status")
    ]
    return {
        "TableName": name,
        "TableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}",
        "TableId": "8a1f1c52-0000-4000-8000-000000000000",
        "TableStatus": "ACTIVE",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "customer", "status")
        ],
        "ProvisionedThroughput": {"ReadCapacityUnits": 500, "WriteCapacityUnits": 100},
        "GlobalSecondaryIndexes": gsi,
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS"},
        "TableSizeBytes": 1_234_567_890,
        "ItemCount": 1_000_000,
        "DeletionProtectionEnabled": True,
    }


def template(root: Path) -> Path:
    """One backup committed through the real writer: the folder every other one copies."""
    storage = open_storage(str(root))
    start = NOW - dt.timedelta(days=1)
    ref = writer.allocate(storage, table="template-table", at=start)
    data = gzip.compress(b'{"Item":{"pk":{"S":"a"},"sk":{"S":"b"}}}\n')
    key = manifest.data_key(0, 0)
    storage.put_bytes(ref.prefix + key, data)
    storage.put_bytes(ref.prefix + manifest.STARTED, b'{"table":"template-table"}')
    entry = FileEntry(
        key=key,
        item_count=1,
        raw_bytes=42,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5="AAAAAAAAAAAAAAAAAAAAAA==",
    )
    info = TableInfo(name="template-table", description=description("template-table"))
    writer.commit(
        storage,
        ref=ref,
        info=info,
        extras={"timeToLive": None, "tags": {"team": "payments"}, "pointInTimeRecovery": None},
        files=[entry],
        start=start,
        end=start + dt.timedelta(seconds=60),
        run={"engine": "local", "readPercent": 0.5, "segments": 4, "workers": 4},
        consumed=12.5,
        source={"account": "123456789012", "region": "us-east-1", "endpoint": None},
    )
    return root / ref.prefix


def build(root: Path, *, tables: int, backups: int, run_count: int) -> list[str]:
    """The synthetic repository; returns the table names."""
    folder = template(root / ".template")
    files = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    desc = orjson.loads(files[Path(manifest.DESCRIPTOR)])
    rng = random.Random(20261129)
    names = [f"svc-{i // 50:02d}-table-{i:04d}" for i in range(tables)]
    for i, name in enumerate(names):
        late = i < tables * LATE_SHARE
        newest = NOW - dt.timedelta(days=3 if late else 0, hours=11, minutes=50)
        items = rng.randrange(1_000, 10_000_000)
        for b in range(backups):
            bid = manifest.backup_id(newest - dt.timedelta(days=b))
            path = root / name / bid
            (path / "data").mkdir(parents=True)
            desc["table"]["name"] = name
            desc["backup"].update(
                id=bid,
                itemCount=items + b * 100,
                rawBytes=(items + b * 100) * 1_000,
                durationSeconds=round(items / 20_000 * rng.uniform(0.8, 1.2), 3),
            )
            for rel, data in files.items():
                body = orjson.dumps(desc) if rel == Path(manifest.DESCRIPTOR) else data
                (path / rel).write_bytes(body)
    write_runs(open_storage(str(root)), names, run_count=run_count, rng=rng)
    shutil.rmtree(root / ".template")
    return names


def write_runs(storage: Any, names: list[str], *, run_count: int, rng: random.Random) -> None:
    infos = [
        TableInfo(name=n, read_capacity=500, size_bytes=rng.randrange(10**6, 10**11))
        for n in names
    ]
    plan = planning.plan(infos, settings=planning.PlanSettings())
    for r in range(run_count):
        rid = manifest.backup_id(NOW - dt.timedelta(days=r, hours=11, minutes=50))
        failed = set(rng.sample(names, 3))
        boosted = rng.sample(names, 20)
        results = [
            TableResult(
                table=n,
                ref=None if n in failed else BackupRef(repo=storage.url, table=n, backup_id=rid),
                ok=n not in failed,
                item_count=1000,
                raw_bytes=1_000_000,
                duration_s=12.5,
                error="ProvisionedThroughputExceededException after 10 attempts"
                if n in failed
                else None,
            )
            for n in names
        ]
        capacity = [CapacityOutcome(table=n, status=CapacityStatus.BOOSTED) for n in boosted[:2]]
        capacity += [CapacityOutcome(table=n, status=CapacityStatus.REVERTED) for n in boosted]
        runs.write_plan(storage, rid, plan)
        runs.write_result(storage, RunResult(run_id=rid, results=results, capacity=capacity))
        if r % 10 == 0:
            checks = [
                TableCheck(
                    table=n,
                    target="us-east-1",
                    ok=n not in failed,
                    reason="no backup" if n in failed else f"committed {rid}",
                )
                for n in names
            ]
            assert CheckStatus.OK  # the monitor's record, as the monitor writes it
            runs.write_monitor(
                storage,
                MonitorReport(
                    run_id=rid,
                    checked_at=NOW,
                    ran=True,
                    repository=storage.url,
                    tables=checks,
                    logs=f"{storage.url}/@runs/{rid}/",
                ),
            )


def measure(root: Path) -> dict[str, Any]:
    settings = Settings.model_validate({"repository": str(root), "targets": [{}]})
    cold, warm, cpu = [], [], []
    for _ in range(REPEATS):
        memo: dict[str, Any] = {}
        began, began_cpu = time.perf_counter(), time.process_time()
        doc = gather(settings, now=NOW, memo=memo)
        page = render(doc)
        cold.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
        began = time.perf_counter()
        served = render(gather(settings, now=NOW, memo=memo), refresh_s=60, plan_href="plan")
        warm.append(time.perf_counter() - began)
    states = [t["state"] for t in doc["tables"]]
    return {
        "generate_cold_s": min(cold),
        "generate_cold_cpu_s": min(cpu),
        "generate_warm_s": min(warm),
        "load_average": os.getloadavg()[0],
        "page_bytes": len(page.encode()),
        "served_page_bytes": len(served.encode()),
        "tables": len(doc["tables"]),
        "late": states.count("late"),
        "runs_shown": len(doc["runs"]),
        "runs": doc["runCount"],
    }


def cli_wall(root: Path) -> float:
    out = root.parent / "dashboard.html"
    began = time.perf_counter()
    hippolyte = [str(Path(sys.executable).parent / "hippolyte")]
    subprocess.run(
        [*hippolyte, "dashboard", "--repo", str(root), "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=root.parent,  # no hippolyte.toml there: the defaults and --repo
        env={k: v for k, v in os.environ.items() if k != "HIPPOLYTE_CONFIG"},
    )
    return time.perf_counter() - began


def main_measure(
    *, tables: int, backups: int, run_count: int, keep: Path | None = None
) -> dict[str, Any]:
    """Build the repository (in ``keep`` if given and not built yet: later runs reuse it)
    and measure."""
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        root = (keep or Path(tmp)) / "repo"
        began = time.perf_counter()
        if not root.exists():
            build(root, tables=tables, backups=backups, run_count=run_count)
        built = time.perf_counter() - began
        result = measure(root)
        result.update(build_s=built, cli_wall_s=cli_wall(root))
        result.update(tables_in_repo=tables, backups_per_table=backups, runs_in_repo=run_count)
        return result


def run(*, quick: bool) -> Any:
    """For bench/run.py (quick: 100 tables x 10 backups, 10 runs)."""
    from common import Report, metric

    tables, backups, run_count = (100, 10, 10) if quick else (1_000, 30, 100)
    r = main_measure(tables=tables, backups=backups, run_count=run_count)
    size = f"{tables:,} tables x {backups} backups, {run_count} runs"
    full = not quick
    report = Report(name=NAME, title=TITLE, quick=quick, raw=r)
    report.metrics += [
        metric("generate_cold_s", f"{size}: gather + render (hippolyte dashboard)",
               r["generate_cold_s"], "s", **({"at_most": TIME_TARGET_S} if full else {}),
               digits=2),
        metric("generate_cold_cpu_s", f"{size}: gather + render, CPU", r["generate_cold_cpu_s"],
               "s", digits=2),
        metric("generate_warm_s", f"{size}: serve's next page (facts kept)",
               r["generate_warm_s"], "s", digits=2),
        metric("page_mb", f"{size}: page weight, file (Gantt embedded)",
               r["page_bytes"] / 1e6, "MB", **({"at_most": WEIGHT_TARGET_MB} if full else {}),
               digits=2),
        metric("served_page_mb", f"{size}: page weight, serve (Gantt linked)",
               r["served_page_bytes"] / 1e6, "MB", digits=2),
        metric("cli_wall_s", f"{size}: hippolyte dashboard end to end", r["cli_wall_s"], "s",
               digits=2),
    ]
    report.notes.append(
        f"Reads per table: the folder names, the markers and descriptors of the newest "
        f"{TREND} committed backups and the oldest marker; the newest {RUNS_SHOWN} runs' "
        f"records. Repository built in {r['build_s']:.0f} s; load average "
        f"{r['load_average']:.1f} while measuring."
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1_000)
    parser.add_argument("--backups", type=int, default=30)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="build the repository here once, reuse it")
    args = parser.parse_args()
    r = main_measure(
        tables=args.tables, backups=args.backups, run_count=args.runs, keep=args.keep
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return
    for key, value in r.items():
        print(f"{key:>20}: {value:,.3f}" if isinstance(value, float) else f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
