"""1. Client ceiling: the backup's CPU cost per MB of Scan data, against a server that costs
nothing (bench/canned_server.py), compared with the stock botocore client; a contract check that
both write the same items; and peak memory at 100 MB and at 10x that."""

from __future__ import annotations

import base64
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.config import Config

from hippolyte.adapters.dynamodb import encode_item

import items
from common import (
    MB,
    REGION,
    BackupRun,
    Report,
    backup_items,
    canned_server,
    hippolyte_backup,
    metric,
)
from rawscan import parallel_scan

NAME = "ceiling"
TITLE = "Client ceiling (canned Scan server)"
SEGMENTS = 4


@dataclass(frozen=True, kw_only=True)
class Sizes:
    small_mib: int  # "100 MB-equivalent"
    large_mib: int  # 10x
    stock_mib: int  # stock botocore path and the contract check (slow: ~3 MB/s)
    server_mib: int  # the server's own ceiling

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(small_mib=5, large_mib=50, stock_mib=3, server_mib=50)
        return cls(small_mib=100, large_mib=1000, stock_mib=24, server_mib=400)


@dataclass(frozen=True, kw_only=True)
class TableData:
    """A canned table's size both ways: as DynamoDB sizes it, and as raw item JSON."""

    name: str
    items: int
    ddb_mb: float
    json_mb: float

    @classmethod
    def of(cls, mib: int) -> TableData:
        count = _item_count(mib)
        return cls(name=f"canned-{mib}", items=count, ddb_mb=items.table_size(count) / MB,
                   json_mb=_json_size(count) / MB)


def _item_count(mib: int) -> int:
    sizes = items.template_sizes()
    return round(mib * (1 << 20) * len(sizes) / sum(sizes))  # as canned_server.Table


def _json_size(count: int) -> int:
    bodies = items.template_bodies()
    full, rest = divmod(count, items.TEMPLATES)
    key = len(items.key_json(0))
    return count * key + full * sum(map(len, bodies)) + sum(map(len, bodies[:rest]))


def run(*, quick: bool) -> Report:
    sizes = Sizes.pick(quick)
    small, large = TableData.of(sizes.small_mib), TableData.of(sizes.large_mib)
    stock = TableData.of(sizes.stock_mib)
    report = Report(name=NAME, title=TITLE, quick=quick)
    with canned_server() as server, tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        _server_ceiling(report, server.endpoint_url, TableData.of(sizes.server_mib))
        small_run = _backup(report, server.endpoint_url, Path(tmp) / "small", small, key="small")
        large_run = _backup(report, server.endpoint_url, Path(tmp) / "large", large, key="large")
        _marginal(report, small_run, large_run, small=small, large=large)
        _fixed_cost(report, server.endpoint_url, Path(tmp) / "empty")
        stock_items = _stock_path(report, server.endpoint_url, stock)
        _contract(report, server.endpoint_url, Path(tmp) / "contract", stock, stock_items)
    with canned_server(extras=False) as bare, tempfile.TemporaryDirectory() as tmp:
        _extras_unsupported(report, bare.endpoint_url, Path(tmp))
    return report


def _server_ceiling(report: Report, endpoint_url: str, table: TableData) -> None:
    totals = parallel_scan(endpoint_url, table=table.name, segments=SEGMENTS)
    report.raw["server"] = {**totals.__dict__, "table": table.__dict__}
    report.metrics += [
        metric("server_ddb_mb_s", f"canned server, raw client, {SEGMENTS} connections",
               table.ddb_mb / totals.wall_s, "MB/s (DynamoDB-sized)"),
        metric("server_body_mb_s", "same, HTTP body bytes", totals.body_bytes / MB / totals.wall_s,
               "MB/s (JSON)"),
    ]


def _backup(report: Report, endpoint_url: str, repo: Path, table: TableData, *,
            key: str) -> BackupRun:
    run = hippolyte_backup(table.name, repo=repo, endpoint_url=endpoint_url,
                           segments=SEGMENTS, workers=SEGMENTS, read_percent=1)
    if run.result["item_count"] != table.items:
        raise RuntimeError(f"{table.name}: backed up {run.result['item_count']} items "
                           f"of {table.items}")
    p = run.process
    report.raw[f"backup_{key}"] = {
        "table": table.__dict__, "wall_s": p.wall_s, "user_s": p.user_s, "sys_s": p.sys_s,
        "max_rss_mb": p.max_rss_mb, "result": run.result}
    size = f"{table.ddb_mb:,.0f} MB"
    # The CPU target is judged on the large run: on the small one, start-up (interpreter,
    # imports, DescribeTable: see the fixed cost below) weighs as much as ~50 MB of data.
    report.metrics += [
        metric(f"backup_{key}_ddb_mb_per_core", f"hippolyte backup, {size} table, CPU "
               "(whole process)", table.ddb_mb / p.cpu_s, "MB/s per core (DynamoDB-sized)",
               at_least=60 if key == "large" else None),
        metric(f"backup_{key}_json_mb_per_core", "same, per raw item JSON MB",
               table.json_mb / p.cpu_s, "MB/s per core (JSON)"),
        metric(f"backup_{key}_wall_mb_s", "same, wall clock (2 cores shared with the server)",
               table.ddb_mb / p.wall_s, "MB/s"),
        metric(f"backup_{key}_rss_mb", f"hippolyte backup peak RSS, {size} table",
               p.max_rss_mb, "MiB", at_most=200),
    ]
    return run


