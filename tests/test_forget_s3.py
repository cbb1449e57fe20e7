"""``hippolyte forget`` on S3 (moto and ``rclone serve s3``): daily backups (a year on rclone,
five months on the slower moto) pruned with GFS rules exactly as the dry run and
``core.retention.decide`` say; a forget killed with SIGKILL mid-removal leaves every backup
either intact or without ``_SUCCESS`` (listed incomplete, refused as a source), and the next
forget removes the leftovers and the rest, ending where an uninterrupted forget ends (the
dry run's keeps, byte for byte); a third removes nothing."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from conftest import S3_SERVERS, S3Bucket

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.errors import BackupCorrupt
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.core.retention import Backup, KeepPolicy, decide
from hippolyte.engines.segment import DataFileWriter
from hippolyte.formats.open import open_source
from hippolyte.repo import catalog, manifest, writer
from tests.helpers import run
from tests.support.servers import Server, s3_client
from tests.test_forget import DESC, NOW

RULES = ("--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12")
TABLE = "orders"


def one_day(storage: Storage, day: int) -> str:
    """Day ``day`` of ``test_forget.a_year``: the same id, item and commit."""
    at = NOW - dt.timedelta(days=day, hours=11, minutes=50)
    ref = BackupRef(repo=storage.url, table=TABLE, backup_id=manifest.backup_id(at))
    out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(0, 0))
    out.write_items([orjson.dumps({"pk": {"S": f"d{day}"}})])
    writer.commit(
        storage,
        ref=ref,
        info=TableInfo.from_description(DESC),
        extras={},
        files=[out.commit()],
        start=at,
        end=at + dt.timedelta(minutes=5),
        run={},
        consumed=0.0,
        source={},
    )
    return ref.backup_id


def daily(storage: Storage, days: int) -> list[str]:
    """The newest ``days`` of ``a_year``, written by 4 threads (the S3 servers answer a
    request in 2-7 ms, five per backup)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda day: one_day(storage, day), range(days)))


