"""forget on a real repository folder (issue 14, Speed): 200 tables x 400 daily backups
(80,000 committed backups, 400,000 files), GFS rules; the time of the listing, the decision
and the removal, and the process's peak RSS.

    .venv/bin/python bench/bench_forget_folder.py [--tables N] [--backups N] [--dir DIR]

The folder is built quickly but in the real layout: one backup is committed by
``repo.writer.commit`` (a data file of one item, both manifests, the descriptor, ``_SUCCESS``),
and every other backup is that one's five files with the table name, the id and the times
replaced (so its descriptor and manifests name its own table, id and keys), written without
fsync. The listing is timed alone (``ops.forget.listing``), then the decision
(``core.retention.decide``), then ``ops.forget.forget`` itself, whose removal is timed from its
"kept / to remove" step to its return.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from hippolyte.adapters.storage import open_storage
from hippolyte.core.events import Event, Step
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.core.retention import KeepPolicy, decide
from hippolyte.engines.segment import DataFileWriter
from hippolyte.ops.forget import forget, listing
from hippolyte.repo import catalog, manifest, writer

NOW = dt.datetime(2026, 11, 29, 22, 0, tzinfo=dt.UTC)
TEMPLATE = "tpltable"
POLICY = KeepPolicy(keep_daily=7, keep_weekly=4, keep_monthly=12)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def template(root: Path) -> tuple[dt.datetime, dict[str, bytes]]:
    """One backup committed by the writer: its start and its files by name."""
    storage = open_storage(str(root))
    at = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ref = BackupRef(repo=storage.url, table=TEMPLATE, backup_id=manifest.backup_id(at))
    out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(0, 0))
    out.write_items([orjson.dumps({"pk": {"S": "one item"}})])
    desc = {
        "TableName": TEMPLATE,
        "TableArn": f"arn:aws:dynamodb:us-east-1:000000000000:table/{TEMPLATE}",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    }
    writer.commit(
        storage,
        ref=ref,
        info=TableInfo.from_description(desc),
        extras={},
        files=[out.commit()],
        start=at,
        end=at + dt.timedelta(minutes=5),
        run={},
        consumed=0.0,
        source={},
    )
    folder = root / TEMPLATE / ref.backup_id
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return at, files


def build(repo: Path, *, tables: int, backups: int) -> int:
    """``tables`` x ``backups`` daily backups (one a day, each at its own minute of the night)
    copied from the template; returns the number of files written."""
    at0, files = template(repo / ".template")
    tokens = [
        TEMPLATE.encode(),
        manifest.backup_id(at0).encode(),
        manifest.iso(at0).encode(),
        manifest.iso(at0 + dt.timedelta(minutes=5)).encode(),
    ]
    written = 0
    for t in range(tables):
        table = f"table-{t:04d}"
        for d in range(backups):
            at = NOW - dt.timedelta(days=d, hours=21, minutes=t % 60)
            bid = manifest.backup_id(at)
            values = [
                table.encode(),
                bid.encode(),
                manifest.iso(at).encode(),
                manifest.iso(at + dt.timedelta(minutes=5)).encode(),
            ]
            folder = repo / table / bid
            (folder / "data").mkdir(parents=True)
            for name, data in files.items():
                for old, new in zip(tokens, values, strict=True):
                    data = data.replace(old, new)
                (folder / name).write_bytes(data)
                written += 1
    shutil.rmtree(repo / ".template")
    return written


def check(repo: Path) -> None:
    """A copied backup is what the writer would have made: its descriptor names its own id,
    and its manifest its own keys."""
    storage = open_storage(str(repo))
    ref = next(catalog.refs(storage))
    doc = catalog.load_descriptor(storage, ref)
    assert doc["backup"]["id"] == ref.backup_id, doc["backup"]
    assert doc["table"]["name"] == ref.table
    files = storage.get_bytes(ref.prefix + manifest.MANIFEST_FILES)
    assert orjson.loads(files)["dataFileS3Key"] == ref.prefix + manifest.data_key(0, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--backups", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: /tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-forget-", dir=args.dir) as tmp:
        repo = Path(tmp) / "repo"
        t0 = time.perf_counter()
        files = build(repo, tables=args.tables, backups=args.backups)
        check(repo)
        print(
            f"built: {args.tables * args.backups:,} backups, {files:,} files in "
            f"{time.perf_counter() - t0:.1f} s; peak RSS {rss_mb():.0f} MB"
        )
        storage = open_storage(str(repo))
        gc.collect()
        t0 = time.perf_counter()
        backups, windows = listing(storage)
        listed = time.perf_counter() - t0
        print(f"listing: {len(backups):,} backups in {listed:.2f} s; peak RSS {rss_mb():.0f} MB")
        t0 = time.perf_counter()
        decision = decide(backups, windows, POLICY, now=NOW)
        decided = time.perf_counter() - t0
        kept = sum(1 for e in decision.entries if e.action == "keep")
        print(f"decision: {kept:,} kept of {len(backups):,} in {decided:.2f} s")
        del backups, windows, decision
        marks: list[float] = []

        def emit(event: Event) -> None:
            if isinstance(event, Step):
                marks.append(time.perf_counter())

        t0 = time.perf_counter()
        report = forget(storage, POLICY, now=NOW, emit=emit)
        done = time.perf_counter()
        (step,) = marks
        removed = sum(1 for e in report.decision.entries if e.action == "remove")
        left = sum(len(catalog.backup_ids(storage, t)) for t in catalog.tables(storage))
        assert left == kept and report.removed_files == 5 * removed, (left, kept)
        print(
            f"forget: {done - t0:.1f} s in all: listing + decision {step - t0:.2f} s, removal of "
            f"{removed:,} backups ({report.removed_files:,} files) {done - step:.1f} s "
            f"({(done - step) / max(removed, 1) * 1e3:.2f} ms per backup); "
            f"{left:,} left; peak RSS {rss_mb():.0f} MB"
        )
        print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
