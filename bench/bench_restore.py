"""3. Restore: the client's CPU per MB against a server that accepts BatchWriteItem for free
(bench/write_server.py), compared with the stock client; and end to end on dynalite against the
server's own write ceiling and against dynamodump's restore of the same 100,000 items.

Standalone: ``python bench/bench_restore.py [--quick]`` prints its metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import hashlib
import http.client
import itertools
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import orjson
from botocore.config import Config

from hippolyte.adapters import dynamodb, dynamodb_admin, dynamodb_write
from hippolyte.adapters.storage import open_storage
from hippolyte.core import proof
from hippolyte.core.events import Event, ItemsWritten
from hippolyte.core.model import Connection, TableInfo
from hippolyte.core.pacing import TokenBucket
from hippolyte.core.proof import Digest, item_hash
from hippolyte.core.restore_plan import create_table_request
from hippolyte.engines.load import LoadSettings, load_files
from hippolyte.formats.base import Source, SourceFile, check_item, iter_items, iter_lines
from hippolyte.formats.open import open_source
from hippolyte.ops.restore import table_digest
from hippolyte.ops.restore_check import check_files
from hippolyte.repo import manifest, proofs

import servers as testing

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dynalite  # noqa: E402
import items  # noqa: E402
import load  # noqa: E402
from common import (  # noqa: E402
    HIPPOLYTE,
    MB,
    REGION,
    ProcessRun,
    Report,
    canned_server,
    compile_hippolyte,
    hippolyte_backup,
    isolate_aws,
    machine,
    metric,
    run_measured,
    script_server,
)
from rawscan import _Signer, parallel_scan  # noqa: E402

NAME = "restore"
TITLE = "Restore: client ceiling and end to end on dynalite"
WORKERS = 4  # hippolyte's --workers, and the ceiling clients' threads
WRITE_CAPACITY = 40_000  # the restore's temporary WCU: pacing must not be what limits
# Against the write server, which takes 100 MB in well under a second, 40,000 WCU would be:
# there the restore is given the most --write-capacity takes (a quota AWS raised that far).
WRITE_SERVER_CAPACITY = 1_000_000
BATCH = dynamodb_write.MAX_ITEMS
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Sizes:
    ceiling_mib: int  # the canned table backed up, then restored against the write server
    stock_mb: float  # item JSON MB sent through the stock client (slow: ~3 MB/s)
    loads: int  # in-process loads against the write server (median CPU)
    items: int  # end to end on dynalite
    reps: int  # hippolyte restores on dynalite, each between two ceiling runs

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(ceiling_mib=20, stock_mb=3, loads=1, items=10_000, reps=1)
        return cls(ceiling_mib=100, stock_mb=12, loads=3, items=100_000, reps=2)


def run(*, quick: bool) -> Report:
    isolate_aws()
    compile_hippolyte()  # (run.py does it too; this bench also runs on its own)
    sizes = Sizes.pick(quick)
    report = Report(name=NAME, title=TITLE, quick=quick)
    _steps.clear()
    _last[0] = time.monotonic()
    _client_ceiling(report, sizes)
    _end_to_end(report, sizes)
    report.raw["steps_s"] = [[what, seconds] for what, seconds in _steps]
    return report


_steps: list[tuple[str, float]] = []
_last = [time.monotonic()]


def step(what: str) -> None:
    """One line of progress: ``what`` was just done, in the time since the previous step."""
    now = time.monotonic()
    _steps.append((what, now - _last[0]))
    print(f"   {what}: {now - _last[0]:.1f} s", flush=True)
    _last[0] = now


# -- helpers -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Timed:
    wall_s: float
    cpu_s: float  # this process, every thread, user + sys


def timed(fn: Callable[[], T]) -> tuple[T, Timed]:
    """Wall and CPU time of ``fn``: this process's threads and the processes it started and
    ended meanwhile (the check pass and the proof's digest run in processes when large)."""
    gc.collect()
    began, cpu = time.monotonic(), _cpu()
    result = fn()
    return result, Timed(wall_s=time.monotonic() - began, cpu_s=_cpu() - cpu)


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass(frozen=True, kw_only=True)
class Backup:
    """A committed backup opened as the restore opens it, and what it holds."""

    folder: Path
    source: Source
    items: int
    json_bytes: int  # the items' DynamoDB JSON, as restored (the {"Item": } wrapper excluded)

    @classmethod
    def open(cls, folder: Path) -> Backup:
        ref = manifest.parse_ref(str(folder), repo=None)
        source = open_source(open_storage(ref.repo), ref.prefix, location=str(folder))
        count = size = 0
        for f in source.files:
            for item in iter_items(source, f, schema=None):
                count += 1
                size += len(item)
        return cls(folder=folder, source=source, items=count, json_bytes=size)

    def batches(self, *, limit_bytes: float | None = None) -> Iterator[list[bytes]]:
        """The items in BatchWriteItem-sized lists, file after file."""
        sent = 0
        for f in self.source.files:
            batch: list[bytes] = []
            for item in iter_items(self.source, f, schema=None):
                batch.append(item)
                if len(batch) == BATCH:
                    yield batch
                    sent += sum(map(len, batch))
                    batch = []
                    if limit_bytes is not None and sent >= limit_bytes:
                        return
            if batch:
                yield batch


@dataclass(frozen=True, kw_only=True)
class Blast:
    wall_s: float
    cpu_s: float
    requests: int
    body_bytes: int


def blast(endpoint_url: str, bodies: list[bytes], *, threads: int, sign: bool) -> Blast:
    """Send pre-built BatchWriteItem bodies from ``threads`` keep-alive connections as fast as
    the server answers; only the status and ``UnprocessedItems`` of each answer are looked at.
    Unsigned requests carry a fixed Authorization header (enough for the write server)."""
    parts = urlsplit(endpoint_url)
    todo = itertools.count()
    errors: list[BaseException] = []
    fixed = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/"
                         "aws4_request, SignedHeaders=host, Signature=00",
    }

    def worker() -> None:
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                              timeout=120)
            signer = _Signer(endpoint_url) if sign else None
            while (i := next(todo)) < len(bodies):
                body = bodies[i]
                headers = signer.headers("BatchWriteItem", body) if signer else fixed
                conn.request("POST", "/", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.status != 200 or orjson.loads(data).get("UnprocessedItems"):
                    raise RuntimeError(f"BatchWriteItem answered {response.status}: "
                                       f"{data[:300]!r}")
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    began, cpu = time.monotonic(), time.process_time()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    if errors:
        raise errors[0]
    return Blast(wall_s=wall, cpu_s=cpu, requests=len(bodies), body_bytes=sum(map(len, bodies)))


@dataclass(frozen=True, kw_only=True)
class WriteServer:
    pid: int
    endpoint_url: str
    port: int

    def stats(self, table: str) -> dict[str, int]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", "/", body=b"{}",
                     headers={"X-Amz-Target": "DynamoDB_20120810.BenchStats"})
        doc = orjson.loads(conn.getresponse().read())
        conn.close()
        found: dict[str, int] = doc["tables"].get(table, {"requests": 0, "puts": 0})
        return found