def objects(bucket: S3Bucket, *, locks: bool = False) -> dict[str, str]:
    """Every object of the bucket and its ETag (without the run lock's ``@locks/``)."""
    pages = s3_client(bucket.server).get_paginator("list_objects_v2").paginate(Bucket=bucket.name)
    found = {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", ())}
    return {k: e for k, e in found.items() if locks or not k.startswith("@locks/")}


def by_backup(keys: dict[str, str]) -> dict[str, dict[str, str]]:
    folders: dict[str, dict[str, str]] = {}
    for key, etag in keys.items():
        if key.startswith(f"{TABLE}/"):
            folders.setdefault(key.split("/")[1], {})[key] = etag
    return folders


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return orjson.loads(out)


def actions(report: Any) -> dict[str, str]:
    return {e["id"]: e["action"] for e in report["entries"]}


def decision(ids: list[str]) -> dict[str, str]:
    """What ``core.retention.decide`` says of the year under RULES."""
    policy = KeepPolicy(keep_daily=7, keep_weekly=4, keep_monthly=12)
    listed = [Backup(TABLE, i, manifest.parse_backup_id(i), True) for i in ids]
    return {e.id: e.action for e in decide(listed, None, policy, now=NOW).entries}


@pytest.mark.parametrize(
    ("server", "days", "kept"),
    [
        # moto takes ~6 ms a request: 5 months there (every rule still at work), a year on rclone
        pytest.param("moto_server", 150, 7 + 3 + 4, marks=pytest.mark.servers),
        pytest.param("rclone_s3", 365, 7 + 3 + 11, marks=pytest.mark.servers),
    ],
)
def test_daily_backups_on_s3_pruned_with_gfs_rules_through_a_kill(
    server: str,
    days: int,
    kept: int,
    request: pytest.FixtureRequest,
    make_s3_bucket: Callable[[Server], S3Bucket],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = make_s3_bucket(request.getfixturevalue(server))
    ids = daily(open_storage(bucket.url), days)
    before = objects(bucket)
    assert sorted(by_backup(before)) == sorted(ids) and len(before) == 5 * days
    dry = cli(capsys, "forget", *RULES, "--dry-run", "--repo", bucket.url)
    assert objects(bucket) == before  # a dry run removes nothing
    assert actions(dry) == decision(ids)
    keep = {i for i, a in actions(dry).items() if a == "keep"}
    # the 7 newest days, 3 more weeks (the newest week's is a daily one), the other months
    assert max(ids) in keep and len(keep) == kept
    pruned = {k: e for k, e in before.items() if k.split("/")[1] in keep}

    # killed with SIGKILL once it removed a few objects
    forget = subprocess.Popen(
        [sys.executable, "-m", "hippolyte", "forget", *RULES, "--repo", bucket.url, "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(objects(bucket)) > len(before) - 12 and forget.poll() is None:
            assert time.monotonic() < deadline, "forget removed nothing in 60 s"
            time.sleep(0.05)
        os.kill(forget.pid, signal.SIGKILL)
    finally:
        forget.kill()  # a no-op once killed; never left running when the test fails
        code = forget.wait()
    assert code == -signal.SIGKILL, "forget ended before it was killed"
    left = objects(bucket, locks=True)
    assert any(k.startswith("@locks/") for k in left)  # the killed holder's lock stays
    folders = by_backup(left)
    assert keep < folders.keys() < set(ids)  # killed after it removed some, before the end
    storage = open_storage(bucket.url)
    whole = by_backup(before)
    for bid, files in folders.items():
        prefix = f"{TABLE}/{bid}/"
        if prefix + manifest.SUCCESS in files:
            assert files == whole[bid], f"{bid} has its _SUCCESS but lost files"
            continue
        # never offered: listed as incomplete, refused as a source
        assert files.items() < whole[bid].items() and bid not in keep
        ref = BackupRef(repo=storage.url, table=TABLE, backup_id=bid)
        assert not catalog.summary(storage, ref).complete
        with pytest.raises(BackupCorrupt, match="incomplete"):
            open_source(storage, prefix, location=bid)
    assert sorted(catalog.backup_ids(storage, TABLE)) == sorted(folders)

    # the next forget removes the leftovers and the rest: the uninterrupted end state
    again = cli(capsys, "forget", *RULES, "--repo", bucket.url)
    assert {i for i, a in actions(again).items() if a == "keep"} == keep
    assert objects(bucket) == pruned
    last = cli(capsys, "forget", *RULES, "--repo", bucket.url)  # idempotent
    assert actions(last) == dict.fromkeys(keep, "keep") and last["removedFiles"] == 0
    assert objects(bucket) == pruned


@pytest.mark.parametrize("server", ["local", *S3_SERVERS])
def test_completeness_from_one_listing_stops_at_the_tables_other_folders(
    server: str,
    request: pytest.FixtureRequest,
    make_s3_bucket: Callable[[Server], S3Bucket],
    local_repo: Any,
) -> None:
    url = (
        str(local_repo)
        if server == "local"
        else make_s3_bucket(request.getfixturevalue(server)).url
    )
    storage = open_storage(url)
    for key in (
        "orders/2026-01-01-00-00-00/_SUCCESS",
        "orders/2026-01-01-00-00-00/data/00000-0000.json.gz",
        "orders/2026-01-02-00-00-00/_started",  # incomplete
        "orders/2026-01-03-00-00-00/data/00000-0000.json.gz",  # incomplete, no _started
        "orders/!odd/_SUCCESS",  # sorts first: not an id
        "orders/@changes/2026-01-01-00-00-00/_SUCCESS",  # sorts after every id
        "orders-2/2026-01-04-00-00-00/_SUCCESS",  # another table
    ):
        storage.put_bytes(key, b"")
    assert catalog.completeness(storage, "orders") == {
        "2026-01-01-00-00-00": True,
        "2026-01-02-00-00-00": False,
        "2026-01-03-00-00-00": False,
    }
