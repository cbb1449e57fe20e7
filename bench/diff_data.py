"""The diff benchmark's data: a large dynalite table loaded fast (pre-built BatchWriteItem
bodies over signed raw HTTP, not the stock client), 1% of it changed, and synthetic hippolyte
backups written straight to disk with the project's own data-file writer (no server).

Standalone: ``python bench/diff_data.py ITEMS`` builds (once) and caches the dynalite table.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hippolyte.adapters import dynamodb_write
from hippolyte.adapters.local_servers import REGION, Server, node_package, start_process
from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.repo import writer

sys.path.insert(0, str(Path(__file__).resolve().parent))

import items  # noqa: E402
import load  # noqa: E402
import servers as testing  # noqa: E402
from common import CACHE, isolate_aws  # noqa: E402

TABLE = "bench"
DATA_VERSION = 1  # the same items as bench_dynalite's cache: one folder serves both
LOAD_THREADS = 4
BODIES_PER_ROUND = 2_000  # 50,000 items of request bodies held at once


# -- the changes: 1% of the items ---------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Changes:
    """Which items change between the backup and "now": every ``stride``-th index is touched,
    in turn updated, deleted, updated again, or matched by a new item at ``count + n``."""

    count: int
    stride: int = 100  # 1 in 100: 1% of the items

    def kind(self, index: int) -> str | None:
        if index % self.stride != self.stride // 2:
            return None
        return ("updated", "deleted", "updated", "added")[(index // self.stride) % 4]

    def touched(self) -> Iterator[tuple[int, str]]:
        for index in range(self.stride // 2, self.count, self.stride):
            kind = self.kind(index)
            assert kind is not None
            yield index, kind

    def expected(self) -> dict[str, int]:
        found = {"updated": 0, "deleted": 0, "added": 0}
        for _, kind in self.touched():
            found[kind] += 1
        return {"changed": found["updated"], "deleted": found["deleted"], "added": found["added"]}

    def added_index(self, index: int) -> int:
        return self.count + index

    def after_items(self) -> Iterator[bytes]:
        """The table "now", in index order: items 0..count-1 changed, then the new ones."""
        for index in range(self.count):
            kind = self.kind(index)
            if kind == "deleted":
                continue
            yield updated_json(index) if kind == "updated" else items.item_json(index)
        for index, kind in self.touched():
            if kind == "added":
                yield items.item_json(self.added_index(index))


def updated_json(index: int) -> bytes:
    """Item ``index`` after an update: same key, another template's body."""
    return items.key_json(index) + items.template_bodies()[(index + 7) % items.TEMPLATES]


def updated_wire(index: int) -> items.Wire:
    wire = dict(items.templates()[(index + 7) % items.TEMPLATES])
    wire.update({k: v for k, v in items.item_wire(index).items() if k in ("pk", "sk")})
    return wire


# -- synthetic backups ---------------------------------------------------------------------------

def write_backup(repo: Path, lines: Iterator[bytes], *, files: int, at: dt.datetime,
                 table: str = TABLE) -> Path:
    """A committed hippolyte backup of ``lines`` (item JSON), dealt round-robin into ``files``
    data files, written by the same DataFileWriter and commit a backup uses."""
    storage = open_storage(str(repo))
    ref = writer.allocate(storage, table=table, at=at)
    writers = [DataFileWriter(storage, prefix=ref.prefix, key=f"data/{i:05d}-00000.json.gz")
               for i in range(files)]
    batches: list[list[bytes]] = [[] for _ in range(files)]
    total = 0
    for n, line in enumerate(lines):
        batch = batches[n % files]
        batch.append(line)
        total += 1
        if len(batch) == 1000:
            writers[n % files].write_items(batch)
            batch.clear()
    for w, batch in zip(writers, batches, strict=True):
        w.write_items(batch)
    entries = [w.commit() for w in writers]
    info = TableInfo.from_description(_description(table, total))
    writer.commit(storage, ref=ref, info=info, extras={}, files=entries, start=at, end=at,
                  run={"synthetic": True}, consumed=0.0, source={"synthetic": "bench/diff_data.py"})
    return _folder(repo, ref)


