"""backup --incremental: DynamoDB's incremental exports committed as change sets.

moto accepts ExportType INCREMENTAL_EXPORT but writes a full export, so the exports read here
are fixtures of the layout AWS documents (tests/incremental_fixtures.py): read, checked (md5,
counts, every line) and committed; replayed on a base they give the expected state. The
engine runs end to end on moto (DynamoDB and S3) with the export step wrapped: moto's answer
to the real request, then the fixture written where DynamoDB would write it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.errors import BackupCorrupt, ConfigError
from hippolyte.engines import incremental as engine
from hippolyte.formats import native
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.incremental import (
    CLOCK_MARGIN,
    chain_end,
    incremental_backup,
    next_window,
    windows,
)
from hippolyte.repo import changes
from tests.helpers import db_for, run
from tests.incremental_fixtures import Write, item, replay, write_export
from tests.support.servers import Server

T0 = dt.datetime(2026, 11, 28, 0, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
BASE = [item("a1", 1), item("a2", 2), item("a3", 3)]


def _window_writes(start: dt.datetime) -> tuple[list[list[Write]], list[list[Write]]]:
    """Two windows: NEW_AND_OLD_IMAGES (update, insert, delete) in two data files, then
    NEW_IMAGE (an update, a Keys-only delete)."""
    first = [
        [Write(at=start + H, pk="a1", new=item("a1", 10), old=item("a1", 1))],
        [
            Write(at=start + 2 * H, pk="a4", new=item("a4", 4)),
            Write(at=start + 3 * H, pk="a2", new=None, old=item("a2", 2)),
        ],
    ]
    second = [
        [
            Write(at=start + 25 * H, pk="a4", new=item("a4", 40, tag={"SS": ["x"]})),
            Write(at=start + 26 * H, pk="a3", new=None, old=item("a3", 3)),
        ]
    ]
    return first, second


EXPECTED = {"a1": item("a1", 10), "a4": item("a4", 40, tag={"SS": ["x"]})}


def _state(storage: Storage, table: str) -> dict[str, Any]:
    read = [
        c for s in changes.change_sets(storage, table) for c in changes.read_changes(storage, s)
    ]
    return {orjson.loads(k)["S"]: v for k, v in replay(BASE, read).items()}


# -- windows: pure ------------------------------------------------------------------------------


def test_windows_are_at_most_24_hours_at_least_15_minutes_and_chain_exactly() -> None:
    now = T0 + 50 * H + 40 * dt.timedelta(minutes=1)
    got = windows(start=T0, now=now)
    assert [(w.start, w.end) for w in got] == [
        (T0, T0 + 24 * H),
        (T0 + 24 * H, T0 + 48 * H),
        (T0 + 48 * H, (now - CLOCK_MARGIN).replace(microsecond=0)),
    ]
    assert all(a.end == b.start for a, b in zip(got, got[1:], strict=False))
    assert windows(start=T0, now=T0 + CLOCK_MARGIN + dt.timedelta(minutes=14)) == []
    assert next_window(start=T0, now=T0 + CLOCK_MARGIN + dt.timedelta(minutes=15)) is not None
    # 24 h and 10 minutes: one full window; the 10 minutes left wait for the next run
    assert len(windows(start=T0, now=T0 + 24 * H + CLOCK_MARGIN + dt.timedelta(minutes=10))) == 1


# -- reading, checking, committing the documented layout ----------------------------------------


def test_an_incremental_export_is_read_from_its_manifests_and_the_shared_data_folder(
    tmp_path: Path,
) -> None:
    storage = open_storage(str(tmp_path))
    first, second = _window_writes(T0)
    one = write_export(storage, "x/", start=T0, end=T0 + 24 * H, files=first, bucket_prefix="p/")
    two = write_export(
        storage, "x/", start=T0 + 24 * H, end=T0 + 48 * H, files=second, view="NEW_IMAGE"
    )
    read = native.incremental(storage, one.folder, location="one")
    assert (read.start, read.end, read.view, read.item_count) == (
        T0,
        T0 + 24 * H,
        "NEW_AND_OLD_IMAGES",
        3,
    )
    assert [f.key for f in read.files] == one.data_keys  # not the other export's files
    assert read.export_arn == one.export_arn
    other = native.incremental(storage, two.folder, location="two")
    assert other.view == "NEW_IMAGE" and [f.key for f in other.files] == two.data_keys
    with pytest.raises(ConfigError, match="INCREMENTAL_EXPORT"):  # a full export's restore path
        native.detect(storage, one.folder, location="one")


def test_exports_are_committed_as_change_sets_whose_replay_is_the_expected_state(
    tmp_path: Path,
) -> None:
    storage = open_storage(str(tmp_path))
    first, second = _window_writes(T0)
    for start, files, view in (
        (T0, first, "NEW_AND_OLD_IMAGES"),
        (T0 + 24 * H, second, "NEW_IMAGE"),
    ):
        w = write_export(storage, "s/", start=start, end=start + 24 * H, files=files, view=view)
        found = native.incremental(storage, w.folder, location="s")
        engine.commit(storage, table="orders", export=found, export_arn=w.export_arn)
    sets = changes.change_sets(storage, "orders")
    assert [(s.start, s.end) for s in sets] == [
        (changes.micros(T0), changes.micros(T0 + 24 * H)),
        (changes.micros(T0 + 24 * H), changes.micros(T0 + 48 * H)),
    ]
    assert sets[0].source["kind"] == "incremental-export" and sets[0].count == 3
    summary = orjson.loads(storage.get_bytes(sets[1].prefix + "manifest-summary.json"))
    assert summary["outputView"] == "NEW_IMAGE"
    keys_only = list(changes.read_changes(storage, sets[1]))[1]
    assert keys_only.new is None and keys_only.old is None  # NEW_IMAGE's delete: Keys alone
    assert _state(storage, "orders") == EXPECTED


def _bad(storage: Storage, key: str, mutate: Any) -> None:
    lines = gzip.decompress(storage.get_bytes(key)).splitlines()
    storage.put_bytes(key, gzip.compress(b"\n".join(mutate(lines)) + b"\n"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("md5", r"data/\w+\.json\.gz: its md5 differs from the export's manifest"),
        ("count", r"data/\w+\.json\.gz: 1 lines, the export's manifest says 2"),
        ("line", r"data/\w+\.json\.gz line 2: not a change line"),
    ],
)
def test_a_bad_file_commits_nothing_and_is_named(tmp_path: Path, damage: str, message: str) -> None:
    storage = open_storage(str(tmp_path))
    first, _ = _window_writes(T0)
    w = write_export(storage, "s/", start=T0, end=T0 + 24 * H, files=first)
    found = native.incremental(storage, w.folder, location="s")
    key = w.data_keys[1]  # the second file, after a good one was already read
    if damage == "md5":  # same lines, other bytes: only the checksum can tell
        storage.put_bytes(key, gzip.compress(gzip.decompress(storage.get_bytes(key)), 1))
    elif damage == "count":
        _bad(storage, key, lambda lines: lines[:1])
        # the md5 of the rewritten file is what the manifest says, so only the count differs
        found = native.incremental(storage, w.folder, location="s")
        found = _with_md5(found, storage)
    else:
        _bad(storage, key, lambda lines: [lines[0], b'{"Keys": '])
    with pytest.raises(BackupCorrupt, match=message):
        engine.commit(storage, table="orders", export=found, export_arn=w.export_arn)
    assert changes.change_sets(storage, "orders") == []
    assert list(storage.list("orders/")) == []  # nothing left of the set, committed or not


def _with_md5(found: native.IncrementalExport, storage: Storage) -> native.IncrementalExport:
    from dataclasses import replace

    from hippolyte.repo import datafile

    def fixed(f: Any) -> Any:
        sums = datafile.Checksums()
        sums.update(storage.get_bytes(f.key))
        return replace(f, md5=sums.md5)

    return replace(found, files=[fixed(f) for f in found.files])


def test_a_manifest_that_lies_is_refused(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    first, _ = _window_writes(T0)
    w = write_export(storage, "s/", start=T0, end=T0 + 24 * H, files=first)
    storage.delete(w.data_keys[0])
    with pytest.raises(BackupCorrupt, match=r"manifest-files.json line 1: data file .* missing"):
        native.incremental(storage, w.folder, location="s")
    summary = orjson.loads(storage.get_bytes(w.folder + "manifest-summary.json"))
    storage.put_bytes(w.folder + "manifest-summary.json", orjson.dumps({**summary, "version": "x"}))
    with pytest.raises(BackupCorrupt, match="version 'x'"):
        native.incremental(storage, w.folder, location="s")


# -- the engine on moto: DynamoDB's API and S3 --------------------------------------------------


@pytest.fixture
def on_moto(moto_server: Server, make_s3_bucket: Any) -> Any:
    return make_s3_bucket(moto_server)


class FakeExports:
    """moto's ExportTableToPointInTime, then the documented incremental layout written where
    DynamoDB would have written it (moto writes a full export): one per call, or ``bad``."""

    def __init__(self, storage: Storage, *, base: dt.datetime) -> None:
        self.storage, self.base = storage, base
        self.requests: list[dict[str, Any]] = []
        self.damage: dict[int, str] = {}  # call number -> "md5" | "nothing"

    def __call__(self, client: Any, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        desc: dict[str, Any] = client.export_table_to_point_in_time(**request)["ExportDescription"]
        damage = self.damage.get(len(self.requests))
        if damage == "nothing":
            return desc
        spec = request["IncrementalExportSpecification"]
        start, end = spec["ExportFromTime"], spec["ExportToTime"]
        first, second = _window_writes(self.base)
        files = [[w for f in first + second for w in f if start <= w.at < end]]
        root = getattr(self.storage, "prefix", "")
        root = f"{root}/" if root else ""
        stage = request["S3Prefix"].removeprefix(root) + "/"
        w = write_export(
            self.storage,
            stage,
            start=start,
            end=end,
            files=files,
            bucket_prefix=root,
            eid=desc["ExportArn"].rsplit("/", 1)[-1],
        )
        if damage == "md5":
            key = w.data_keys[0]
            body = gzip.decompress(self.storage.get_bytes(key))
            self.storage.put_bytes(key, gzip.compress(body, 1))  # same lines, other bytes
        return desc


def _pitr_table(moto_server: Server) -> tuple[str, Any]:
    db = db_for(moto_server)
    table = db.table(items=BASE, prefix="inc")
    db.client.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    return table, db


def _full_backup(db: Any, table: str, storage: Storage, *, at: dt.datetime) -> None:
    (result,) = backup_tables(
        [table],
        conn=db.conn,
        storage=storage,
        params=BackupParams(),
        emit=lambda e: None,
        clock=lambda: at,
    )
    assert result.ok, result.error


@pytest.mark.servers
def test_the_engine_exports_windows_into_s3_and_commits_a_chain(
    moto_server: Server, on_moto: Any
) -> None:
    table, db = _pitr_table(moto_server)
    storage = open_storage(f"{on_moto.url}/repo")
    base = dt.datetime.now(dt.UTC) + H  # after PITR was turned on: exportable
    _full_backup(db, table, storage, at=base)
    start = base.replace(microsecond=0)
    assert chain_end(storage, table).at == start  # type: ignore[union-attr]
    fake = FakeExports(storage, base=start)
    now = start + 50 * H
    kwargs: dict[str, Any] = {
        "conn": db.conn,
        "storage": storage,
        "emit": lambda e: None,
        "poll_s": 0.05,
    }
    (result,) = incremental_backup([table], clock=lambda: now, exporter=fake, **kwargs)
    assert result.ok, result.error
    assert [(s["from"], s["to"]) for s in result.sets] == [
        (w.start.isoformat(), w.end.isoformat()) for w in windows(start=start, now=now)
    ]
    assert len(result.sets) == 3 and result.changes == 5
    # the request as sent to (and accepted by) moto; moto keeps its ExportType
    spec = fake.requests[0]["IncrementalExportSpecification"]
    assert fake.requests[0]["ExportType"] == "INCREMENTAL_EXPORT"
    assert spec == {
        "ExportFromTime": start,
        "ExportToTime": start + 24 * H,
        "ExportViewType": "NEW_AND_OLD_IMAGES",
    }
    assert fake.requests[0]["S3Bucket"] == on_moto.name
    assert fake.requests[0]["S3Prefix"].startswith(f"repo/{table}/@changes/@staging/")
    exports = db.client.list_exports(TableArn=fake.requests[0]["TableArn"])["ExportSummaries"]
    assert {e["ExportType"] for e in exports} == {"INCREMENTAL_EXPORT"} and len(exports) == 3
    sets = changes.change_sets(storage, table)
    assert [s.source["exportArn"] for s in sets] == [e["ExportArn"] for e in exports]
    assert all(a.end == b.start for a, b in zip(sets, sets[1:], strict=False))
    assert _state(storage, table) == EXPECTED
    assert list(storage.list(f"{table}/@changes/@staging/")) == []  # staging deleted
    # a second run at the same time: less than 15 minutes left, nothing done
    (again,) = incremental_backup([table], clock=lambda: now, exporter=fake, **kwargs)
    assert again.ok and again.sets == [] and "less than 15 minutes" in (again.note or "")
    assert len(fake.requests) == 3


@pytest.mark.servers
def test_a_failed_window_leaves_a_visible_end_and_the_next_run_retries_it(
    moto_server: Server, on_moto: Any
) -> None:
    table, db = _pitr_table(moto_server)
    storage = open_storage(f"{on_moto.url}/repo")
    start = (dt.datetime.now(dt.UTC) + H).replace(microsecond=0)
    _full_backup(db, table, storage, at=start)
    fake = FakeExports(storage, base=start)
    fake.damage = {2: "md5", 3: "nothing"}
    now = start + 50 * H
    kwargs: dict[str, Any] = {
        "conn": db.conn,
        "storage": storage,
        "emit": lambda e: None,
        "poll_s": 0.05,
    }
    (result,) = incremental_backup([table], clock=lambda: now, exporter=fake, **kwargs)
    assert not result.ok and len(result.sets) == 1
    assert "md5 differs" in (result.error or "")
    assert f"starts again from {(start + 24 * H).isoformat()}" in (result.error or "")
    assert [s.end for s in changes.change_sets(storage, table)] == [changes.micros(start + 24 * H)]
    assert list(storage.list(f"{table}/@changes/@staging/")) == []
    (retried,) = incremental_backup([table], clock=lambda: now, exporter=fake, **kwargs)
    assert not retried.ok and "wrote no manifest-summary.json" in (retried.error or "")
    assert fake.requests[2]["IncrementalExportSpecification"]["ExportFromTime"] == start + 24 * H
    (done,) = incremental_backup([table], clock=lambda: now, exporter=fake, **kwargs)
    assert done.ok and len(done.sets) == 2
    sets = changes.change_sets(storage, table)
    assert all(a.end == b.start for a, b in zip(sets, sets[1:], strict=False))
    assert _state(storage, table) == EXPECTED


@pytest.mark.servers
def test_a_chain_older_than_pitr_is_a_gap_and_no_backup_is_refused(
    moto_server: Server, on_moto: Any
) -> None:
    table, db = _pitr_table(moto_server)
    storage = open_storage(f"{on_moto.url}/repo")
    kwargs: dict[str, Any] = {"conn": db.conn, "storage": storage, "emit": lambda e: None}
    (none,) = incremental_backup([table], **kwargs)
    assert not none.ok and "no full backup" in (none.error or "")
    time.sleep(1.1)  # moto's earliest restorable time is when PITR was turned on
    _full_backup(db, table, storage, at=dt.datetime.now(dt.UTC) - 2 * H)
    (gap,) = incremental_backup([table], **kwargs)
    assert not gap.ok and "a gap" in (gap.error or "") and "earliest restorable" in gap.error


@pytest.mark.servers
def test_the_cli_refuses_a_local_repository_and_reports_pitr_off_and_too_soon(
    moto_server: Server, on_moto: Any, local_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, db = _pitr_table(moto_server)
    common = ["--endpoint-url", moto_server.endpoint_url, "--json"]
    code, out, err = run(
        capsys, "backup", "--incremental", table, "--repo", str(local_repo), *common
    )
    assert code != 0 and "incremental exports need an s3:// repository" in err
    assert "Traceback" not in err and not local_repo.exists()
    repo = f"{on_moto.url}/cli"
    time.sleep(1.1)  # the chain starts at the backup's second, PITR's must be before it
    code, out, err = run(capsys, "backup", table, "--repo", repo, *common)
    assert code == 0, err
    code, out, err = run(capsys, "backup", "--incremental", table, "--repo", repo, *common)
    assert code == 0, err
    (result,) = orjson.loads(out)["results"]
    assert result["sets"] == [] and "less than 15 minutes" in result["note"]
    off = db.table(prefix="inc")
    code, out, err = run(capsys, "backup", "--incremental", off, "--repo", repo, *common)
    assert code == 1 and "point-in-time recovery is off" in err
    code, out, err = run(
        capsys, "backup", "--incremental", "--at", "2026-01-01", table, "--repo", repo
    )
    assert code == 2


@pytest.mark.servers
def test_incremental_all_exports_the_selected_pitr_tables_and_leaves_out_the_others(
    moto_server: Server, on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, db = _pitr_table(moto_server)
    off = db.table(prefix="inc")
    time.sleep(1.1)  # the chain starts at the backup's second, PITR's must be before it
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "{on_moto.url}/all"\n[[targets]]\nregion = "us-east-1"\n'
        f'endpoint_url = "{moto_server.endpoint_url}"\n'
        f'[selection]\ninclude = ["{table}$", "{off}$"]\n'
    )
    code, out, err = run(capsys, "--config", str(cfg), "backup", table)
    assert code == 0, err
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--incremental", "--all")
    assert code == 0, err
    assert "nothing to export yet" in out and "recovery is off" in out
    code, out, err = run(capsys, "--config", str(cfg), "backup", "--incremental", "--all", "--json")
    results = {r["table"]: r for r in orjson.loads(out)["results"]}
    assert results[table]["ok"] and results[table]["sets"] == []
    assert results[off]["ok"] and "left out" in results[off]["note"]
