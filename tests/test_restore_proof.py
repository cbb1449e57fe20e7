"""The record of a restore's check pass (repo.proofs, ops.restore_check): a later restore of the
same backup only hashes its files, and nothing about the record can make a bad restore pass."""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import BackupCorrupt
from hippolyte.core.events import Event, Note
from hippolyte.formats.base import KeySchema
from hippolyte.formats.open import open_source
from hippolyte.ops import copy as copy_op
from hippolyte.ops import restore as restore_ops
from hippolyte.ops import restore_check
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.restore import RestoreParams, restore
from hippolyte.ops.sample_tables import order_item
from hippolyte.repo import proofs
from tests.corpus import nasty_items, same_items
from tests.helpers import Db, db_for, run
from tests.support.servers import Server

pytestmark = pytest.mark.servers
ORDER_KEY = (("customer", "S"), ("order", "N"))


@pytest.fixture
def db(ddb_server: Server) -> Db:
    return db_for(ddb_server)


def _backup(db: Db, items: list[dict[str, Any]], repo: Path, **kw: Any) -> Any:
    storage = open_storage(str(repo))
    table = db.table(items=items, **kw)
    (result,) = backup_tables(
        [table], conn=db.conn, storage=storage, params=BackupParams(segments=2), emit=lambda e: None
    )
    assert result.ok, result.error
    return open_source(storage, result.ref.prefix, location=str(result.ref))


def _restore(db: Db, source: Any, tmp_path: Path, **kw: Any) -> tuple[str, Any, list[Event]]:
    events: list[Event] = []
    name = f"restored-{time.monotonic_ns()}"
    report = restore(
        source,
        conn=db.conn,
        table=name,
        params=RestoreParams(state_dir=tmp_path / "state"),
        emit=events.append,
        **{"description": None, **kw},
    )
    return name, report, events


def _hashed_only(events: list[Event]) -> bool:
    return any(isinstance(e, Note) and proofs.PROOF in e.text for e in events)


def _refuse_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a file was read in full")

    monkeypatch.setattr(restore_check, "check_file", refuse)


def test_second_restore_only_hashes_and_is_proven(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = nasty_items() + [{"pk": {"S": f"o{i}"}, **order_item(i)} for i in range(150)]
    source = _backup(db, items, tmp_path / "repo")
    first, report, events = _restore(db, source, tmp_path)
    assert report.proven and not _hashed_only(events)
    record = proofs.load(source.storage, source.prefix)
    assert record is not None and sum(f.items for f in record.files) == len(items)
    assert {f.key for f in record.files} == {f.key for f in source.files}

    _refuse_full_check(monkeypatch)  # the second restore must not read any file in full
    second, again, events = _restore(db, source, tmp_path)
    assert _hashed_only(events)
    assert again.proven and again.backup == report.backup and again.items_written == len(items)
    assert same_items(db.stock_items(second), items)


def test_changed_file_is_refused_before_anything_is_written(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _backup(db, [order_item(i) for i in range(60)], tmp_path / "repo", key=ORDER_KEY)
    _restore(db, source, tmp_path)
    assert proofs.load(source.storage, source.prefix) is not None
    key = source.files[0].key
    data = bytearray(source.storage.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    source.storage.put_bytes(key, bytes(data))
    _refuse_full_check(monkeypatch)  # the hash alone must refuse it
    tables_before = set(db.client.list_tables()["TableNames"])
    with pytest.raises(BackupCorrupt, match=f"{key}.*sha256 mismatch"):
        _restore(db, source, tmp_path)
    assert set(db.client.list_tables()["TableNames"]) == tables_before


def test_a_wrong_record_fails_the_proof(db: Db, tmp_path: Path) -> None:
    """The recorded digest is the backup's side of the proof: one that is wrong is caught by
    the restored table's digest, never taken for a proof."""
    items = [order_item(i) for i in range(40)]
    source = _backup(db, items, tmp_path / "repo", key=ORDER_KEY)
    _restore(db, source, tmp_path)
    key = source.prefix + proofs.PROOF
    doc = orjson.loads(source.storage.get_bytes(key))
    doc["files"][0]["digest"] = f"{int(doc['files'][0]['digest'], 16) ^ 1:064x}"
    source.storage.put_bytes(key, orjson.dumps(doc))
    _, report, events = _restore(db, source, tmp_path)
    assert _hashed_only(events) and not report.proven
    assert report.restored.count == report.backup.count == len(items)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda doc: b"{not json", id="unreadable"),
        pytest.param(lambda doc: orjson.dumps({**doc, "format": 99}), id="unknown-format"),
        pytest.param(
            lambda doc: orjson.dumps({**doc, "files": doc["files"][1:]}), id="file-missing"
        ),
        pytest.param(
            lambda doc: orjson.dumps({**doc, "schema": [["customer", "S"]]}), id="other-schema"
        ),
    ],
)
def test_a_record_that_does_not_apply_is_ignored(
    dynalite: Server, tmp_path: Path, damage: Any
) -> None:
    db = db_for(dynalite)
    items = [order_item(i) for i in range(40)]
    source = _backup(db, items, tmp_path / "repo", key=ORDER_KEY)
    _restore(db, source, tmp_path)
    key = source.prefix + proofs.PROOF
    source.storage.put_bytes(key, damage(orjson.loads(source.storage.get_bytes(key))))
    name, report, events = _restore(db, source, tmp_path)
    assert report.proven and not _hashed_only(events)
    assert same_items(db.stock_items(name), items)
    record = proofs.load(source.storage, source.prefix)  # checked in full, recorded again
    assert record is not None and record.schema == ORDER_KEY