@contextmanager
def write_server() -> Iterator[WriteServer]:
    """bench/write_server.py in its own process on 127.0.0.1; stopped by its pid."""
    with script_server("write_server.py") as (pid, port):
        yield WriteServer(pid=pid, endpoint_url=f"http://127.0.0.1:{port}", port=port)


def _stock_client(endpoint_url: str, *, validation: bool) -> Any:
    return boto3.session.Session(region_name=REGION).client(
        "dynamodb", endpoint_url=endpoint_url,
        config=Config(parameter_validation=validation,
                      retries={"mode": "standard", "max_attempts": 3}))


# -- 1. client ceiling -----------------------------------------------------------------------

def _client_ceiling(report: Report, sizes: Sizes) -> None:
    with canned_server() as canned, write_server() as server, \
            tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        made = hippolyte_backup(f"canned-{sizes.ceiling_mib}", repo=Path(tmp) / "repo",
                                endpoint_url=canned.endpoint_url, segments=WORKERS,
                                workers=WORKERS, read_percent=1)
        backup = Backup.open(made.folder)
        ddb_mb = items.table_size(backup.items) / MB
        json_mb = backup.json_bytes / MB
        report.raw["ceiling_backup"] = {"items": backup.items, "ddb_mb": ddb_mb,
                                        "json_mb": json_mb, "files": len(backup.source.files)}
        report.notes.append(
            f"Client ceiling: a hippolyte backup of a {sizes.ceiling_mib} MiB canned table "
            f"({backup.items:,} items of every type, {ddb_mb:,.1f} MB as DynamoDB sizes them, "
            f"{json_mb:,.1f} MB of item JSON, {len(backup.source.files)} data files) is "
            f"restored in this process with {WORKERS} workers into bench/write_server.py, "
            "which answers BatchWriteItem without parsing it. CPU is this process's "
            "(time.process_time, every thread).")
        step(f"backup of canned-{sizes.ceiling_mib} made and read")
        _write_server_ceiling(report, server, backup, ddb_mb=ddb_mb)
        step("write server ceiling")
        _per_item(report, backup)
        step("check and digest per item")
        load_rate = _hippolyte_phases(report, server, backup, ddb_mb=ddb_mb,
                                      loads=sizes.loads)
        step("hippolyte phases in process")
        _cli_on_write_server(report, server, backup, Path(tmp), ddb_mb=ddb_mb)
        step("hippolyte restore CLI against the write server")
        _stock_paths(report, server, backup, sizes, ddb_mb=ddb_mb, load_rate=load_rate)
        step("stock client")


CLI_RUNS = 3  # of each CLI restore against the write server; the median by CPU kept


