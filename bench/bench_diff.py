"""8. diff (issue 11): a backup against the live table on dynalite, against the same server's
bare parallel Scan (the ceiling) in the same run; two backups against each other, CPU per MB;
peak RSS of both; and the naive approach (one GetItem per backup item, stock client) for scale.

Standalone: ``python bench/bench_diff.py [--quick] [--only live|backups|compressible]``
prints its metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.config import Config

from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.repo import writer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diff_data  # noqa: E402
import items  # noqa: E402
import report as show  # noqa: E402
from common import (  # noqa: E402
    HIPPOLYTE,
    MB,
    REGION,
    ProcessRun,
    Report,
    hippolyte_backup,
    isolate_aws,
    machine,
    metric,
    run_measured,
)
from rawscan import ScanTotals, parallel_scan  # noqa: E402

NAME = "diff"
TITLE = "Diff: a backup against the live table (dynalite) and against another backup"
TABLE = diff_data.TABLE
SEGMENTS = 4  # the live diff's --segments and --workers, and the ceiling's parallel scans
FILES = 4  # data files per synthetic backup (a 4-segment backup writes 4)
AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, kw_only=True)
class Sizes:
    live_items: int  # the dynalite table
    live_reps: int  # live diffs, each between two ceiling scans
    synth_items: int  # backup against backup (synthetic files, no server)
    synth_reps: int
    compressible_items: int  # backup against backup, items that gzip ~20x (0: skipped)
    naive_sample: int  # backup items looked up one GetItem at a time

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(live_items=10_000, live_reps=1, synth_items=20_000, synth_reps=1,
                       compressible_items=0, naive_sample=500)
        return cls(live_items=1_000_000, live_reps=2, synth_items=1_000_000, synth_reps=3,
                   compressible_items=1_000_000, naive_sample=10_000)


def run(*, quick: bool, parts: tuple[str, ...] = ("backups", "compressible", "live")) -> Report:
    isolate_aws()
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        if "backups" in parts:
            _backups(report, Path(tmp) / "synthetic", sizes.synth_items, sizes.synth_reps)
            _show(report)
        if "compressible" in parts and sizes.compressible_items:
            _compressible(report, Path(tmp) / "compressible", sizes.compressible_items)
            _show(report)
        if "live" in parts:
            _live(report, Path(tmp) / "live", sizes)
    return report


def _show(report: Report) -> None:
    """The figures so far (a long run that fails later still shows them)."""
    for m in report.metrics:
        print(f"   | {m.label}: {m.shown()} {m.target}", flush=True)


_last = [time.monotonic()]


def step(what: str) -> None:
    now = time.monotonic()
    print(f"   {what}: {now - _last[0]:.1f} s", flush=True)
    _last[0] = now


# -- running a diff ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class DiffRun:
    process: ProcessRun
    summary: dict[str, Any]
    phases: dict[str, float]  # seconds: each read from its start to its last progress line

    def check(self, expected: dict[str, int]) -> DiffRun:
        got = {k: self.summary[k] for k in expected}
        if got != expected:
            raise RuntimeError(f"diff found {got}, expected {expected}")
        return self


def hippolyte_diff(*args: str, work: Path, timeout: float = 3600) -> DiffRun:
    """``hippolyte diff ARGS --json --out FILE --tmp-dir DIR`` in a measured child process;
    exit 0 (identical) or 1 (different) is a success."""
    work.mkdir(parents=True, exist_ok=True)
    out, spill = work / "diff.jsonl", work / "spill"
    command = [*HIPPOLYTE, "diff", *args, "--json", "--out", str(out), "--tmp-dir", str(spill)]
    p = run_measured(command, cwd=work, timeout=timeout)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"diff exited {p.returncode}:\n{p.stderr_text()}")
    leftovers = list(spill.glob("*")) if spill.exists() else []
    if leftovers:
        raise RuntimeError(f"diff left {leftovers[0]} behind")
    with out.open("rb") as f:
        last = b""
        for line in f:
            last = line
    summary = orjson.loads(last)["summary"]
    out.unlink()
    return DiffRun(process=p, summary=summary, phases=_phases(p))


def _phases(p: ProcessRun) -> dict[str, float]:
    """From the stderr JSON lines: start-up (until the first read begins), each side's read
    (from its read_started line to its last progress line), and the rest: the comparison of
    what is left, the diff file and the exit."""
    began: dict[str, float] = {}
    ended: dict[str, float] = {}
    for at, line in p.stderr:
        if line.startswith(b"{"):
            doc = orjson.loads(line)
            if doc.get("event") == "read_started":
                began[doc["table"]] = at
            elif doc.get("event") == "progress":
                ended[doc["table"]] = at
    phases = {"start-up": min(began.values(), default=0.0)}
    for n, (name, at) in enumerate(sorted(began.items(), key=lambda pair: pair[1])):
        label = "scan" if name.startswith("live ") else f"read backup {n + 1}"
        phases[label] = ended.get(name, at) - at
    phases["compare + exit"] = p.wall_s - max(ended.values(), default=0.0)
    return phases


def _span(values: list[float], fmt: str = ",.1f") -> str:
    return (f"{min(values):{fmt}}-{max(values):{fmt}}" if len(values) > 1
            else f"{values[0]:{fmt}}")


def _median_of(values: list[float], unit: str = "") -> str:
    return (f"median of {len(values)}: {_span(values)}{unit}" if len(values) > 1
            else "1 run")


# -- backup against backup -----------------------------------------------------------------------

def write_segmented(repo: Path, lines: Iterator[bytes], *, files: int, at: dt.datetime,
                    table: str = TABLE) -> Path:
    """A committed hippolyte backup of ``lines`` (item JSON), each in the data file of its
    partition key's hash, in the order they come: as a parallel Scan deals items to segments,
    each segment's file in the table's order. Two such backups of one table list the items
    they share in the same order, as two backups taken with the same --segments do.
    (diff_data.write_backup deals lines round-robin: one deletion moves every later item to
    the next file, which no real backup does.)"""
    storage = open_storage(str(repo))
    ref = writer.allocate(storage, table=table, at=at)
    writers = [DataFileWriter(storage, prefix=ref.prefix, key=f"data/{i:05d}-00000.json.gz")
               for i in range(files)]
    batches: list[list[bytes]] = [[] for _ in range(files)]
    total = 0
    for line in lines:
        f = zlib.crc32(line[:line.index(b"}")]) % files  # '{"pk":{"S":"item-..."'
        batches[f].append(line)
        total += 1
        if len(batches[f]) == 1000:
            writers[f].write_items(batches[f])
            batches[f].clear()
    for w, batch in zip(writers, batches, strict=True):
        w.write_items(batch)
    info = TableInfo.from_description(diff_data._description(table, total))  # noqa: SLF001
    writer.commit(storage, ref=ref, info=info, extras={}, files=[w.commit() for w in writers],
                  start=at, end=at, run={"synthetic": True},
                  source={"synthetic": "bench/bench_diff.py"}, consumed=0.0)
    return repo / ref.table / ref.backup_id


def _synthetic_pair(repo: Path, count: int, *, segmented: bool = True
                    ) -> tuple[str, str, dict[str, int]]:
    changes = diff_data.Changes(count=count)
    write = write_segmented if segmented else diff_data.write_backup
    a = write(repo, (items.item_json(i) for i in range(count)), files=FILES, at=AT)
    b = write(repo, changes.after_items(), files=FILES, at=AT + dt.timedelta(hours=1))
    return f"{TABLE}/{a.name}", f"{TABLE}/{b.name}", changes.expected()


def _backups(report: Report, repo: Path, count: int, reps: int) -> None:
    ref_a, ref_b, expected = _synthetic_pair(repo, count)
    empty_a = diff_data.write_backup(repo, iter(()), files=1, at=AT, table="empty")
    empty_b = diff_data.write_backup(repo, iter(()), files=1, at=AT, table="empty")
    gz = sum(f.stat().st_size for f in (repo / TABLE).rglob("*.json.gz"))
    step(f"wrote two synthetic backups of {count:,} items ({gz / MB:,.0f} MB of gzip)")
    fixed = [hippolyte_diff(f"empty/{empty_a.name}", f"empty/{empty_b.name}", "--repo",
                            str(repo), work=repo.parent / "work").process for _ in range(2)]
    runs = [hippolyte_diff(ref_a, ref_b, "--repo", str(repo), work=repo.parent / "work")
            .check(expected) for _ in range(reps)]
    step(f"{reps} backup-vs-backup diffs")
    table_mb = items.table_size(count) / MB
    rates = [table_mb / r.process.cpu_s for r in runs]
    fixed_cpu = min(p.cpu_s for p in fixed)
    marginal = [table_mb / (r.process.cpu_s - fixed_cpu) for r in runs]
    walls = [r.process.wall_s for r in runs]
    report.raw["backups"] = {
        "items": count, "ddb_mb": table_mb, "gzip_mb": gz / MB, "expected": expected,
        "runs": [_raw(r) for r in runs], "fixed": [p.__dict__ | {"stdout": "", "stderr": ""}
                                                    for p in fixed]}
    other = repo.parent / "dealt-round-robin"
    rr_a, rr_b, _ = _synthetic_pair(other, count, segmented=False)
    rr = hippolyte_diff(rr_a, rr_b, "--repo", str(other), work=repo.parent / "work").check(expected)
    shutil.rmtree(other)
    step("1 backup-vs-backup diff of backups in another order (lines dealt round-robin)")
    report.raw["backups"]["other_order"] = _raw(rr)
    report.metrics += [
        metric("backups_mb_s_core", f"backup vs backup, {count:,} items, whole process, CPU "
               f"({_median_of(rates)})", statistics.median(rates), "MB/s per core",
               at_least=40),
        metric("backups_marginal_mb_s_core", f"same, start-up excluded ({fixed_cpu:.2f} s of "
               f"CPU for two empty backups) ({_median_of(marginal)})",
               statistics.median(marginal), "MB/s per core"),
        metric("backups_wall_s", f"same, wall ({_median_of(walls)})", statistics.median(walls),
               "s"),
        metric("backups_rss_mb", "same, peak RSS (highest)",
               max(r.process.max_rss_mb for r in runs), "MiB", at_most=200),
        metric("backups_other_order_mb_s_core", "same, the second backup's items in another "
               "order (lines dealt to files round-robin: a deletion moves every later item to "
               "the next file), CPU, 1 run", table_mb / rr.process.cpu_s, "MB/s per core"),
    ]
    report.notes.append(
        f"Backup vs backup: two synthetic hippolyte backups written with the backup's own "
        f"DataFileWriter ({FILES} files each, {gz / MB:,.0f} MB of gzip together), the second "
        f"with 1% of the items changed ({expected['changed']:,} updated, "
        f"{expected['deleted']:,} deleted, {expected['added']:,} added); MB are the first "
        f"backup's {table_mb:,.1f} MB as DynamoDB sizes them (both backups are read: "
        "twice that much data goes through). Phases of the median run: "
        + _phase_text(sorted(runs, key=lambda r: r.process.cpu_s)[len(runs) // 2]) + ".")


def _raw(r: DiffRun) -> dict[str, Any]:
    p = r.process
    return {"wall_s": p.wall_s, "user_s": p.user_s, "sys_s": p.sys_s,
            "max_rss_mb": p.max_rss_mb, "summary": r.summary, "phases": r.phases}


def _phase_text(r: DiffRun) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in r.phases.items())


def compressible_json(index: int) -> bytes:
    """~1 KB items that gzip ~20x: the key, a counter and a long run of one letter."""
    letter = b"abcdefghij"[index % 10:index % 10 + 1]
    return items.key_json(index) + b',"n":{"N":"%d"},"payload":{"S":"%s"}}' % (
        index, letter * 1000)


def _compressible(report: Report, repo: Path, count: int) -> None:
    """The partition count is estimated from the backup's gzip size: a backup that gzips far
    better than usual must still keep each partition, and so the peak RSS, small."""
    changes = diff_data.Changes(count=count)

    def after() -> Iterator[bytes]:
        for index in range(count):
            kind = changes.kind(index)
            if kind == "updated":
                yield compressible_json(index).replace(b'"payload":{"S":"', b'"payload":{"S":"z')
            elif kind != "deleted":
                yield compressible_json(index)
        for index, kind in changes.touched():
            if kind == "added":
                yield compressible_json(changes.added_index(index))

    a = write_segmented(repo, (compressible_json(i) for i in range(count)), files=FILES, at=AT)
    b = write_segmented(repo, after(), files=FILES, at=AT + dt.timedelta(hours=1))
    gz = sum(f.stat().st_size for f in a.rglob("*.json.gz"))
    raw = sum(len(compressible_json(i)) for i in range(count))
    step(f"wrote two compressible backups of {count:,} items ({raw / gz:.0f}x gzip ratio)")
    r = hippolyte_diff(f"{TABLE}/{a.name}", f"{TABLE}/{b.name}", "--repo", str(repo),
                       work=repo.parent / "work-compressible").check(changes.expected())
    step("compressible backup-vs-backup diff")
    report.raw["compressible"] = {"items": count, "gzip_mb": gz / MB, "json_mb": raw / MB,
                                  "run": _raw(r)}
    report.metrics += [
        metric("compressible_rss_mb", f"backup vs backup, {count:,} items that gzip "
               f"{raw / gz:.0f}x, peak RSS", r.process.max_rss_mb, "MiB", at_most=200),
        metric("compressible_wall_s", "same, wall", r.process.wall_s, "s"),
    ]


# -- against the live table ----------------------------------------------------------------------

def _live(report: Report, work: Path, sizes: Sizes) -> None:
    count = sizes.live_items
    cached = diff_data.dataset(count)
    copy = work / "db"
    shutil.copytree(cached, copy)
    step(f"copied the cached {count:,}-item dynalite table")
    changes = diff_data.Changes(count=count)
    expected = changes.expected()
    after_count = count - expected["deleted"] + expected["added"]
    table_mb = items.table_size(count) / MB
    with diff_data.start_dynalite(copy) as server:
        url = server.endpoint_url
        _ceiling(url, count)  # warm the server up (JIT, leveldb's cache)
        step("warm-up scan")
        backup = hippolyte_backup(TABLE, repo=work / "repo", endpoint_url=url, segments=SEGMENTS,
                                  workers=SEGMENTS, read_percent=1, timeout=3600)
        ref = f"{TABLE}/{backup.folder.name}"
        step(f"hippolyte backup {ref}")
        _mutate(url, changes)
        step(f"changed 1% of the items: {expected}")
        ceilings = [_ceiling(url, after_count)]
        runs: list[DiffRun] = []
        for _ in range(sizes.live_reps):
            runs.append(hippolyte_diff(
                ref, "--live", "--repo", str(work / "repo"), "--endpoint-url", url,
                "--region", REGION, "--segments", str(SEGMENTS), "--workers", str(SEGMENTS),
                "--read-percent", "1.0", work=work / "work").check(expected))
            ceilings.append(_ceiling(url, after_count))
        step(f"{sizes.live_reps} live diffs between {len(ceilings)} ceiling scans")
        naive = _naive(url, backup.folder, sizes.naive_sample)
        step(f"naive GetItem loop over {sizes.naive_sample:,} items")
    ceiling_walls = [c.wall_s for c in ceilings]
    diff_walls = [r.process.wall_s for r in runs]
    ratios = [min(ceiling_walls) / w for w in diff_walls]
    ceiling_wall, diff_wall = statistics.median(ceiling_walls), statistics.median(diff_walls)
    naive_rate = naive["items"] / naive["wall_s"]
    report.raw["live"] = {
        "items": count, "ddb_mb": table_mb, "expected": expected,
        "ceilings": [c.__dict__ for c in ceilings], "runs": [_raw(r) for r in runs],
        "backup": {"wall_s": backup.process.wall_s, "cpu_s": backup.process.cpu_s,
                   "max_rss_mb": backup.process.max_rss_mb}, "naive": naive}
    cpu = statistics.median(r.process.cpu_s for r in runs)
    report.metrics += [
        metric("live_ceiling_s", f"ceiling: raw parallel Scan of the changed table, {SEGMENTS} "
               f"segments ({_median_of(ceiling_walls, ' s')})", ceiling_wall,
               f"s ({after_count / ceiling_wall:,.0f} items/s)"),
        metric("live_diff_s", f"hippolyte diff --live, {SEGMENTS} segments, {SEGMENTS} workers, "
               f"--read-percent 1, process wall ({_median_of(diff_walls, ' s')})", diff_wall,
               f"s ({after_count / diff_wall:,.0f} items/s)"),
        metric("live_ratio", "ceiling wall / diff wall (medians; each run against the fastest "
               f"ceiling: {_span(ratios, '.2f')})", ceiling_wall / diff_wall, "",
               at_least=0.8, digits=2),
        metric("live_cpu_s", "hippolyte diff --live, CPU (user+sys)", cpu,
               f"s ({table_mb / cpu:,.1f} MB/s per core)", digits=1),
        metric("live_rss_mb", "hippolyte diff --live, peak RSS (highest)",
               max(r.process.max_rss_mb for r in runs), "MiB", at_most=200),
        metric("naive_items_s", f"naive: one GetItem per backup item, stock boto3 client, 1 "
               f"thread ({naive['items']:,} items)", naive_rate,
               f"items/s (all {count:,}: ~{count / naive_rate / 60:,.0f} min)", digits=0),
        metric("naive_ratio", "hippolyte diff --live / naive, wall for the whole table",
               count / naive_rate / diff_wall, "x"),
    ]
    report.notes.append(
        f"Live: {count:,} items of ~1 KB of every type ({table_mb:,.1f} MB as DynamoDB sizes "
        f"them) on dynalite (a copy of the cached table, 40,000 RCU: at --read-percent 1 the "
        f"budget is 40,000 RCU/s, ~320 MB/s, some 20x what dynalite serves, so pacing never "
        f"waits), backed up by hippolyte ({SEGMENTS} segments), then 1% changed through "
        f"BatchWriteItem ({expected['changed']:,} updated, {expected['deleted']:,} deleted, "
        f"{expected['added']:,} added). The ceiling is bench/rawscan.py: {SEGMENTS} segments "
        "at once, signed raw HTTP, bodies discarded. Order: warm-up scan, ceiling, then diff "
        "and ceiling alternately. Phases of the median diff: "
        + _phase_text(sorted(runs, key=lambda r: r.process.wall_s)[len(runs) // 2]) + ".")
    report.notes.append(
        f"Naive: the first {naive['items']:,} items of the backup's files, each parsed with "
        "json, its binary decoded, then client.get_item(Key=...) with the stock boto3 client "
        "(standard retries, parameter validation on) and the answer compared with == "
        f"({naive['differ']} of the sample differ); extrapolated to the whole table.")


def _ceiling(endpoint_url: str, count: int) -> ScanTotals:
    totals = parallel_scan(endpoint_url, table=TABLE, segments=SEGMENTS)
    if totals.items != count:
        raise RuntimeError(f"raw scan saw {totals.items} items of {count}")
    return totals


def _mutate(endpoint_url: str, changes: diff_data.Changes) -> None:
    """The changes as pre-built BatchWriteItem bodies (puts and deletes)."""
    from bench_restore import blast

    requests: list[bytes] = []
    for index, kind in changes.touched():
        if kind == "updated":
            requests.append(b'{"PutRequest":{"Item":' + diff_data.updated_json(index) + b"}}")
        elif kind == "deleted":
            requests.append(b'{"DeleteRequest":{"Key":' + items.key_json(index) + b"}}}")
        else:
            item = items.item_json(changes.added_index(index))
            requests.append(b'{"PutRequest":{"Item":' + item + b"}}")
    bodies = [b'{"RequestItems":{"%s":[%s]}}' % (TABLE.encode(), b",".join(requests[i:i + 25]))
              for i in range(0, len(requests), 25)]
    blast(endpoint_url, bodies, threads=4, sign=True)


def _naive(endpoint_url: str, folder: Path, sample: int) -> dict[str, Any]:
    """What a user would write: read the backup, GetItem each item, compare."""
    wanted: list[Any] = []
    for path in sorted((folder / "data").glob("*.json.gz")):
        with gzip.open(path, "rb") as lines:
            for line in lines:
                if len(wanted) == sample:
                    break
                wanted.append(orjson.loads(line)["Item"])
    client = boto3.session.Session(region_name=REGION).client(
        "dynamodb", endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 10}))
    client.describe_table(TableName=TABLE)  # connection and endpoint set up, not measured
    differ = 0
    began, cpu = time.monotonic(), time.process_time()
    for item in wanted:
        native = items.to_client(item)
        key = {"pk": native["pk"], "sk": native["sk"]}
        got = client.get_item(TableName=TABLE, Key=key).get("Item")
        if got != native:
            differ += 1
    return {"items": len(wanted), "wall_s": time.monotonic() - began,
            "cpu_s": time.process_time() - cpu, "differ": differ}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the raw figures")
    parser.add_argument("--only", action="append", choices=["backups", "compressible", "live"])
    args = parser.parse_args(argv)
    began = time.monotonic()
    result = run(quick=args.quick, parts=tuple(args.only or ("backups", "compressible", "live")))
    result.seconds = time.monotonic() - began
    print(show.table([result]))
    print(orjson.dumps(result.raw, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
          if args.verbose else "")
    print(show.markdown_block(result, machine=machine()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