def test_another_key_schema_is_checked_in_full_and_not_recorded(
    dynalite: Server, tmp_path: Path
) -> None:
    db = db_for(dynalite)
    source = _backup(db, [order_item(i) for i in range(30)], tmp_path / "repo", key=ORDER_KEY)
    _restore(db, source, tmp_path)
    before = source.storage.get_bytes(source.prefix + proofs.PROOF)
    schema = KeySchema(attributes=(("customer", "S"),))
    checks = restore_check.check_backup(
        source, schema=schema, workers=2, emit=lambda e: None, table="t"
    )
    assert sum(c.items for c in checks.values()) == 30
    assert source.storage.get_bytes(source.prefix + proofs.PROOF) == before


def test_copy_leaves_the_record_behind(dynalite: Server, tmp_path: Path) -> None:
    """The record is not part of the backup: a copy neither sends it nor takes a record on
    either side for a difference between the two copies."""
    db = db_for(dynalite)
    source = _backup(db, [order_item(i) for i in range(30)], tmp_path / "repo", key=ORDER_KEY)
    dest = open_storage(str(tmp_path / "copy"))
    assert copy_op.copy(source.storage, dest).count("copied") == 1
    _restore(db, source, tmp_path)  # records proof.json at the source only
    again = copy_op.copy(source.storage, dest)
    assert again.count("skipped") == 1 and again.count("failed") == 0
    assert not dest.exists(source.prefix + proofs.PROOF)  # not sent
    _restore(db, open_source(dest, source.prefix, location="copy"), tmp_path)
    source.storage.delete(source.prefix + proofs.PROOF)  # now at the destination only
    again = copy_op.copy(source.storage, dest)
    assert again.count("skipped") == 1 and again.count("failed") == 0


def _forge(storage: Any, prefix: str, key: str, lines: list[bytes]) -> None:
    """Rewrite one data file and every manifest entry of it to match: a backup whose checksums
    all agree but whose items do not (what a writer's bug would leave)."""
    data = gzip.compress(b"".join(line + b"\n" for line in lines))
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    storage.put_bytes(key, data)
    doc = orjson.loads(storage.get_bytes(prefix + "hippolyte.json"))
    for f in doc["files"]:
        if prefix + f["key"] == key:
            f.update(
                sha256=hashlib.sha256(data).hexdigest(), md5=md5, size=len(data),
                itemCount=len(lines),
            )  # fmt: skip
    storage.put_bytes(prefix + "hippolyte.json", orjson.dumps(doc))
    rows = [orjson.loads(r) for r in storage.get_bytes(prefix + "manifest-files.json").splitlines()]
    for r in rows:
        if r["dataFileS3Key"] == key:
            r.update(md5Checksum=md5, itemCount=len(lines))
    storage.put_bytes(
        prefix + "manifest-files.json", b"".join(orjson.dumps(r) + b"\n" for r in rows)
    )