def _marginal(report: Report, small_run: BackupRun, large_run: BackupRun, *,
              small: TableData, large: TableData) -> None:
    """The cost of one more MB, start-up excluded."""
    extra_cpu = large_run.process.cpu_s - small_run.process.cpu_s
    if extra_cpu > 0:
        report.metrics.append(metric(
            "backup_marginal_ddb_mb_per_core", "hippolyte, marginal (large minus small run)",
            (large.ddb_mb - small.ddb_mb) / extra_cpu, "MB/s per core (DynamoDB-sized)"))


def _fixed_cost(report: Report, endpoint_url: str, repo: Path) -> None:
    """What every run pays whatever the size: interpreter, imports, describe, commit."""
    run = hippolyte_backup("canned-0", repo=repo, endpoint_url=endpoint_url,
                           segments=SEGMENTS, workers=SEGMENTS, read_percent=1)
    report.raw["backup_empty"] = {"wall_s": run.process.wall_s, "user_s": run.process.user_s,
                                  "sys_s": run.process.sys_s,
                                  "max_rss_mb": run.process.max_rss_mb}
    report.metrics.append(metric(
        "backup_fixed_cpu_s", "hippolyte, fixed CPU per run (backup of an empty table)",
        run.process.cpu_s, "s", digits=2))


def _stock_client(endpoint_url: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(
        "dynamodb", endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 3}))


def _stock_path(report: Report, endpoint_url: str, table: TableData) -> dict[int, list[bytes]]:
    """``client.scan()`` as shipped, then each item re-encoded to DynamoDB JSON: in this
    process, one thread, one segment after the other. Returns the encoded items per segment."""
    client = _stock_client(endpoint_url)
    client.describe_table(TableName=table.name)  # connection and model loading, not timed
    encoded: dict[int, list[bytes]] = {}
    began, cpu = time.monotonic(), time.process_time()
    for segment in range(SEGMENTS):
        kwargs: dict[str, Any] = {"TableName": table.name, "Segment": segment,
                                  "TotalSegments": SEGMENTS, "ReturnConsumedCapacity": "TOTAL"}
        out = encoded.setdefault(segment, [])
        while True:
            page = client.scan(**kwargs)
            out += [encode_item(item) for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    report.raw["stock"] = {"table": table.__dict__, "wall_s": wall, "cpu_s": cpu}
    stock_rate = table.ddb_mb / cpu
    report.metrics.append(metric(
        "stock_ddb_mb_per_core",
        f"stock botocore client.scan() + encode_item, {table.ddb_mb:,.0f} MB table",
        stock_rate, "MB/s per core (DynamoDB-sized)"))
    large = report.raw.get("backup_large")
    if large:
        ours = large["table"]["ddb_mb"] / (large["user_s"] + large["sys_s"])
        report.metrics.append(metric("speedup_vs_stock", "hippolyte (large run) / stock client",
                                     ours / stock_rate, "x"))
    return encoded


def _contract(report: Report, endpoint_url: str, repo: Path, table: TableData,
              stock: dict[int, list[bytes]]) -> None:
    """The backup's items equal the stock client's for the same table, value for value,
    and both equal what the server sent."""
    run = hippolyte_backup(table.name, repo=repo, endpoint_url=endpoint_url,
                           segments=SEGMENTS, workers=SEGMENTS, read_percent=1)
    ours = backup_items(run.folder)
    problems: list[str] = []
    compared = 0
    for segment in range(SEGMENTS):
        theirs = [orjson.loads(raw) for raw in stock.get(segment, [])]
        mine = ours.get(segment, [])
        if len(mine) != len(theirs):
            problems.append(f"segment {segment}: {len(mine)} items backed up, "
                            f"{len(theirs)} from the stock client")
        for a, b in zip(mine, theirs, strict=False):
            index = items.index_of_sk(_b64(b["sk"]["B"]))
            truth = orjson.loads(items.item_json(index))
            if a != b or b != truth:
                problems.append(f"segment {segment}: item {index} differs")
            compared += 1
    expected = set(range(table.items))
    seen = [items.index_of_sk(_b64(i["sk"]["B"])) for seg in ours.values() for i in seg]
    if sorted(seen) != sorted(expected):
        problems.append(f"keys: {len(set(seen))} distinct of {len(expected)} expected, "
                        f"{len(seen) - len(set(seen))} duplicates")
    report.raw["contract"] = {"compared": compared, "problems": problems[:20],
                              "table": table.__dict__}
    report.metrics.append(metric("contract_mismatches",
                                 f"contract: items differing from the stock client ({compared:,} "
                                 "compared)", len(problems), "", at_most=1, digits=0))


def _extras_unsupported(report: Report, endpoint_url: str, repo: Path) -> None:
    """A server without TTL/tags/PITR calls: the backup still commits, recording nulls."""
    run = hippolyte_backup("canned-1", repo=repo, endpoint_url=endpoint_url, segments=2,
                           workers=2, read_percent=1)
    table = orjson.loads((run.folder / "hippolyte.json").read_bytes()).get("table", {})
    nulls = [k for k in ("timeToLive", "tags", "pointInTimeRecovery") if table.get(k) is None]
    report.raw["extras_unsupported"] = {"null_fields": nulls}
    report.notes.append("With TTL/tags/PITR answered by UnknownOperationException the backup "
                        f"still commits; fields recorded as null: {', '.join(nulls) or 'none'}.")


def _b64(text: str) -> bytes:
    return base64.b64decode(text)
