"""The change-set format: written and read back exactly, committed last, checked on read."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import BackupCorrupt
from hippolyte.repo import changes
from hippolyte.repo.changes import Change, ChangeSetWriter

T0 = dt.datetime(2026, 11, 28, 14, 3, 7, 250_000, tzinfo=dt.UTC)


def change(i: int, *, deleted: bool = False) -> Change:
    keys = orjson.dumps({"pk": {"S": f"k{i % 3}"}})
    new = None if deleted else orjson.dumps({"pk": {"S": f"k{i % 3}"}, "v": {"N": str(i)}})
    return Change(stamp=changes.micros(T0) + i, keys=keys, new=new)


def test_a_change_set_round_trips_in_order_and_is_invisible_until_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes, "FILE_MAX_RAW_BYTES", 400)  # several files
    storage = open_storage(str(tmp_path))
    writer = ChangeSetWriter(storage, table="orders", start=T0)
    written = [change(i, deleted=i % 5 == 4) for i in range(40)]
    for c in written:
        writer.add(c)
    assert changes.change_sets(storage, "orders") == []  # not committed yet
    end = T0 + dt.timedelta(seconds=60)
    committed = writer.commit(end=end, source={"kind": "test"})
    assert len(committed.files) > 2
    (listed,) = changes.change_sets(storage, "orders")
    assert listed == committed
    assert (listed.start, listed.end) == (changes.micros(T0), changes.micros(end))
    assert list(changes.read_changes(storage, listed)) == written
    summary = orjson.loads((tmp_path / listed.prefix / "manifest-summary.json").read_bytes())
    assert summary["version"] == "2023-08-01" and summary["exportType"] == "INCREMENTAL_EXPORT"
    first = gzip.decompress((tmp_path / listed.prefix / listed.files[0].key).read_bytes())
    line = orjson.loads(first.splitlines()[0])
    assert line["Metadata"]["WriteTimestampMicros"]["N"] == str(changes.micros(T0))
    assert "NewImage" in line and "Keys" in line


def test_a_corrupt_change_file_is_named_by_file_and_line(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    writer = ChangeSetWriter(storage, table="orders", start=T0)
    for i in range(5):
        writer.add(change(i))
    committed = writer.commit(end=T0 + dt.timedelta(seconds=1), source={})
    path = tmp_path / committed.prefix / committed.files[0].key
    lines = gzip.decompress(path.read_bytes()).splitlines()
    lines[2] = b'{"Metadata":{},"Keys":{}}'
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(BackupCorrupt, match=r"00000.json.gz line 3: not a change line"):
        list(changes.read_changes(storage, committed))


def test_verify_all_reads_every_change_set_and_names_a_bad_line(tmp_path: Path) -> None:
    from hippolyte.repo.verify import verify_all

    storage = open_storage(str(tmp_path))
    writer = ChangeSetWriter(storage, table="orders", start=T0)
    for i in range(5):
        writer.add(change(i))
    committed = writer.commit(end=T0 + dt.timedelta(seconds=1), source={})
    (report,) = verify_all(storage)
    assert report.ok and report.items == 5 and str(report.ref).endswith(committed.id)
    path = tmp_path / committed.prefix / committed.files[0].key
    lines = gzip.decompress(path.read_bytes()).splitlines()
    lines[3] = b"not json"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    (report,) = verify_all(storage)
    assert not report.ok and "00000.json.gz line 4: not a change line" in report.problems[0]