def _cli_on_write_server(report: Report, server: WriteServer, backup: Backup, tmp: Path, *,
                         ddb_mb: float) -> None:
    """The whole command, as a user runs it, with a server that costs nothing: start-up,
    check, create, load, proof (the write server replays what it was sent), settings. The
    first restore of the backup reads every item before writing (and records that it did:
    repo.proofs; the record is removed before each such run); a restore of a backup so
    checked hashes its files only. CLI_RUNS of each, the median by CPU kept."""
    for key, what in (("cli", "first restore of the backup: every item checked"),
                      ("cli_checked", "a checked backup (proof.json): its files hashed only")):
        runs = []
        for i in range(CLI_RUNS):
            if key == "cli":
                (backup.folder / proofs.PROOF).unlink(missing_ok=True)
            runs.append(_hippolyte_restore(
                server.endpoint_url, f"restored-by-{key}-{i}", backup.folder, tmp / f"{key}-{i}",
                backup.items, capacity=WRITE_SERVER_CAPACITY))
        cpu = sorted(r.process.cpu_s for r in runs)
        run = next(r for r in runs if r.process.cpu_s == cpu[len(cpu) // 2])
        p = run.process
        report.raw[f"{key}_on_write_server"] = {
            "wall_s": p.wall_s, "user_s": p.user_s, "sys_s": p.sys_s,
            "max_rss_mb": p.max_rss_mb, "create_s": run.create_s,
            "load_start_s": run.load_start_s, "load_end_s": run.load_end_s,
            "cpu_s_runs": [r.process.cpu_s for r in runs]}
        spread = f"median of {len(runs)}: {ddb_mb / cpu[-1]:.1f}-{ddb_mb / cpu[0]:.1f}"
        report.metrics += [
            metric(f"{key}_ddb_mb_per_core", f"hippolyte restore CLI, whole process ({what}; "
                   f"load, proof scan, digests), CPU ({spread})", ddb_mb / p.cpu_s,
                   "MB/s per core (DynamoDB-sized)", at_least=20),
            metric(f"{key}_wall_mb_s", f"same, wall clock ({run.phases()})", ddb_mb / p.wall_s,
                   "MB/s"),
            metric(f"{key}_rss_mb", "same, peak RSS (of the run kept)", p.max_rss_mb, "MiB",
                   at_most=200),
        ]


def _write_server_ceiling(report: Report, server: WriteServer, backup: Backup, *,
                          ddb_mb: float) -> None:
    bodies = [dynamodb_write.request_body("ceiling", b) for b in backup.batches()]
    done = blast(server.endpoint_url, bodies, threads=WORKERS, sign=False)
    del bodies
    got = server.stats("ceiling")["puts"]
    if got != backup.items:
        raise RuntimeError(f"write server counted {got} puts of {backup.items}")
    report.raw["write_server_ceiling"] = done.__dict__
    report.metrics += [
        metric("server_write_mb_s", f"write server, raw HTTP client, {WORKERS} connections, "
               "pre-built bodies", ddb_mb / done.wall_s,
               f"MB/s ({done.requests / done.wall_s:,.0f} requests/s, "
               f"{done.body_bytes / MB / done.wall_s:,.0f} MB/s of bodies)"),
    ]


PER_ITEM = 20_000  # items of the backup timed one by one
PER_ITEM_ROUNDS = 3  # interleaved; the median round kept


def _per_item(report: Report, backup: Backup) -> None:
    """CPU per item of what the two CPU-bound passes do to each item, alone, in this process:
    the check pass (check_item, then the digest from the same decode, as check_file does), the
    proof's digest of a scanned item (canonical_json + sha256), and the digest by the walk
    over every value that defines the canonical form (what canonical_json does for an item
    with sets; for one without, a sorted dump)."""
    source = backup.source
    schema = source.schema()
    some = list(itertools.islice(
        (i for f in source.files for i in iter_items(source, f, schema=None, check=False)),
        PER_ITEM))

    def check_and_digest(item: bytes) -> None:
        Digest().add_canonical(check_item(item, schema, canonical=True))

    def walk_digest(item: bytes) -> None:
        hashlib.sha256(proof.reference_canonical_json(item)).digest()

    passes: dict[str, Callable[[bytes], object]] = {
        "check": functools.partial(check_item, schema=schema),
        "check_digest": check_and_digest,
        "digest": proof.item_hash,
        "walk_digest": walk_digest,
    }
    rounds: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(PER_ITEM_ROUNDS):
        for key, fn in passes.items():
            began = time.process_time()
            for item in some:
                fn(item)
            rounds[key].append((time.process_time() - began) / len(some) * 1e6)
    us = {k: statistics.median(v) for k, v in rounds.items()}
    report.raw["per_item_us"] = rounds
    n = f"{len(some):,} items, median of {PER_ITEM_ROUNDS}"
    report.metrics += [
        metric("check_us", f"check_item, CPU per item ({n})", us["check"], "us"),
        metric("check_digest_us", "check pass per item: check_item + the proof's digest from "
               "the same decode", us["check_digest"], "us"),
        metric("digest_us", "the proof's digest of a scanned item (canonical_json, sha256)",
               us["digest"], "us"),
        metric("walk_digest_us", "same by the walk over every value (the definition, and "
               "the path of an item with sets)", us["walk_digest"], "us"),
    ]


def _hippolyte_phases(report: Report, server: WriteServer, backup: Backup, *,
                      ddb_mb: float, loads: int) -> float:
    """The restore's client-side phases, each timed on its own: check and digest every file, load
    (load_files, as ops/restore.py calls it; ``loads`` times into the same table, the median
    CPU kept), scan and digest the table. Returns the load's DynamoDB MB/s
    per core."""
    source = backup.source
    schema = source.schema()
    assert schema is not None and source.description is not None
    conn = Connection(region=REGION, endpoint_url=server.endpoint_url)
    table = "restored"
    control = _stock_client(server.endpoint_url, validation=True)
    dynamodb_admin.create_table(control, create_table_request(
        source.description, table_name=table, load_capacity=WRITE_CAPACITY))
    writer = dynamodb_write.open_writer(conn, pool=WORKERS + 2)
    writer.write_batch(table="warm-up", items=[items.item_json(0)])
    written = [0]
    lock = threading.Lock()

    def emit(event: Event) -> None:
        if isinstance(event, ItemsWritten):
            with lock:
                written[0] += event.items

    def check() -> Digest:
        total = Digest()
        for c in check_files(source, source.files, schema=schema, workers=WORKERS):
            assert c.digest is not None
            total.merge(c.digest)
        return total

    def load_all() -> None:
        done: list[SourceFile] = []
        load_files(source, list(source.files), writer=writer,
                   settings=LoadSettings(table=table, workers=WORKERS),
                   bucket=TokenBucket(rate=1e9), emit=emit, on_file_done=done.append,
                   stop=threading.Event())
        if len(done) != len(source.files):
            raise RuntimeError(f"load finished {len(done)} files of {len(source.files)}")

    def scan_table() -> Digest:
        info_desc = dynamodb_admin.describe_raw(control, table)
        assert info_desc is not None
        return table_digest(conn, table=table, info=TableInfo.from_description(info_desc),
                            workers=WORKERS, stop=threading.Event(), on_demand_units=4000.0,
                            expected_items=backup.items)

    ours, t_check = timed(check)
    load_runs = []
    for n in range(1, loads + 1):
        written[0] = 0
        load_runs.append(timed(load_all)[1])
        puts = server.stats(table)["puts"]
        if written[0] != backup.items or puts != n * backup.items:
            raise RuntimeError(f"load reported {written[0]} items written, the server "
                               f"counted {puts - (n - 1) * backup.items}, the backup holds "
                               f"{backup.items}")
    t_load = sorted(load_runs, key=lambda t: t.cpu_s)[len(load_runs) // 2]
    # The server parses what was written on the first Scan: do that before timing the scan.
    control.scan(TableName=table, Limit=1)
    theirs, t_scan = timed(scan_table)
    proven = ours.count == theirs.count == backup.items and ours.value == theirs.value
    phases = {"check": t_check, "load": t_load, "table_digest": t_scan}
    report.raw["hippolyte_phases"] = {k: v.__dict__ for k, v in phases.items()}
    report.raw["hippolyte_loads"] = [t.__dict__ for t in load_runs]
    runs = (f"median of {loads}: {min(ddb_mb / t.cpu_s for t in load_runs):.1f}-"
            f"{max(ddb_mb / t.cpu_s for t in load_runs):.1f}" if loads > 1 else "1 run")
    total_cpu = sum(v.cpu_s for v in phases.values())
    json_mb = backup.json_bytes / MB
    load_rate = ddb_mb / t_load.cpu_s
    report.metrics += [
        metric("load_ddb_mb_per_core", f"hippolyte load phase (load_files), CPU ({runs})",
               load_rate, "MB/s per core (DynamoDB-sized)", at_least=20),
        metric("load_json_mb_per_core", "same, per MB of item JSON", json_mb / t_load.cpu_s,
               "MB/s per core (JSON)"),
        metric("load_wall_mb_s", "same, wall clock (2 cores shared with the server)",
               ddb_mb / t_load.wall_s,
               f"MB/s ({backup.items / t_load.wall_s:,.0f} items/s)"),
        metric("check_ddb_mb_per_core", "hippolyte check pass (every file read, checksummed "
               "and checked, and the proof's digest of the backup, before any write), CPU",
               ddb_mb / t_check.cpu_s, "MB/s per core"),
        metric("table_digest_ddb_mb_per_core", "hippolyte proof: scan + digest of the table, "
               "CPU", ddb_mb / t_scan.cpu_s, "MB/s per core"),
        metric("restore_ddb_mb_per_core", "hippolyte restore, all three phases, CPU",
               ddb_mb / total_cpu, "MB/s per core (DynamoDB-sized)"),
        metric("ceiling_proof_mismatch", "proof against the write server's replay "
               "(0: digests equal)", 0 if proven else 1, "", at_most=1, digits=0),
    ]
    return load_rate


def _stock_paths(report: Report, server: WriteServer, backup: Backup, sizes: Sizes, *,
                 ddb_mb: float, load_rate: float) -> None:
    """The same lines through the stock client: read + gunzip (as hippolyte reads them), parse
    each item, binary to bytes, ``client.batch_write_item`` with the low-level item dicts, one
    thread. Once as shipped, once with parameter validation off."""
    ddb_per_json = ddb_mb / (backup.json_bytes / MB)
    for key, validation in (("stock", True), ("stock_novalidation", False)):
        client = _stock_client(server.endpoint_url, validation=validation)
        client.batch_write_item(RequestItems={"warm-up": [
            {"PutRequest": {"Item": items.to_client(items.item_wire(0))}}]})
        table = f"{key}-target"

        def send(client: Any = client, table: str = table) -> int:
            sent = 0
            batch: list[dict[str, Any]] = []
            for f in backup.source.files:
                for _, line in iter_lines(backup.source, f):
                    item = orjson.loads(line)["Item"]
                    sent += len(line) - len(b'{"Item":}')
                    batch.append({"PutRequest": {"Item": items.to_client(item)}})
                    if len(batch) == BATCH:
                        _stock_write(client, table, batch)
                        batch = []
                        if sent >= sizes.stock_mb * MB:
                            return sent
            if batch:
                _stock_write(client, table, batch)
            return sent

        sent, t = timed(send)
        sent_ddb_mb = sent / MB * ddb_per_json
        rate = sent_ddb_mb / t.cpu_s
        report.raw[key] = {"json_mb": sent / MB, "ddb_mb": sent_ddb_mb, **t.__dict__}
        what = "as shipped" if validation else "parameter validation off"
        report.metrics.append(metric(
            f"{key}_ddb_mb_per_core", f"stock client batch_write_item, {what} "
            f"({sent / MB:,.0f} MB of JSON), CPU", rate, "MB/s per core (DynamoDB-sized)"))
        if validation:
            report.metrics.append(metric("load_vs_stock", "hippolyte load / stock client "
                                         "(as shipped), CPU per MB", load_rate / rate, "x"))


def _stock_write(client: Any, table: str, batch: list[dict[str, Any]]) -> None:
    pending: list[dict[str, Any]] = batch
    for _ in range(10):
        answer = client.batch_write_item(RequestItems={table: pending})
        pending = answer.get("UnprocessedItems", {}).get(table, [])
        if not pending:
            return
    raise RuntimeError(f"{table}: {len(pending)} items never written")


# -- 2. end to end on dynalite -------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Restored:
    process: ProcessRun
    doc: dict[str, Any]
    create_s: float  # since the start: the "creating table" note (start-up and check done)
    load_start_s: float  # the load_started event
    load_end_s: float  # the checkpoint's phase turned "loaded"

    @property
    def load_s(self) -> float:
        return self.load_end_s - self.load_start_s

    def phases(self) -> str:
        return (f"start-up + check {self.create_s:.1f} s, create table "
                f"{self.load_start_s - self.create_s:.1f} s, load {self.load_s:.1f} s, proof + "
                f"settings + exit {self.process.wall_s - self.load_end_s:.1f} s")


def _end_to_end(report: Report, sizes: Sizes) -> None:
    count = sizes.items
    data = bench_dynalite._dataset(count)
    table_mb = items.table_size(count) / MB
    with tempfile.TemporaryDirectory(prefix="bench-restore-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        # A copy: the cached folder stays untouched, and usable by another run at the same time
        # (dynalite locks its folder).
        shutil.copytree(data, tmp / "source-db", ignore=shutil.ignore_patterns("LOCK"))
        with testing.start_dynalite(path=tmp / "source-db") as source_server:
            made = hippolyte_backup(bench_dynalite.TABLE, repo=tmp / "repo",
                                    endpoint_url=source_server.endpoint_url, segments=WORKERS,
                                    workers=WORKERS, read_percent=1)
            step(f"hippolyte backup of {count:,} items on dynalite")
            dump = _dynamodump_backup(source_server, tmp / "dump", count)
            step("dynamodump backup")
        backup = Backup.open(made.folder)
        if backup.items != count:
            raise RuntimeError(f"the backup holds {backup.items} items of {count}")
        _on_write_server(report, made.folder, dump, tmp / "fast", count, table_mb)
        step("hippolyte and dynamodump against the write server")
        batches = list(backup.batches())
        report.notes.append(
            f"End to end: {count:,} items of ~1 KB of every type ({table_mb:,.1f} MB as "
            f"DynamoDB sizes them), backed up from bench_dynalite's cached table by hippolyte "
            f"and by dynamodump, each restore into a new table of a fresh, empty dynalite "
            f"(on disk, like the cached one), --write-capacity {WRITE_CAPACITY:,}, "
            f"--workers {WORKERS}. Order: ceiling, then hippolyte and ceiling alternately, "
            "then dynamodump. Each fresh dynalite first takes 1,000 items into another table "
            "(its JIT warms up).")
        ceilings: list[Blast] = []
        scans: list[float] = []  # the cheapest scan of each ceiling's table, to bound a proof
        restores: list[Restored] = []
        plan = ["ceiling"] + ["hippolyte", "ceiling"] * sizes.reps + ["dynamodump"]
        dynamodump: ProcessRun | None = None
        exact = (0, 0)
        for i, kind in enumerate(plan):
            table = f"{kind}-{i}"
            with testing.start_dynalite(path=tmp / f"db-{i}") as server:
                _warm_up(server.endpoint_url, batches[:40])
                if kind == "ceiling":
                    ceilings.append(_dynalite_ceiling(server.endpoint_url, table, batches))
                elif kind == "hippolyte":
                    restores.append(_hippolyte_restore(server.endpoint_url, table, made.folder,
                                                       tmp / f"run-{i}", count))
                else:
                    dynamodump = _dynamodump_restore(server.endpoint_url, dump, table)
                    exact = _sample_exact(server.endpoint_url, table, backup)
                if kind != "hippolyte":  # hippolyte proves its own restore
                    scan = parallel_scan(server.endpoint_url, table=table, segments=4)
                    seen = scan.items
                    if kind == "ceiling":
                        scans.append(scan.wall_s)
                    if seen != count:
                        raise RuntimeError(f"{kind}: the table holds {seen} items of {count}")
            step(f"{kind} on dynalite")
    assert dynamodump is not None
    _e2e_metrics(report, count, table_mb, ceilings, restores, dynamodump, scans)
    sampled, differing = exact
    report.metrics.append(metric(
        "dynamodump_items_differing", f"dynamodump restore: items that differ from the backup "
        f"(first pages read back: {sampled:,} items)", differing, "", digits=0))


def _sample_exact(endpoint_url: str, table: str, backup: Backup,
                  pages: int = 2) -> tuple[int, int]:
    """Read the first pages of ``table`` back and count the items that are not, value for
    value (proof.item_hash: attribute order, set order and number spelling ignored), items of
    the backup."""
    want = {item_hash(i) for f in backup.source.files
            for i in iter_items(backup.source, f, schema=None)}
    client = dynamodb.raw_scan_client(Connection(region=REGION, endpoint_url=endpoint_url),
                                      pool=2)
    seen = differing = 0
    start = None
    for _ in range(pages):
        page = dynamodb.scan_page(client, table=table, segment=0, total_segments=1,
                                  start_key=start, limit=None)
        seen += len(page.items)
        differing += sum(item_hash(i) not in want for i in page.items)
        start = page.last_key
        if not start:
            break
    return seen, differing


def _on_write_server(report: Report, folder: Path, dump: Path, work: Path, count: int,
                     table_mb: float) -> None:
    """Both restores of the same items against bench/write_server.py, where the server is
    not what limits: what each client can do. hippolyte twice: the backup's first restore,
    then one of the backup so checked (repo.proofs)."""
    with write_server() as server:
        first = _hippolyte_restore(server.endpoint_url, "by-hippolyte", folder, work / "1",
                                   count, capacity=WRITE_SERVER_CAPACITY)
        checked = _hippolyte_restore(server.endpoint_url, "by-hippolyte-checked", folder,
                                     work / "2", count, capacity=WRITE_SERVER_CAPACITY)
        theirs = _dynamodump_restore(server.endpoint_url, dump, "by-dynamodump")
        puts = server.stats("by-dynamodump")["puts"]
    if puts != count:
        raise RuntimeError(f"dynamodump sent {puts} items of {count} to the write server")
    theirs_load = _dynamodump_load_s(theirs)
    report.raw["on_write_server"] = {
        **{name: {"wall_s": r.process.wall_s, "cpu_s": r.process.cpu_s,
                  "max_rss_mb": r.process.max_rss_mb, "create_s": r.create_s,
                  "load_start_s": r.load_start_s, "load_end_s": r.load_end_s}
           for name, r in (("hippolyte", first), ("hippolyte_checked", checked))},
        "dynamodump": {"wall_s": theirs.wall_s, "cpu_s": theirs.cpu_s,
                       "max_rss_mb": theirs.max_rss_mb, "load_s": theirs_load}}
    theirs_rate = count / theirs.wall_s
    report.metrics.append(
        metric("fast_dynamodump_items_s", "write server: dynamodump restore, process wall"
               f"{f' (load {theirs_load:.1f} s)' if theirs_load else ''}", theirs_rate,
               f"items/s ({table_mb * theirs_rate / count:,.1f} MB/s)", digits=0))
    for key, what, ours in (("fast", "first restore", first),
                            ("fast_checked", "a checked backup", checked)):
        rate = count / ours.process.wall_s
        report.metrics += [
            metric(f"{key}_restore_items_s", f"write server: hippolyte restore ({what}), "
                   f"process wall ({ours.phases()})", rate,
                   f"items/s ({table_mb * rate / count:,.1f} MB/s)", digits=0),
            metric(f"{key}_vs_dynamodump", f"write server: hippolyte ({what}) / dynamodump, "
                   "process wall (hippolyte also proves the result)", rate / theirs_rate, "x",
                   at_least=6),
        ]
        if theirs_load:
            report.metrics.append(metric(
                f"{key}_vs_dynamodump_load", f"write server: hippolyte ({what}) / dynamodump, "
                "load phase only", (count / ours.load_s) / (count / theirs_load), "x"))


def _e2e_metrics(report: Report, count: int, table_mb: float, ceilings: list[Blast],
                 restores: list[Restored], dump: ProcessRun, scans: list[float]) -> None:
    ceiling_rates = [count / c.wall_s for c in ceilings]
    ceiling = statistics.median(ceiling_rates)
    wall_rates = [count / r.process.wall_s for r in restores]
    load_rates = [count / r.load_s for r in restores]
    ours_wall, ours_load = statistics.median(wall_rates), statistics.median(load_rates)
    runs = f"median of {len(restores)}" if len(restores) > 1 else "1 run"
    report.raw["e2e"] = {
        "ceilings": [c.__dict__ for c in ceilings],
        "restores": [{"wall_s": r.process.wall_s, "user_s": r.process.user_s,
                      "sys_s": r.process.sys_s, "max_rss_mb": r.process.max_rss_mb,
                      "create_s": r.create_s, "load_start_s": r.load_start_s,
                      "load_end_s": r.load_end_s, "doc": r.doc} for r in restores],
        "dynamodump": {"wall_s": dump.wall_s, "user_s": dump.user_s, "sys_s": dump.sys_s,
                       "max_rss_mb": dump.max_rss_mb,
                       "version": bench_dynalite._dynamodump_version()},
    }
    phases = sorted(restores, key=lambda r: r.process.wall_s)[len(restores) // 2].phases()
    dump_load = _dynamodump_load_s(dump)
    report.metrics += [
        metric("e2e_ceiling_items_s", f"ceiling: pre-built BatchWriteItem bodies, {WORKERS} "
               f"threads, signed raw HTTP (median of {len(ceilings)}: "
               f"{_span(ceiling_rates)})", ceiling,
               f"items/s ({ceiling * table_mb / count:,.1f} MB/s)", digits=0),
        metric("e2e_restore_items_s", "hippolyte restore of a checked backup (proof.json), "
               f"process wall ({runs}: "
               f"{_span(wall_rates)}; {phases})", ours_wall,
               f"items/s ({ours_wall * table_mb / count:,.1f} MB/s)", digits=0),
        metric("e2e_load_items_s", f"hippolyte restore, load phase only ({runs}: "
               f"{_span(load_rates)})", ours_load, "items/s", digits=0),
        metric("e2e_ratio_load", "hippolyte load phase / ceiling", ours_load / ceiling, "",
               at_least=0.8, digits=2),
        metric("e2e_ratio_wall", "hippolyte whole restore (check, create, load, proof) / "
               "ceiling", ours_wall / ceiling, "", at_least=0.8, digits=2),
        metric("e2e_ratio_bound", "the most a restore that proves by reading the table back "
               "could reach: a load at the ceiling, then dynalite's fastest scan of it "
               f"(bench/rawscan.py, 4 segments, median {statistics.median(scans):.1f} s), "
               "with no start-up, check or digest at all",
               1 / (1 + statistics.median(scans) * ceiling / count), "", digits=2),
        metric("e2e_restore_cpu", "hippolyte restore CPU (user+sys), whole process",
               statistics.median(r.process.cpu_s for r in restores), "s", digits=2),
        metric("e2e_restore_rss_mb", "hippolyte restore peak RSS (highest)",
               max(r.process.max_rss_mb for r in restores), "MiB", at_most=200),
        metric("dynamodump_restore_items_s", "dynamodump restore (as it ships: 1 thread), "
               f"process wall{f'; load {dump_load:.1f} s' if dump_load else ''}",
               count / dump.wall_s, f"items/s ({table_mb / dump.wall_s:,.1f} MB/s)", digits=0),
        metric("dynamodump_restore_cpu", "dynamodump restore CPU (user+sys)", dump.cpu_s, "s",
               digits=2),
        metric("dynamodump_restore_rss_mb", "dynamodump restore peak RSS", dump.max_rss_mb,
               "MiB"),
        metric("vs_dynamodump", "hippolyte / dynamodump, process wall",
               ours_wall / (count / dump.wall_s), "x", at_least=5),
        metric("ceiling_vs_dynamodump", "the most any client could gain here: dynalite's "
               "ceiling / dynamodump", ceiling / (count / dump.wall_s), "x"),
        metric("vs_dynamodump_cpu", "CPU per item: dynamodump / hippolyte (whole processes)",
               dump.cpu_s / statistics.median(r.process.cpu_s for r in restores), "x"),
    ]
    if dump_load:
        report.metrics.append(metric("vs_dynamodump_load", "hippolyte / dynamodump, load "
                                     "phase only", ours_load / (count / dump_load), "x"))


def _span(rates: list[float]) -> str:
    return f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else f"{rates[0]:,.0f}"


def _warm_up(endpoint_url: str, batches: list[list[bytes]]) -> None:
    load.create_table(endpoint_url, "warm-up", read_capacity=WRITE_CAPACITY,
                      write_capacity=WRITE_CAPACITY)
    blast(endpoint_url, [dynamodb_write.request_body("warm-up", b) for b in batches],
          threads=WORKERS, sign=True)


def _dynalite_ceiling(endpoint_url: str, table: str, batches: list[list[bytes]]) -> Blast:
    load.create_table(endpoint_url, table, read_capacity=WRITE_CAPACITY,
                      write_capacity=WRITE_CAPACITY)
    bodies = [dynamodb_write.request_body(table, b) for b in batches]
    return blast(endpoint_url, bodies, threads=WORKERS, sign=True)


def _hippolyte_restore(endpoint_url: str, table: str, folder: Path, work: Path,
                       count: int, *, capacity: int = WRITE_CAPACITY) -> Restored:
    """``hippolyte restore FOLDER --table T --json`` from an empty directory; a watcher
    notes when the checkpoint file says the load is over."""
    state_dir, cwd = work / "state", work / "cwd"
    cwd.mkdir(parents=True)
    command = [*HIPPOLYTE, "restore", str(folder), "--table", table, "--endpoint-url",
               endpoint_url, "--region", REGION, "--write-capacity", str(capacity),
               "--workers", str(WORKERS), "--state-dir", str(state_dir), "--json"]
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
        p = run_measured(command, cwd=cwd, timeout=1800).check()
    finally:
        finished.set()
        watcher.join()
    doc = orjson.loads(p.stdout)
    if not doc["proof"]["ok"] or doc["itemsWritten"] != count:
        raise RuntimeError(f"hippolyte restore into {table}: {doc}")
    events = []
    for at, line in p.stderr:
        if line.startswith(b"{"):
            try:
                events.append((at, orjson.loads(line)))
            except orjson.JSONDecodeError:
                continue
    create = next((at for at, e in events if e.get("event") == "note"
                   and str(e.get("text", "")).startswith("creating table")), 0.0)
    start = next(at for at, e in events if e.get("event") == "load_started")
    return Restored(process=p, doc=doc, create_s=create, load_start_s=start,
                    load_end_s=loaded[0] if loaded else p.wall_s)


def _dynamodump_command(endpoint_url: str, *args: str) -> list[str]:
    port = endpoint_url.rsplit(":", 1)[1]
    return [bench_dynalite._dynamodump_python(), "-c", bench_dynalite.DYNAMODUMP_RUN, *args,
            "-r", REGION, "--host", "127.0.0.1", "--port", port, "--accessKey",
            testing.DUMMY_KEY, "--secretKey", testing.DUMMY_KEY]


def _dynamodump_backup(server: testing.Server, dump: Path, count: int) -> Path:
    command = _dynamodump_command(server.endpoint_url, "-m", "backup", "-s", bench_dynalite.TABLE,
                                  "--dumpPath", str(dump), "--log", "WARNING")
    run_measured(command, cwd=dump.parent, timeout=1800).check()
    dumped = sum(orjson.loads(f.read_bytes())["Count"]
                 for f in (dump / bench_dynalite.TABLE / "data").glob("*.json"))
    if dumped != count:
        raise RuntimeError(f"dynamodump wrote {dumped} items of {count}")
    return dump


def _dynamodump_restore(endpoint_url: str, dump: Path, table: str) -> ProcessRun:
    command = _dynamodump_command(endpoint_url, "-m", "restore", "-s", bench_dynalite.TABLE,
                                  "-d", table, "--dumpPath", str(dump), "--writeCapacity",
                                  str(WRITE_CAPACITY), "--noConfirm", "--log", "INFO")
    return run_measured(command, cwd=dump.parent, timeout=3600).check()


def _dynamodump_load_s(p: ProcessRun) -> float | None:
    """From its INFO log lines' arrival: 'Restoring data for' to the first line after the
    last data file ('Updating ...' or 'Restore for ... completed')."""
    start = end = None
    for at, line in p.stderr:
        text = line.decode("utf-8", "replace")
        if "Restoring data for" in text:
            start = at
        elif start is not None and "Processing" not in text and end is None:
            end = at
    return end - start if start is not None and end is not None else None


# -- standalone ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 90 s")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the report (metrics, notes, raw data) here")
    args = parser.parse_args(argv)
    began = time.monotonic()
    result = run(quick=args.quick)
    result.seconds = time.monotonic() - began
    host = machine()
    print(f"{result.title}{' (quick)' if result.quick else ''}: {result.seconds:.0f} s on "
          f"{host['cpu']} x{host['nproc']}, Python {host['python']}, {host['date']}")
    width = max(len(m.label) for m in result.metrics)
    for m in result.metrics:
        verdict = "" if m.ok is None else ("  ok" if m.ok else "  MISSED")
        target = f"  (target {m.target})" if m.target else ""
        print(f"  {m.label:<{width}}  {m.shown()}{target}{verdict}")
    for note in result.notes:
        print(f"  note: {note}")
    if args.json:
        args.json.write_bytes(orjson.dumps(
            {"machine": host, **dataclasses.asdict(result)}, option=orjson.OPT_INDENT_2,
            default=str))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
