"""Backups nothing can lose by accident: S3 Object Lock on every object written (moto enforces
it), forget keeping what a lock protects, and append-only repositories."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import orjson
import pytest

from hippolyte.adapters.storage import open_storage
from hippolyte.core.errors import RepositoryError
from hippolyte.repo import catalog
from tests.helpers import db_for, run
from tests.support.servers import Server, s3_client

pytestmark = pytest.mark.servers


def _backup(capsys: pytest.CaptureFixture[str], cfg: Path, table: str, dynalite: Server) -> Any:
    code, out, err = run(
        capsys, "--config", str(cfg), "backup", table,
        "--endpoint-url", dynalite.endpoint_url, "--json",
    )  # fmt: skip
    return code, out, err


@pytest.fixture
def locked_bucket(moto_server: Server, use_s3: Callable[[Server], None]) -> str:
    use_s3(moto_server)
    name = f"locked-{uuid.uuid4().hex[:10]}"
    s3_client(moto_server).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_every_object_is_locked_and_forget_keeps_what_a_lock_protects(
    dynalite: Server,
    moto_server: Server,
    locked_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3 = s3_client(moto_server)
    table = db_for(dynalite).table(items=[{"pk": {"S": f"k{i}"}} for i in range(40)])
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(
        f'repository = "s3://{locked_bucket}/nightly"\n'
        '[object_lock]\nmode = "GOVERNANCE"\ndays = 2\n'
    )
    began = dt.datetime.now(dt.UTC)
    for _ in range(2):
        code, out, err = _backup(capsys, cfg, table, dynalite)
        assert code == 0, err
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=locked_bucket, Prefix=f"nightly/{table}/"
        )
        for o in page.get("Contents", ())
    ]
    assert any(k.endswith("/_SUCCESS") for k in keys) and any("/data/" in k for k in keys)
    for key in keys:  # data, manifests and _SUCCESS alike
        head = s3.head_object(Bucket=locked_bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        until = head["ObjectLockRetainUntilDate"]
        assert began + dt.timedelta(days=2) - dt.timedelta(minutes=1) < until
        assert until < dt.datetime.now(dt.UTC) + dt.timedelta(days=2, minutes=1)

    storage = open_storage(f"s3://{locked_bucket}/nightly")
    ids = sorted(catalog.backup_ids(storage, table))
    assert len(ids) == 2
    code, out, err = run(capsys, "--config", str(cfg), "forget", "--keep-last", "1", "--json")
    assert code == 0, err
    entries = {e["id"]: e for e in orjson.loads(out)["entries"]}
    assert entries[ids[1]]["action"] == "keep"
    older = entries[ids[0]]
    assert older["action"] == "keep", older
    assert older["reasons"][0].startswith("object-locked (GOVERNANCE) until "), older
    assert sorted(catalog.backup_ids(storage, table)) == ids  # nothing hidden or removed
    assert catalog.is_complete(storage, catalog_ref(storage, table, ids[0]))

    # the lock is S3's, not ours: removing the data version itself is refused by the server
    data_key = next(k for k in keys if f"/{ids[0]}/data/" in k)
    version = s3.head_object(Bucket=locked_bucket, Key=data_key)["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3.delete_object(Bucket=locked_bucket, Key=data_key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def catalog_ref(storage: Any, table: str, backup_id: str) -> Any:
    from hippolyte.core.model import BackupRef

    return BackupRef(repo=storage.url, table=table, backup_id=backup_id)


def test_object_lock_refuses_a_bucket_without_it_before_writing(
    dynalite: Server,
    moto_server: Server,
    use_s3: Callable[[Server], None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_s3(moto_server)
    plain = f"plain-{uuid.uuid4().hex[:10]}"
    s3_client(moto_server).create_bucket(Bucket=plain)
    table = db_for(dynalite).table(items=[{"pk": {"S": "a"}}])
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(f'repository = "s3://{plain}"\n[object_lock]\nmode = "COMPLIANCE"\ndays = 1\n')
    code, out, err = _backup(capsys, cfg, table, dynalite)
    assert code == 2, (out, err)
    assert f"bucket {plain!r} has no Object Lock enabled" in err
    assert s3_client(moto_server).list_objects_v2(Bucket=plain)["KeyCount"] == 0

    local = tmp_path / "repo"
    cfg.write_text(f'repository = "{local}"\n[object_lock]\nmode = "GOVERNANCE"\ndays = 1\n')
    code, out, err = _backup(capsys, cfg, table, dynalite)
    assert code == 2 and "needs an S3 repository" in err, err
    assert not local.exists()

    cfg.write_text(f'repository = "s3://{plain}"\n[object_lock]\nmode = "FOREVER"\ndays = 1\n')
    code, out, err = _backup(capsys, cfg, table, dynalite)
    assert code == 2 and "object_lock.mode" in err and "'FOREVER'" in err, err


def test_append_only_backs_up_but_never_deletes_what_is_committed(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    table = db_for(dynalite).table(items=[{"pk": {"S": f"k{i}"}} for i in range(10)])
    cfg = tmp_path / "hippolyte.toml"
    cfg.write_text(f'repository = "{repo}"\nappend_only = true\n')
    for _ in range(2):
        code, out, err = _backup(capsys, cfg, table, dynalite)
        assert code == 0, err
    storage = open_storage(str(repo))
    ids = sorted(catalog.backup_ids(storage, table))
    assert len(ids) == 2 and not list(repo.glob(".hippolyte-lock*"))  # its lock went
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))

    code, out, err = run(capsys, "--config", str(cfg), "forget", "--keep-last", "1")
    assert code == 2 and "append-only" in err and "nothing was removed" in err, err
    code, out, err = run(capsys, "--config", str(cfg), "forget", "--keep-last", "1", "--dry-run")
    assert code == 0, err  # looking is allowed
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before

    guarded = open_storage(str(repo), append_only=True)
    with pytest.raises(RepositoryError, match="append-only"):
        guarded.delete(f"{table}/{ids[0]}/_SUCCESS")
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


def test_forget_asks_no_object_about_its_lock_where_the_bucket_has_none(
    moto_server: Server,
    use_s3: Callable[[Server], None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hippolyte.adapters.storage import S3Storage
    from tests.test_forget import a_year

    use_s3(moto_server)
    plain = f"plain-{uuid.uuid4().hex[:10]}"
    s3_client(moto_server).create_bucket(Bucket=plain)
    storage = open_storage(f"s3://{plain}")
    ids = sorted(a_year(storage, days=20))  # (20 are enough: 15 to remove)

    def asked(self: Any, key: str) -> None:
        raise AssertionError(f"asked about {key}'s lock in a bucket without Object Lock")

    monkeypatch.setattr(S3Storage, "locked_until", asked)
    code, out, err = run(capsys, "forget", "--keep-last", "5", "--repo", f"s3://{plain}", "--json")
    assert code == 0, err
    assert sorted(catalog.backup_ids(storage, "orders")) == ids[-5:]


def test_a_copy_destination_s_own_object_lock(
    dynalite: Server, moto_server: Server, locked_bucket: str, tmp_path: Path
) -> None:
    """[[copies]] object_lock: every object of the off-site copy carries the destination's
    retention; a destination bucket without Object Lock is refused before anything is
    written there."""
    from hippolyte.core import config
    from hippolyte.ops.backup import BackupParams, backup_tables
    from hippolyte.ops.copy import copy_by_config

    s3 = s3_client(moto_server)
    db = db_for(dynalite)
    table = db.table(items=[{"pk": {"S": f"k{i}"}} for i in range(30)])
    source = open_storage(str(tmp_path / "repo"))
    (done,) = backup_tables(
        [table], conn=db.conn, storage=source, params=BackupParams(), emit=lambda e: None
    )
    assert done.ok, done.error
    plain = f"plain-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=plain)
    settings = config.validate(
        {
            "copies": [
                {"to": f"s3://{bucket}/offsite", "object_lock": {"mode": "COMPLIANCE", "days": 3}}
                for bucket in (plain, locked_bucket)
            ]
        },
        source="test",
    )
    began = dt.datetime.now(dt.UTC)
    refused, copied = copy_by_config(source, settings.copies)
    assert not refused.ok and "Object Lock" in (refused.error or ""), refused
    assert "Contents" not in s3.list_objects_v2(Bucket=plain)  # nothing written
    assert copied.ok and copied.count("copied") == 1, copied
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=locked_bucket)["Contents"]]
    assert any(k.endswith("/_SUCCESS") for k in keys) and any("/data/" in k for k in keys)
    for key in keys:
        head = s3.head_object(Bucket=locked_bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE", key
        assert head["ObjectLockRetainUntilDate"] > began + dt.timedelta(days=3, minutes=-1)
