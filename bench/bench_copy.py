"""``hippolyte copy`` from a local repository to S3 against boto3's managed transfer of the same
files, on the same server in the same run (issue 14, Speed: at least 0.8 of its throughput,
with the copy's verification included).

    .venv/bin/python bench/bench_copy.py [--quick]        # or: bench/run.py --only copy

The source is a repository of committed backups whose data files are random bytes (the copy
reads them as bytes; their sizes, 2 to 20 MiB, put some above the 8 MiB part size, so both the
single PUT and the multipart path are measured), with real manifests and sha256/MD5 in each
descriptor. Each round runs, as child processes through bench/measure.py (wall, CPU, peak
RSS):

- the reference: a fresh Python process whose boto3 TransferManager (``upload_file``'s machinery,
  default TransferConfig: 10 requests at once, 8 MiB parts) uploads every file of the source;
- ``hippolyte copy --repo SRC --to s3://BUCKET/PREFIX --json`` (8 files at once, 8 parts), which
  also checks every file against its manifest, sends Content-MD5, compares each ETag and writes
  ``_SUCCESS`` last.

Both on moto and on ``rclone serve s3``; the best round of each is kept; objects are deleted
between rounds (moto keeps them in memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HIPPOLYTE, MB, Report, isolate_aws, metric, run_measured  # noqa: E402
from servers import Server, create_bucket, s3_client, start_moto, start_rclone_s3  # noqa: E402

NAME = "copy"
TITLE = "Copy: local repository -> S3 against boto3's managed transfer (upload_file)"
SIZES_MIB = (2, 6, 12, 20)  # one data file of each per backup


def make_source(root: Path, *, backups: int) -> int:
    """A repository of ``backups`` committed backups; its size in bytes."""
    from hippolyte.adapters.storage import open_storage
    from hippolyte.core.model import BackupRef, FileEntry, TableInfo
    from hippolyte.repo import datafile, manifest, writer

    storage = open_storage(str(root))
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    desc = {"TableName": "bench", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}
    for b in range(backups):
        at = t0 + dt.timedelta(days=b)
        ref = BackupRef(repo=storage.url, table="bench", backup_id=manifest.backup_id(at))
        files = []
        for n, mib in enumerate(SIZES_MIB):
            data = os.urandom(mib << 20)
            key = manifest.data_key(n, 0)
            storage.put_bytes(ref.prefix + key, data)
            sums = datafile.Checksums()
            sums.update(data)
            files.append(FileEntry(key=key, item_count=mib * 1000, raw_bytes=len(data),
                                   size=len(data), sha256=sums.sha256, md5=sums.md5))
        writer.commit(storage, ref=ref, info=TableInfo.from_description(desc), extras={},
                      files=files, start=at, end=at + dt.timedelta(minutes=5), run={},
                      consumed=0.0, source={})
    return sum((root / k).stat().st_size for k in storage.list(""))


def reference(source: str, endpoint: str, bucket: str, prefix: str) -> None:
    """Upload every file of ``source`` with boto3's TransferManager (what ``upload_file``
    runs), default configuration, all files submitted at once."""
    import boto3
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint,
                          config=Config(s3={"addressing_style": "path"}))
    root = Path(source)
    with create_transfer_manager(client, TransferConfig()) as manager:
        futures = [manager.upload(str(path), bucket, f"{prefix}/{path.relative_to(root)}")
                   for path in sorted(root.rglob("*")) if path.is_file()]
        for future in futures:
            future.result()


def _empty(server: Server, bucket: str) -> None:
    client = s3_client(server)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def _env(server: Server) -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key, "AWS_ENDPOINT_URL_S3": server.endpoint_url}


def _measure(report: Report, server: Server, source: Path, size: int, rounds: int) -> None:
    bucket = create_bucket(server)
    env = _env(server)
    best: dict[str, tuple[float, float, float]] = {}  # wall, cpu, rss
    for r in range(rounds):
        runs = {
            "boto3": [sys.executable, __file__, "--reference", str(source), server.endpoint_url,
                      bucket, f"ref-{r}"],
            "hippolyte": [*HIPPOLYTE, "copy", "--repo", str(source), "--to",
                          f"s3://{bucket}/ours-{r}", "--json"],
        }
        for who, command in runs.items():
            done = run_measured(command, cwd=source.parent, timeout=900, env=env).check()
            if who not in best or done.wall_s < best[who][0]:
                best[who] = (done.wall_s, done.cpu_s, done.max_rss_mb)
            _empty(server, bucket)
    (ref_s, ref_cpu, ref_rss), (ours_s, ours_cpu, ours_rss) = best["boto3"], best["hippolyte"]
    name = server.name.replace("-", "_")
    report.metrics += [
        metric(f"{name}_ratio", f"{server.name}: copy throughput / upload_file's",
               ref_s / ours_s, "x", at_least=0.8, digits=2),
        metric(f"{name}_copy_mbps", f"{server.name}: hippolyte copy", size / MB / ours_s, "MB/s"),
        metric(f"{name}_ref_mbps", f"{server.name}: boto3 TransferManager", size / MB / ref_s,
               "MB/s"),
        metric(f"{name}_copy_rss", f"{server.name}: copy peak RSS", ours_rss, "MiB", digits=0),
        metric(f"{name}_ref_rss", f"{server.name}: reference peak RSS", ref_rss, "MiB", digits=0),
    ]
    report.raw[name] = {"bytes": size, "copy_s": ours_s, "copy_cpu_s": ours_cpu,
                        "ref_s": ref_s, "ref_cpu_s": ref_cpu, "copy_rss_mib": ours_rss,
                        "ref_rss_mib": ref_rss}


def run(*, quick: bool) -> Report:
    isolate_aws()
    report = Report(name=NAME, title=TITLE, quick=quick)
    began = time.monotonic()
    backups, rounds = (3, 1) if quick else (12, 2)
    work = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    try:
        source = work / "repo"
        size = make_source(source, backups=backups)
        report.notes.append(f"{backups} backups, {size / MB:,.0f} MB in "
                            f"{backups * (len(SIZES_MIB) + 4)} files; best of {rounds} rounds")
        with start_moto() as moto:
            _measure(report, moto, source, size, rounds)
        with start_rclone_s3(work / "rclone") as rclone:
            _measure(report, rclone, source, size, rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.monotonic() - began
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reference", nargs=4, metavar=("SOURCE", "ENDPOINT", "BUCKET", "PREFIX"))
    args = parser.parse_args()
    if args.reference:
        reference(*args.reference)
        return
    report = run(quick=args.quick)
    for m in report.metrics:
        print(f"{m.label:<55} {m.shown():>12} {m.target}")
    for note in report.notes:
        print(note)


if __name__ == "__main__":
    main()
