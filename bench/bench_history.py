"""11. history (issue 13): a table as of any instant, and the capture that feeds it.

- Restore at T: a 100,000-item dynalite table backed up by hippolyte, then 100,000 changes
  (updates with new bodies, deletes, inserts) written as a chain of change sets after the
  backup's start; ``hippolyte restore TABLE --at T`` (T after the last change) against a plain
  ``hippolyte restore TABLE/BACKUP_ID`` of the same full backup, on the same server, in the same
  run (target: at-T / plain < 1.5). ``ops.pitr.materialize`` is also timed in-process.
- Capture on DynamoDB Local: ~1 KB puts at fixed rates while ``hippolyte capture
  --flush-seconds 5`` runs as a measured child; lag = commit of the change set holding a write
  (its _SUCCESS file's mtime) less the write's acknowledgement (the bench's own clock: DynamoDB
  Local stamps stream records to the minute); CPU of capture per 1,000 records.

Standalone: ``python bench/bench_history.py [--quick] [--only restore|capture] [--profile] [-v]``
prints its metrics (``--profile``: cProfile of the in-process materialize).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import datetime as dt
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters.storage import open_storage
from hippolyte.ops import pitr
from hippolyte.repo import changes as change_sets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import history_data  # noqa: E402

import diff_data  # noqa: E402
import items  # noqa: E402
import load  # noqa: E402
import report as show  # noqa: E402
import servers as testing  # noqa: E402
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

NAME = "history"
TITLE = "Any point in time: restore --at T against a plain restore; capture throughput"
TABLE = diff_data.TABLE
WORKERS = 4  # the backup's segments and workers, the restores' workers
RESTORE_WCU = 40_000  # the restored tables' --write-capacity: pacing must not be what limits
STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


@dataclass(frozen=True, kw_only=True)
class Sizes:
    items: int  # the dynalite table
    changes: int  # in the chain
    sets: int  # change sets holding them
    reps: int  # restores of each kind
    rates: tuple[int, ...]  # capture: puts per second
    seconds: float  # capture: writing at each rate
    flush: float  # capture's --flush-seconds
    writers: int  # capture: writer threads
    idle: bool  # capture: a run without writes first (its CPU: what polling costs)

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(items=5_000, changes=5_000, sets=10, reps=1, rates=(100,), seconds=8,
                       flush=5, writers=8, idle=False)
        return cls(items=100_000, changes=100_000, sets=100, reps=2, rates=(100, 200, 400, 800),
                   seconds=30, flush=5, writers=16, idle=True)


def run(*, quick: bool, parts: tuple[str, ...] = ("restore", "capture"),
        profile: bool = False) -> Report:
    isolate_aws()
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        if "restore" in parts:
            _restore_at(report, Path(tmp) / "restore", sizes, profile=profile)
            _show(report)
        if "capture" in parts:
            _capture(report, Path(tmp) / "capture", sizes)
    return report


def _show(report: Report) -> None:
    for m in report.metrics:
        print(f"   | {m.label}: {m.shown()} {m.target}", flush=True)


_last = [time.monotonic()]


def step(what: str) -> None:
    now = time.monotonic()
    print(f"   {what}: {now - _last[0]:.1f} s", flush=True)
    _last[0] = now


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def _span(values: list[float], fmt: str = ",.1f") -> str:
    return (f"{min(values):{fmt}}-{max(values):{fmt}}" if len(values) > 1
            else f"{values[0]:{fmt}}")


# -- restore at T ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Restored:
    kind: str  # "plain" or "at"
    process: ProcessRun
    doc: dict[str, Any]
    checked_s: float  # the "checking N files" note: start-up (and, at T, the materialize) done
    load_start_s: float
    load_end_s: float

    def phases(self) -> dict[str, float]:
        return {"start-up" + (" + materialize" if self.kind == "at" else ""): self.checked_s,
                "check + create table": self.load_start_s - self.checked_s,
                "load": self.load_end_s - self.load_start_s,
                "proof + settings + exit": self.process.wall_s - self.load_end_s}

    def phase_text(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.phases().items())


def hippolyte_restore(ref: str, *extra: str, table: str, endpoint_url: str, repo: Path,
                      work: Path) -> tuple[ProcessRun, dict[str, Any], float, float, float]:
    """``hippolyte restore REF [EXTRA] --table TABLE --repo R ... --json`` in a measured child
    from an empty directory; a watcher notes when the checkpoint says the load is over."""
    state_dir, cwd = work / "state", work / "cwd"
    cwd.mkdir(parents=True)
    command = [*HIPPOLYTE, "restore", ref, *extra, "--table", table, "--repo", str(repo),
               "--endpoint-url", endpoint_url, "--region", REGION, "--write-capacity",
               str(RESTORE_WCU), "--workers", str(WORKERS), "--state-dir", str(state_dir),
               "--json"]
    loaded: list[float] = []
    finished = threading.Event()
    began = time.monotonic()

    def watch() -> None:
        while not finished.wait(0.01):
            for path in state_dir.glob("restore-*.json"):
                try:
                    phase = orjson.loads(path.read_bytes()).get("phase")
                except (OSError, orjson.JSONDecodeError):
                    continue
                if phase in ("loaded", "done"):
                    loaded.append(time.monotonic() - began)
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        p = run_measured(command, cwd=cwd, timeout=3600).check()
    finally:
        finished.set()
        watcher.join()
    doc = orjson.loads(p.stdout)
    events = []
    for at, line in p.stderr:
        if line.startswith(b"{"):
            try:
                events.append((at, orjson.loads(line)))
            except orjson.JSONDecodeError:
                continue
    checked = next((at for at, e in events if e.get("event") == "note"
                    and str(e.get("text", "")).startswith("checking")), 0.0)
    start = next((at for at, e in events if e.get("event") == "load_started"), checked)
    return p, doc, checked, start, loaded[0] if loaded else p.wall_s


def _restore_at(report: Report, work: Path, sizes: Sizes, *, profile: bool) -> None:
    count = sizes.items
    cached = diff_data.dataset(count)
    copy = work / "db"
    shutil.copytree(cached, copy, ignore=shutil.ignore_patterns("LOCK"))
    repo = work / "repo"
    step(f"copied the cached {count:,}-item dynalite table")
    with diff_data.start_dynalite(copy) as server:
        url = server.endpoint_url
        backup = hippolyte_backup(TABLE, repo=repo, endpoint_url=url, segments=WORKERS,
                                  workers=WORKERS, read_percent=1, timeout=3600)
        if backup.result["item_count"] != count:
            raise RuntimeError(f"backed up {backup.result['item_count']} items of {count}")
        ref = f"{TABLE}/{backup.folder.name}"
        step(f"hippolyte backup {ref}")
        storage = open_storage(str(repo))
        (full,), _ = pitr.history(storage, TABLE)
        # stamps spread from the backup's start to a second ago: T is in the past
        while change_sets.micros(_now()) - full.start < 3_000_000:
            time.sleep(0.5)
        chain = history_data.write_chain(
            storage, table=TABLE, count=count, changes=sizes.changes, sets=sizes.sets,
            start=full.start, stamps_until=change_sets.micros(_now()) - 1_000_000)
        step(f"wrote {chain.changes:,} changes in {chain.sets} change sets ({chain.kinds}; "
             f"{chain.raw_bytes / MB:,.0f} MB of JSON, {chain.gzip_bytes / MB:,.0f} MB gzip); "
             f"T = {chain.at_text}, {chain.expected_items:,} items then")
        materialize = _materialize(storage, chain, profile=profile)
        step(f"pitr.materialize in-process: {materialize['wall_s']:.1f} s")
        order = ["plain", "at", "at", "plain"] * (sizes.reps // 2) + ["plain", "at"] * (
            sizes.reps % 2)
        runs: list[Restored] = []
        for i, kind in enumerate(order):
            extra = ("--at", chain.at_text) if kind == "at" else ()
            p, doc, checked, start, end = hippolyte_restore(
                TABLE if kind == "at" else ref, *extra, table=f"{kind}-{i}", endpoint_url=url,
                repo=repo, work=work / f"run-{i}")
            _check_restore(kind, doc, count=count, chain=chain)
            runs.append(Restored(kind=kind, process=p, doc=doc, checked_s=checked,
                                 load_start_s=start, load_end_s=end))
            step(f"restore {'--at T' if kind == 'at' else 'plain'} into {kind}-{i}: "
                 f"{p.wall_s:.1f} s ({runs[-1].phase_text()})")
    _restore_metrics(report, runs, chain, materialize, backup.process, count)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_restore(kind: str, doc: dict[str, Any], *, count: int,
                   chain: history_data.Chain) -> None:
    proof = doc["proof"]
    want = chain.expected_items if kind == "at" else count
    if not proof["ok"] or doc["itemsWritten"] != want or proof["table"]["items"] != want:
        raise RuntimeError(f"restore {kind}: expected {want} items, proven: {doc}")
    if kind == "at" and proof["backup"]["digest"] != chain.expected_digest:
        raise RuntimeError(f"restore --at: the state's digest {proof['backup']['digest']} is "
                           f"not the expected {chain.expected_digest}")


def _materialize(storage: Any, chain: history_data.Chain, *, profile: bool) -> dict[str, Any]:
    """``pitr.materialize`` once, in this process, timed; its items counted. With ``profile``,
    a second run under cProfile (printed)."""
    point = pitr.PointInTime(table=TABLE, at=chain.at)
    began, cpu = time.monotonic(), time.process_time()
    source = pitr.materialize(storage, point)
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    got = sum(f.item_count or 0 for f in source.files)
    del source
    if got != chain.expected_items:
        raise RuntimeError(f"materialize: {got} items, expected {chain.expected_items}")
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        again = pitr.materialize(storage, point)
        prof.disable()
        del again
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue(), flush=True)
    return {"wall_s": wall, "cpu_s": cpu, "items": got}


def _restore_metrics(report: Report, runs: list[Restored], chain: history_data.Chain,
                     materialize: dict[str, Any], backup: ProcessRun, count: int) -> None:
    at = [r for r in runs if r.kind == "at"]
    plain = [r for r in runs if r.kind == "plain"]
    at_walls, plain_walls = [r.process.wall_s for r in at], [r.process.wall_s for r in plain]
    at_wall, plain_wall = statistics.median(at_walls), statistics.median(plain_walls)
    n = f"median of {len(at)}: " if len(at) > 1 else ""
    report.raw["restore"] = {
        "items": count, "chain": {k: v for k, v in chain.__dict__.items() if k != "at"}
        | {"at": chain.at_text}, "materialize": materialize,
        "backup": {"wall_s": backup.wall_s, "cpu_s": backup.cpu_s},
        "runs": [{"kind": r.kind, "wall_s": r.process.wall_s, "user_s": r.process.user_s,
                  "sys_s": r.process.sys_s, "max_rss_mb": r.process.max_rss_mb,
                  "phases": r.phases(), "doc": r.doc} for r in runs]}
    mid_at = sorted(at, key=lambda r: r.process.wall_s)[len(at) // 2]
    mid_plain = sorted(plain, key=lambda r: r.process.wall_s)[len(plain) // 2]
    report.metrics += [
        metric("at_wall_s", f"restore TABLE --at T, {count:,} items + {chain.changes:,} changes "
               f"-> {chain.expected_items:,} items, process wall ({n}{_span(at_walls)} s)",
               at_wall, "s"),
        metric("plain_wall_s", f"restore of the full backup ({count:,} items), process wall "
               f"({n}{_span(plain_walls)} s)", plain_wall, "s"),
        metric("at_ratio", "at-T wall / plain wall (medians; the at-T restore writes "
               f"{chain.expected_items / count:.2f}x the items)", at_wall / plain_wall, "x",
               at_most=1.5, digits=2),
        metric("materialize_s", f"pitr.materialize in-process ({chain.sets} change sets, "
               f"{chain.raw_bytes / MB:,.0f} MB of change JSON), wall", materialize["wall_s"],
               f"s ({materialize['cpu_s']:.1f} s CPU)"),
        metric("at_load_s", "restore --at T, load phase (median run)",
               mid_at.load_end_s - mid_at.load_start_s, "s"),
        metric("plain_load_s", "plain restore, load phase (median run)",
               mid_plain.load_end_s - mid_plain.load_start_s, "s"),
        metric("at_cpu_s", "restore --at T, CPU (user+sys), median",
               statistics.median(r.process.cpu_s for r in at), "s"),
        metric("plain_cpu_s", "plain restore, CPU (user+sys), median",
               statistics.median(r.process.cpu_s for r in plain), "s"),
        metric("at_rss_mb", "restore --at T, peak RSS (highest)",
               max(r.process.max_rss_mb for r in at), "MiB"),
        metric("plain_rss_mb", "plain restore, peak RSS (highest)",
               max(r.process.max_rss_mb for r in plain), "MiB"),
    ]
    report.notes.append(
        f"Restore at T: bench_dynalite's cached {count:,}-item table (a copy) on dynalite, "
        f"backed up by hippolyte ({WORKERS} segments, {backup.wall_s:.0f} s); then "
        f"{chain.changes:,} changes ({chain.kinds['update']:,} updates of live keys with new "
        f"bodies, {chain.kinds['delete']:,} deletes, {chain.kinds['insert']:,} inserts; old "
        f"and new images, as capture writes NEW_AND_OLD_IMAGES) stamped evenly from the "
        f"backup's start to a second before they were written, in {chain.sets} change sets "
        f"written with repo.changes.ChangeSetWriter ({chain.write_s:.0f} s); T = 1 ms after the "
        f"last change. Each restore is the CLI in a measured child, --workers {WORKERS}, "
        f"--write-capacity {RESTORE_WCU:,}, into a new table of the same dynalite; order "
        f"{', '.join(r.kind for r in runs)}. Checked: proof ok, items written = the expected "
        "state's count, and (at T) the proof's digest of the computed state = the digest of "
        "the state this benchmark tracked itself. Phases of the median runs: at T: "
        f"{mid_at.phase_text()}; plain: {mid_plain.phase_text()}.")


# -- capture ---------------------------------------------------------------------------------------

def _create_stream_table(endpoint_url: str, table: str) -> None:
    ddb = load.client(endpoint_url)
    ddb.create_table(TableName=table, KeySchema=items.KEY_SCHEMA,
                     AttributeDefinitions=items.ATTRIBUTE_DEFINITIONS,
                     BillingMode="PAY_PER_REQUEST", StreamSpecification=STREAM)
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.2})


def _wait_for(root: Path, table: str, *, records: int, sets: int, timeout: float,
              capture: history_data.Background) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = history_data.committed(root, table) if (root / table / "@changes").exists() else []
        if sum(cs.count for _, cs in found) >= records and len(found) >= sets:
            return
        if not capture.alive():
            raise RuntimeError(f"capture ended early:\n{capture.stop().stderr_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"capture committed {sum(cs.count for _, cs in found)} of "
                               f"{records} records in {timeout:.0f} s")
        time.sleep(0.1)


@dataclass(frozen=True, kw_only=True)
class CaptureRun:
    rate: float  # asked
    achieved: float  # writes / time from the start to the last answer
    writes: int
    records: int  # capture's own count
    sets: int
    lags: list[float]  # per write: its set's commit less its acknowledgement
    process: ProcessRun
    wall_s: float  # of the measured window: capture's start to its stop

    def lag(self, p: float) -> float:
        return _pct(self.lags, p) if self.lags else 0.0

    def sustained(self, limit: float) -> bool:
        return self.achieved >= 0.95 * self.rate and (not self.lags or max(self.lags) < limit)


def _capture_one(url: str, work: Path, sizes: Sizes, *, rate: int, first: int) -> CaptureRun:
    table = f"cap-{rate}"
    _create_stream_table(url, table)
    root, cwd = work / table, work / f"{table}-cwd"
    cwd.mkdir(parents=True)
    command = [*HIPPOLYTE, "capture", table, "--repo", str(root), "--endpoint-url", url,
               "--region", REGION, "--flush-seconds", str(sizes.flush), "--json"]
    capture = history_data.Background(command, cwd=cwd, env=dict(os.environ))
    try:
        # capture has started, read its stream to the end and committed once
        _wait_for(root, table, records=0, sets=1, timeout=60 + sizes.flush, capture=capture)
        if rate:
            written, wall = history_data.write_at_rate(url, table, rate=rate, seconds=sizes.seconds,
                                          threads=sizes.writers, first=first)
            _wait_for(root, table, records=len(written), sets=1, timeout=sizes.flush + 120,
                      capture=capture)
        else:
            time.sleep(sizes.seconds)
            written, wall = [], sizes.seconds
    finally:
        p = capture.stop()
    if p.returncode != 0:
        raise RuntimeError(f"capture exited {p.returncode}:\n{p.stderr_text()}")
    (result,) = orjson.loads(p.stdout)["results"]
    commits = {}
    storage = open_storage(str(root))
    sets = history_data.committed(root, table)
    for committed, cs in sets:
        for change in change_sets.read_changes(storage, cs):
            sk = orjson.loads(change.keys)["sk"]["B"]
            commits.setdefault(items.index_of_sk(base64.b64decode(sk)), committed)
    missing = [w.index for w in written if w.index not in commits]
    if missing:
        raise RuntimeError(f"rate {rate}: {len(missing)} writes not in any change set "
                           f"(first: {missing[0]})")
    lags = [commits[w.index] - w.acked for w in written]
    return CaptureRun(rate=rate, achieved=len(written) / wall if rate else 0.0,
                      writes=len(written), records=int(result["records"]), sets=len(sets),
                      lags=lags, process=p, wall_s=p.wall_s)


def _capture(report: Report, work: Path, sizes: Sizes) -> None:
    """Each rate on a fresh DynamoDB Local: in one server, puts slow down once other tables'
    streams hold thousands of records (75-160 puts/s instead of 800 here), which would
    measure the server, not capture."""
    limit = sizes.flush + 5
    runs: list[CaptureRun] = []
    first = 0
    for rate in ((0,) if sizes.idle else ()) + sizes.rates:
        with testing.start_dynamodb_local() as server:
            _warm_up(server.endpoint_url)
            run = _capture_one(server.endpoint_url, work, sizes, rate=rate, first=first)
        first += run.writes
        runs.append(run)
        step(f"capture at {rate}/s: achieved {run.achieved:,.0f}/s, {run.records:,} "
             f"records in {run.sets} sets, lag p50 {run.lag(50):.1f} s, p99 "
             f"{run.lag(99):.1f} s, max {run.lag(100):.1f} s; CPU {run.process.cpu_s:.1f} s")
    _capture_metrics(report, runs, sizes, limit)


def _warm_up(url: str) -> None:
    """Puts into a table without a stream for a few seconds: the JVM's JIT (the first
    seconds at 800 puts/s run at half that)."""
    load.create_table(url, "warm-up", read_capacity=1000)
    history_data.write_at_rate(url, "warm-up", rate=800, seconds=3, threads=16,
                               first=10_000_000)


def _capture_metrics(report: Report, runs: list[CaptureRun], sizes: Sizes,
                     limit: float) -> None:
    idle = next((r for r in runs if r.rate == 0), None)
    busy = [r for r in runs if r.rate]
    idle_cpu_s = idle.process.cpu_s / idle.wall_s if idle else None
    best = 0.0
    for r in busy:  # the highest rate that, with every lower one, held
        if not r.sustained(limit):
            break
        best = r.rate
    report.raw["capture"] = {
        "flush_s": sizes.flush, "seconds": sizes.seconds, "writers": sizes.writers,
        "runs": [{"rate": r.rate, "achieved": r.achieved, "writes": r.writes,
                  "records": r.records, "sets": r.sets, "wall_s": r.wall_s,
                  "cpu_s": r.process.cpu_s, "user_s": r.process.user_s,
                  "sys_s": r.process.sys_s, "max_rss_mb": r.process.max_rss_mb,
                  "lag": {str(p): r.lag(p) for p in (50, 90, 99, 100)}} for r in runs]}
    report.metrics.append(metric(
        "capture_max_rate", f"capture: highest put rate (of {', '.join(map(str, sizes.rates))}"
        f"/s, {sizes.seconds:.0f} s each) whose every write was committed within "
        f"--flush-seconds {sizes.flush:g} + 5 s", best, "puts/s", digits=0))
    for r in busy:
        per_k = r.process.cpu_s / r.records * 1000
        marginal = ""
        if idle_cpu_s is not None:
            extra = (r.process.cpu_s - idle_cpu_s * r.wall_s) / r.records * 1000
            marginal = f", {extra:.2f} s above idle polling"
        report.metrics += [
            metric(f"capture_{r.rate:.0f}_lag_max_s", f"capture at {r.rate:.0f} puts/s (achieved "
                   f"{r.achieved:,.0f}/s): lag p50 {r.lag(50):.1f} s, p90 {r.lag(90):.1f} s, "
                   f"p99 {r.lag(99):.1f} s; max", r.lag(100), "s", at_most=limit),
            metric(f"capture_{r.rate:.0f}_cpu_per_1000", f"capture at {r.rate:.0f} puts/s: CPU "
                   f"per 1,000 records ({r.records:,} records, {r.process.cpu_s:.1f} s CPU in "
                   f"{r.wall_s:.0f} s{marginal})", per_k, "s", digits=2),
        ]
    if idle is not None:
        report.metrics.append(metric(
            "capture_idle_cpu", f"capture with no writes: CPU per second of running "
            f"({idle.process.cpu_s:.1f} s in {idle.wall_s:.0f} s, start-up included)",
            idle_cpu_s or 0.0, "s/s", digits=3))
    report.notes.append(
        f"Capture: a fresh DynamoDB Local (in memory) per rate, warmed up by 3 s of puts "
        f"at 800/s into a table without a stream, then a table with a NEW_AND_OLD_IMAGES "
        f"stream; `hippolyte capture TABLE "
        f"--flush-seconds {sizes.flush:g}` as a measured child into a local repository, "
        f"started before the writes and stopped (SIGTERM) once every write was in a "
        f"committed change set. Writes: PutItem of bench/items.py's ~1 KB items, each due at "
        f"start + n/rate, from {sizes.writers} threads (signed raw HTTP, keep-alive). Lag per "
        "write: the mtime of the _SUCCESS file of the change set holding it less the time its "
        "PutItem was answered (DynamoDB Local stamps records to the minute: its stamps cannot "
        "give the lag). CPU per 1,000 records is the whole capture process (start-up, "
        "DescribeStream, polling included) over the records it read. DynamoDB Local, the "
        "writers and capture share the machine's cores.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the raw figures")
    parser.add_argument("--only", action="append", choices=["restore", "capture"])
    parser.add_argument("--profile", action="store_true",
                        help="cProfile a second in-process materialize")
    args = parser.parse_args(argv)
    began = time.monotonic()
    result = run(quick=args.quick, parts=tuple(args.only or ("restore", "capture")),
                 profile=args.profile)
    result.seconds = time.monotonic() - began
    print(show.table([result]))
    print(orjson.dumps(result.raw, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
          if args.verbose else "")
    print(show.markdown_block(result, machine=machine()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