def _folder(repo: Path, ref: BackupRef) -> Path:
    return repo / ref.table / ref.backup_id


def _description(table: str, count: int) -> dict[str, object]:
    return {
        "TableName": table,
        "TableArn": f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}",
        "TableStatus": "ACTIVE",
        "KeySchema": items.KEY_SCHEMA,
        "AttributeDefinitions": items.ATTRIBUTE_DEFINITIONS,
        "ProvisionedThroughput": {"ReadCapacityUnits": 40_000, "WriteCapacityUnits": 10_000},
        "ItemCount": count,
        "TableSizeBytes": items.table_size(count),
    }


# -- the dynalite table -------------------------------------------------------------------------

def start_dynalite(path: Path) -> Server:
    """dynalite on ``path``, as tests/support/servers.start_dynalite starts it, but ready once it
    answers a DescribeTable: its readiness check, a ListTables with a 2 s timeout, never
    succeeds on a million items (dynalite takes ~2.4 s per ListTables there)."""
    cli = node_package("dynalite") / "cli.js"

    def command(port: int) -> list[str]:
        return [shutil.which("node") or "node", str(cli), "--host", "127.0.0.1", "--port",
                str(port), "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs",
                "0", "--path", str(path)]

    return start_process("dynalite", command, ready=_answers_describe)


def _answers_describe(server: Server) -> str | None:
    body = orjson.dumps({"TableName": TABLE})
    request = AWSRequest(method="POST", url=server.endpoint_url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.DescribeTable"})
    SigV4Auth(Credentials(server.access_key, server.secret_key), "dynamodb",
              REGION).add_auth(request)
    prepared = urllib.request.Request(server.endpoint_url + "/", data=body, method="POST",
                                      headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared, timeout=10) as response:
            response.read()
        return None
    except urllib.error.HTTPError as exc:  # no such table yet: an answer all the same
        text = exc.read()
        return None if b"ResourceNotFoundException" in text else f"HTTP {exc.code}: {text[:200]!r}"
    except OSError as exc:
        return str(exc)


def dataset(count: int) -> Path:
    """A dynalite data folder holding TABLE with items 0..count-1, loaded once and cached
    (the same folder as bench_dynalite's for the same count)."""
    version = json.loads((testing.servers_dir() / "node_modules" / "dynalite" /
                          "package.json").read_text())["version"]
    folder = CACHE / f"dynalite-{version}-{count}-v{DATA_VERSION}"
    if (folder / "READY").exists():
        return folder / "db"
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    print(f"   loading {count:,} items into dynalite (once; cached in {folder.name})",
          flush=True)
    began = time.monotonic()
    with start_dynalite(partial / "db") as server:
        load.create_table(server.endpoint_url, TABLE, read_capacity=40_000)
        fast_fill(server.endpoint_url, TABLE, range(count))
    (partial / "READY").write_text(f"{count} items, loaded in {time.monotonic() - began:.0f} s\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder / "db"


def fast_fill(endpoint_url: str, table: str, indexes: range) -> None:
    """Items ``indexes`` written as pre-built BatchWriteItem bodies from LOAD_THREADS signed
    keep-alive connections (bench_restore's blast)."""
    from bench_restore import blast  # heavy imports, only when loading

    per_round = BODIES_PER_ROUND * load.BATCH
    done = 0
    began = time.monotonic()
    for start in range(indexes.start, indexes.stop, per_round):
        stop = min(start + per_round, indexes.stop)
        bodies = [dynamodb_write.request_body(
            table, [items.item_json(i) for i in range(s, min(s + load.BATCH, stop))])
            for s in range(start, stop, load.BATCH)]
        blast(endpoint_url, bodies, threads=LOAD_THREADS, sign=True)
        done += stop - start
        rate = done / (time.monotonic() - began)
        print(f"   loaded {done:,} items ({rate:,.0f} items/s)", flush=True)


if __name__ == "__main__":
    isolate_aws()
    print(dataset(int(sys.argv[1])))