def test_verify_items_records_the_check_and_finds_what_verify_does_not(
    dynalite: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = db_for(dynalite)
    repo = tmp_path / "repo"
    source = _backup(db, [order_item(i) for i in range(50)], repo, key=ORDER_KEY)
    ref = source.prefix.rstrip("/")
    code, out, _ = run(capsys, "verify", ref, "--repo", str(repo), "--items", "--json")
    assert code == 0 and orjson.loads(out)[0]["ok"]
    assert proofs.load(source.storage, source.prefix) is not None
    _refuse_full_check(monkeypatch)  # the backup's first restore only hashes its files
    _, report, events = _restore(db, source, tmp_path)
    assert report.proven and _hashed_only(events)
    monkeypatch.undo()

    key = source.files[0].key
    lines = gzip.decompress(source.storage.get_bytes(key)).splitlines()
    lines[2] = b'{"Item":{"customer":{"S":"c"},"order":{"N":"1e999"}}}'  # beyond DynamoDB's range
    _forge(source.storage, source.prefix, key, lines)
    source.storage.delete(source.prefix + proofs.PROOF)
    code, out, _ = run(capsys, "verify", ref, "--repo", str(repo), "--json")
    assert code == 0  # every checksum agrees, every line is an item: verify alone passes
    code, out, _ = run(capsys, "verify", ref, "--repo", str(repo), "--items", "--json")
    (found,) = orjson.loads(out)
    assert code == 4 and not found["ok"]
    assert f"{key}" in found["problems"][0] and "line 3" in found["problems"][0]
    assert not source.storage.exists(source.prefix + proofs.PROOF)  # nothing recorded


def test_verify_items_reads_each_file_once_and_still_catches_a_changed_byte(
    dynalite: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verify --items leaves the files to the check pass (read once, not twice); a byte
    changed at rest is still found, recorded or not."""
    from hippolyte.repo import verify as verify_mod

    db = db_for(dynalite)
    repo = tmp_path / "repo"
    source = _backup(db, [order_item(i) for i in range(50)], repo, key=ORDER_KEY)
    ref = source.prefix.rstrip("/")
    reads: list[str] = []
    real = verify_mod._check_file
    monkeypatch.setattr(
        verify_mod, "_check_file", lambda s, r, f: reads.append(f.key) or real(s, r, f)
    )
    code, out, _ = run(capsys, "verify", ref, "--repo", str(repo), "--items", "--json")
    (found,) = orjson.loads(out)
    assert code == 0 and found["items"] == 50 and found["files"] == len(source.files)
    assert reads == []  # verify itself read no data file
    key = source.files[-1].key
    data = bytearray(source.storage.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    source.storage.put_bytes(key, bytes(data))
    code, out, _ = run(capsys, "verify", ref, "--repo", str(repo), "--items", "--json")
    (found,) = orjson.loads(out)
    assert code == 4 and "sha256 mismatch" in found["problems"][0]


# -- the read-back: pages read here, digested in workers ---------------------------------------


def _read_back(db: Db, table: str, *, processes: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The proof's read-back of ``table``, its pages digested by ``processes`` processes
    (threads for one)."""
    from hippolyte.adapters import dynamodb

    monkeypatch.setattr(restore_check, "PROCESS_MIN_ITEMS", 0)
    monkeypatch.setattr(restore_ops, "cpus", lambda: processes)
    return restore_ops.table_digest(
        db.conn,
        table=table,
        info=dynamodb.describe(db.client, table),
        workers=3,
        stop=threading.Event(),
        on_demand_units=4000.0,
    )


def test_the_read_back_in_workers_equals_botocores_and_the_items_digest(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct read-back (pages read over our own calls, digested in worker processes) and
    the one through botocore (taken behind a proxy) both give the digest of the items as
    written, on both servers (which return attributes in different orders and numbers spelled
    their own way), over several pages of each of three segments."""
    from hippolyte.adapters import dynamodb_direct
    from hippolyte.adapters.dynamodb import encode_item
    from hippolyte.core.proof import digest_of

    items = nasty_items() + [
        {
            "pk": {"S": f"k{i:04d}"},
            "tags": {"SS": ["b", "a", f"c{i}"]},
            "scores": {"NS": ["10", "9.50", "-1", str(1000 + i)]},
            "n": {"N": "1.50"},
            "doc": {"M": {"z": {"L": [{"NS": ["2", "1"]}, {"BS": [b"b", b"a"]}]}}},
            "pad": {"S": "x" * 3000},
        }
        for i in range(500)
    ]
    table = db.table(items=items)
    expected = digest_of([encode_item(i) for i in items])
    direct = _read_back(db, table, processes=2, monkeypatch=monkeypatch)
    monkeypatch.setattr(dynamodb_direct, "open_caller", lambda conn, client: None)
    through_botocore = _read_back(db, table, processes=1, monkeypatch=monkeypatch)
    assert direct.count == through_botocore.count == len(items)
    assert direct.hex == through_botocore.hex == expected.hex


def test_faults_of_the_read_back_are_retried(
    dynalite: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttling, a 5xx, a dropped connection, a body that fails its CRC32 and one that is
    not JSON, each met by the proof's read-back (its pages digested in worker processes): the
    page is read again and the restore is proven."""
    from hippolyte.adapters import aws
    from tests.support.faults import FaultProxy

    db = db_for(dynalite)
    items = [order_item(i) for i in range(300)]
    source = _backup(db, items, tmp_path / "repo", key=ORDER_KEY)
    monkeypatch.setattr(restore_check, "PROCESS_MIN_ITEMS", 0)
    monkeypatch.setattr(restore_check, "cpus", lambda: 2)
    monkeypatch.setattr(restore_ops, "cpus", lambda: 2)  # the proof's processes
    faults = ["throttle", "500", "drop", "crc", "garbage"]
    schedule = [step for fault in faults for step in ("ok", fault)]
    with FaultProxy(upstream=dynalite.endpoint_url, operation="Scan", schedule=schedule) as proxy:
        name = f"restored-{time.monotonic_ns()}"
        report = restore(
            source,
            conn=aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url),
            table=name,
            params=RestoreParams(state_dir=tmp_path / "state", workers=3),
            emit=lambda e: None,
            description=None,
        )
    assert report.proven and same_items(db.stock_items(name), items)
    assert all(proxy.counts[f] >= 1 for f in faults), proxy.counts


def test_the_digests_processes_import_only_what_they_run() -> None:
    """The proof's processes are forked from a server that imported the digests' module and
    the main module only; the console script's main module does not import the CLI (so
    neither the server nor a child imports boto3 or the CLI to digest pages)."""
    import subprocess
    import sys

    from hippolyte.core.proof import digest_of, digest_of_answer
    from hippolyte.engines import proof_scan
    from hippolyte.engines.pool import cpu_pool

    heavy = "[m for m in __import__('sys').modules if m.startswith(('boto', 'hippolyte.cli'))]"
    script = (
        "import hippolyte.__main__, sys; print(" + heavy.replace("__import__('sys')", "sys") + ")"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )
    answer = b'{"Items":[{"a":{"S":"x"}},{"a":{"N":"1.50"}}],"Count":2,"ScannedCount":2}'
    with cpu_pool(2, threads=1, imports=proof_scan.POOL_IMPORTS) as pool:
        assert pool.submit(digest_of_answer, answer).result() == digest_of(
            [b'{"a":{"S":"x"}}', b'{"a":{"N":"1.5"}}']
        )
        assert pool.submit(eval, heavy).result() == []
