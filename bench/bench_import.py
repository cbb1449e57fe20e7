"""13. import (issue 15): `restore --engine import` of a 100 MB backup on moto.

A committed backup of 100,000 items of ~1 KB (100 MB of item data, in our layout: gzip'd
``{"Item": ...}`` lines, which is DynamoDB's export layout) is written into moto's S3; then
``hippolyte restore REF --table NEW --engine import --json`` runs as a measured child against
moto's DynamoDB (whose ImportTable reads its own S3). Reported: the wall time, the plan's cost
estimate for both engines (what the CLI printed), and the proof's CPU as a share of the whole:
the check pass (which also digests the backup) and the new table's digest, each timed again
in-process on the same data (moto's Scan is slow: most of the proof's wall time is moto's).

Standalone: ``python bench/bench_import.py [--quick]`` prints its metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report as show  # noqa: E402
import servers as testing  # noqa: E402
from common import (  # noqa: E402
    HIPPOLYTE,
    MB,
    REGION,
    Report,
    isolate_aws,
    machine,
    metric,
    run_measured,
)

NAME = "import"
TITLE = "ImportTable restore of a 100 MB backup on moto: wall, cost estimate, proof CPU share"
ITEM_BYTES = 1000
FILE_ITEMS = 20_000


def _item(i: int) -> bytes:
    body = (uuid.UUID(int=i).hex * 40)[: ITEM_BYTES - 60]
    return orjson.dumps({"pk": {"S": f"item-{i:08d}"}, "n": {"N": str(i)}, "body": {"S": body}})


def write_backup(repo: str, table: str, items: int) -> str:
    from hippolyte.adapters.storage import open_storage
    from hippolyte.core.model import BackupRef, TableInfo
    from hippolyte.engines.segment import DataFileWriter
    from hippolyte.repo import manifest, writer

    storage = open_storage(repo)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ref = BackupRef(repo=storage.url, table=table, backup_id=manifest.backup_id(start))
    files = []
    for n, first in enumerate(range(0, items, FILE_ITEMS)):
        out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(n, 0))
        out.write_items([_item(i) for i in range(first, min(items, first + FILE_ITEMS))])
        files.append(out.commit())
    desc = {
        "TableName": table,
        "TableArn": f"arn:aws:dynamodb:{REGION}:123456789012:table/{table}",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }
    writer.commit(storage, ref=ref, info=TableInfo.from_description(desc), extras={},
                  files=files, start=start, end=start + dt.timedelta(minutes=5), run={},
                  consumed=0.0, source={})
    return f"{table}/{ref.backup_id}"


def _in_process_proof(repo: str, ref: str, table: str) -> tuple[float, float]:
    """CPU seconds of the check pass (with the backup's digest) and of the table's digest."""
    from hippolyte.adapters import aws
    from hippolyte.adapters.storage import open_storage
    from hippolyte.core.model import TableInfo
    from hippolyte.formats.base import KeySchema
    from hippolyte.formats.open import open_source
    from hippolyte.ops.restore import table_digest
    from hippolyte.ops.restore_check import check_files
    from hippolyte.repo import manifest

    bref = manifest.parse_ref(ref, repo=repo)
    source = open_source(open_storage(bref.repo), bref.prefix, location=ref)
    assert source.description is not None
    schema = KeySchema.from_description(source.description)
    began = time.process_time()
    check_files(source, source.files, schema=schema, workers=1)
    check_cpu = time.process_time() - began
    conn = aws.Connection(region=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    info = TableInfo.from_description(
        aws.client(conn, "dynamodb").describe_table(TableName=table)["Table"])
    began = time.process_time()
    table_digest(conn, table=table, info=info, workers=4, stop=threading.Event(),
                 on_demand_units=4000.0)
    return check_cpu, time.process_time() - began


def run(*, quick: bool) -> Report:
    isolate_aws()
    report = Report(name=NAME, title=TITLE, quick=quick)
    began = time.monotonic()
    items = 5_000 if quick else 100_000
    with testing.start_moto() as moto:
        env = {**os.environ, **testing.aws_env(moto, services=["s3", "dynamodb"]),
               "AWS_ENDPOINT_URL_DYNAMODB": moto.endpoint_url}
        os.environ.update(env)
        bucket = testing.create_bucket(moto)
        repo, table = f"s3://{bucket}/nightly", f"imported-{uuid.uuid4().hex[:6]}"
        ref = write_backup(repo, table, items)
        target = f"{table}-restored"
        with tempfile.TemporaryDirectory() as tmp:
            proc = run_measured([*HIPPOLYTE, "restore", ref, "--repo", repo, "--table", target,
                                 "--engine", "import", "--region", REGION, "--json"],
                                cwd=Path(tmp), timeout=3600, env=env).check()
        doc = orjson.loads(proc.stdout.decode().strip().splitlines()[-1])
        assert doc["proof"]["ok"] and doc["proof"]["table"]["items"] == items, doc
        check_cpu, digest_cpu = _in_process_proof(repo, ref, target)
    data_mb = items * ITEM_BYTES / MB
    cost = doc["estimatedCost"]
    proof_share = (check_cpu + digest_cpu) / proc.cpu_s if proc.cpu_s else 0.0
    report.metrics += [
        metric("wall_s", f"restore --engine import, {data_mb:,.0f} MB ({items:,} items)",
               proc.wall_s, "s"),
        metric("cpu_s", "its CPU (user + sys)", proc.cpu_s, "s"),
        metric("rss_mb", "its peak RSS", proc.max_rss_mb, "MiB", digits=0),
        metric("import_usd", "estimated ImportTable cost", cost["importUsd"], "USD", digits=4),
        metric("load_usd", "estimated load cost (on-demand writes)", cost["loadUsd"], "USD",
               digits=4),
        metric("proof_share", "proof's CPU (check + backup digest + table digest) / whole",
               proof_share, "", digits=2),
    ]
    report.notes.append(
        f"check pass (with the backup's digest) {check_cpu:.2f} s CPU, table digest "
        f"{digest_cpu:.2f} s CPU, in-process on the same data; write units a load would use: "
        f"{cost['loadWriteUnits']:,}; engine reason: {doc['reason']}")
    report.raw = {"restore": {"wall_s": proc.wall_s, "cpu_s": proc.cpu_s,
                              "max_rss_mb": proc.max_rss_mb}, "plan": doc["estimatedCost"],
                  "check_cpu_s": check_cpu, "digest_cpu_s": digest_cpu}
    report.seconds = time.monotonic() - began
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rep = run(quick=args.quick)
    print(show.table([rep]))
    for note in rep.notes:
        print(note)
    print(orjson.dumps(machine()).decode())


if __name__ == "__main__":
    main()
