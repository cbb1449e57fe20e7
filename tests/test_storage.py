"""One contract suite for every storage backend: a local folder, moto's S3 and rclone's S3.

The S3 backends are reached through the standard ``AWS_ENDPOINT_URL_S3`` variable, which also
proves that variable is honoured.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import S3_SERVERS, S3Bucket

from hippolyte.adapters.storage import LocalStorage, S3Storage, Storage, open_storage
from hippolyte.core.errors import ConfigError, CredentialsError, NotFound, RepositoryError
from tests.support import servers as testing
from tests.support.servers import Server

MB = 1024 * 1024


@pytest.fixture(params=["local", *S3_SERVERS])
def storage(
    request: pytest.FixtureRequest,
    local_repo: Path,
    make_s3_bucket: Callable[[Server], S3Bucket],
) -> Storage:
    if request.param == "local":
        return open_storage(str(local_repo))
    return open_storage(make_s3_bucket(request.getfixturevalue(request.param)).url)


class Boom(Exception):
    pass


# -- the contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"hello", bytes(range(256)) * 1000])
def test_put_get_round_trip(storage: Storage, data: bytes) -> None:
    storage.put_bytes("backups/one/data.bin", data)
    assert storage.get_bytes("backups/one/data.bin") == data
    assert storage.size("backups/one/data.bin") == len(data)
    assert storage.exists("backups/one/data.bin")


def test_big_object_streams_both_ways(storage: Storage) -> None:
    chunk = os.urandom(MB)
    digest = hashlib.sha256()
    with storage.open_write("big/file.bin") as f:  # 20 MB: a multipart upload on S3
        for i in range(20):
            block = bytes([i]) + chunk[1:]
            f.write(block)
            digest.update(block)
    assert storage.size("big/file.bin") == 20 * MB
    read_back = hashlib.sha256()
    with storage.open_read("big/file.bin") as f:
        while block := f.read(4 * MB):
            read_back.update(block)
    assert read_back.hexdigest() == digest.hexdigest()


def test_open_write_is_atomic(storage: Storage) -> None:
    with storage.open_write("a/b/new.bin") as f:
        f.write(b"x" * 1000)
        assert not storage.exists("a/b/new.bin")
        assert list(storage.list()) == []
    assert storage.get_bytes("a/b/new.bin") == b"x" * 1000

    with pytest.raises(Boom):
        with storage.open_write("a/b/new.bin") as f:
            f.write(b"y" * 1000)
            raise Boom
    with pytest.raises(Boom):
        with storage.open_write("a/c/never.bin") as f:
            f.write(b"z")
            raise Boom
    assert storage.get_bytes("a/b/new.bin") == b"x" * 1000  # the old object is untouched
    assert list(storage.list()) == ["a/b/new.bin"]
    assert storage.list_dirs("a") == ["b"]


def test_failed_write_leaves_no_file_on_disk(local_repo: Path) -> None:
    storage = open_storage(str(local_repo))
    with pytest.raises(Boom):
        with storage.open_write("x/y/z.bin") as f:
            f.write(b"partial")
            raise Boom
    assert [p for p in local_repo.rglob("*")] == []


def test_list_is_recursive_sorted_and_relative(storage: Storage) -> None:
    keys = ["b", "a/x", "a-c", "a/b/c", "c/d/e", "a/b/d"]
    for key in keys:
        storage.put_bytes(key, key.encode())
    assert list(storage.list()) == sorted(keys)
    assert list(storage.list("a/")) == ["a/b/c", "a/b/d", "a/x"]
    assert list(storage.list("a")) == ["a-c", "a/b/c", "a/b/d", "a/x"]  # a string prefix
    assert list(storage.list("a/b/c")) == ["a/b/c"]
    assert list(storage.list("zz")) == []
    assert list(storage.list("nope/deeper/")) == []


def test_list_dirs(storage: Storage) -> None:
    for key in ["top.txt", "a/x", "a/b/c", "c/d/e", "a/e/f"]:
        storage.put_bytes(key, b"")
    assert storage.list_dirs() == ["a", "c"]
    assert storage.list_dirs("a") == ["b", "e"]
    assert storage.list_dirs("a/") == ["b", "e"]
    assert storage.list_dirs("c/d") == []
    assert storage.list_dirs("missing") == []


def test_exists_size_delete(storage: Storage) -> None:
    storage.put_bytes("d/one", b"12345")
    storage.put_bytes("d/two", b"")
    assert storage.exists("d/one") and storage.exists("d/two")
    assert not storage.exists("d")  # a folder is not an object
    assert storage.size("d/two") == 0
    storage.delete("d/one")
    storage.delete("d/one")  # missing is fine
    storage.delete("never/was")
    assert not storage.exists("d/one")
    assert list(storage.list()) == ["d/two"]
    storage.delete("d/two")
    assert storage.list_dirs() == []  # no empty folder left behind


def test_delete_many_removes_every_key_and_no_other(storage: Storage) -> None:
    keys = [f"t/b{i // 600}/data/f{i:04d}" for i in range(1200)]  # over one S3 request
    with ThreadPoolExecutor(max_workers=8) as pool:  # 1,201 PUTs: at once, not one by one
        list(pool.map(lambda key: storage.put_bytes(key, b"x"), [*keys, "t/keep/_SUCCESS"]))
    storage.delete_many(keys)
    assert list(storage.list("")) == ["t/keep/_SUCCESS"]
    assert storage.list_dirs("t") == ["keep"]  # no empty folder left behind (a folder's too)
    storage.delete_many([])


def test_append_only_never_deletes_a_commit_marker(storage: Storage) -> None:
    guarded = open_storage(storage.url, append_only=True)
    guarded.put_bytes("t/b/_SUCCESS", b"")
    guarded.put_bytes("t/b/data/f", b"x")
    for attempt in (lambda: guarded.delete("t/b/_SUCCESS"),
                    lambda: guarded.delete_many(["t/b/data/f", "t/b/_SUCCESS"])):  # fmt: skip
        with pytest.raises(RepositoryError, match="append-only"):
            attempt()
    assert list(storage.list("t/")) == ["t/b/_SUCCESS", "t/b/data/f"]  # nothing went
    guarded.delete("t/b/data/f")  # what is not a commit marker may go


def test_missing_key_is_not_found(storage: Storage) -> None:
    storage.put_bytes("present", b"x")
    for call in (
        lambda: storage.get_bytes("sub/missing.bin"),
        lambda: storage.size("sub/missing.bin"),
        lambda: storage.open_read("sub/missing.bin").__enter__(),
    ):
        with pytest.raises(NotFound, match="sub/missing.bin"):
            call()
    assert not storage.exists("sub/missing.bin")


def test_check_writable_leaves_nothing(storage: Storage) -> None:
    storage.check_writable()
    assert list(storage.list()) == []


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../b", "a//b", "a/", "./a", "a\\b"])
def test_bad_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ConfigError, match="invalid repository key"):
        storage.put_bytes(key, b"")


# -- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "gs://bucket/x",
        "s3://",
        "s3:///prefix",
        "s3:bucket",
        "ftp:",
        "ftp://host/x",
        "http://host/x",
        "file://host/x",
        "file:relative",
        "s3://bucket/a//b",
        "s3://bucket/../x",
    ],
)
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="s3://bucket") as info:
        open_storage(url)
    assert repr(url) in str(info.value)


def test_local_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_storage("rel/repo").url == str(tmp_path / "rel" / "repo")
    assert open_storage(f"file://{tmp_path}/r%20x").url == str(tmp_path / "r x")
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)


def test_s3_url_is_normalized() -> None:
    storage = open_storage("s3://my-bucket/some/prefix/")
    assert isinstance(storage, S3Storage)
    assert storage.url == "s3://my-bucket/some/prefix"
    assert open_storage("s3://my-bucket").url == "s3://my-bucket"


# -- local specifics ----------------------------------------------------------------------------


def test_local_creates_root_on_first_write(local_repo: Path) -> None:
    storage = open_storage(str(local_repo))
    assert list(storage.list()) == [] and storage.list_dirs() == []
    assert not local_repo.exists()
    storage.put_bytes("k", b"v")
    assert (local_repo / "k").read_bytes() == b"v"


def test_local_leftover_temp_files_are_hidden(local_repo: Path) -> None:
    storage = open_storage(str(local_repo))
    storage.put_bytes("a/real", b"1")
    (local_repo / "a" / f".crashed.tmp-{uuid.uuid4().hex}").write_bytes(b"half")
    assert list(storage.list()) == ["a/real"]


def test_local_unwritable_root(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    root = tmp_path / "afile" / "repo"
    storage = open_storage(str(root))
    with pytest.raises(RepositoryError, match=str(root)):
        storage.check_writable()
    with pytest.raises(RepositoryError, match="afile"):
        storage.put_bytes("x", b"")
    with pytest.raises(NotFound):
        storage.get_bytes("x")


# -- S3 specifics -------------------------------------------------------------------------------


def test_prefix_inside_bucket(s3_bucket: S3Bucket) -> None:
    storage = open_storage(f"{s3_bucket.url}/some/prefix")
    storage.put_bytes("x/y", b"data")
    storage.put_bytes("top", b"")
    whole = open_storage(s3_bucket.url)
    assert list(whole.list()) == ["some/prefix/top", "some/prefix/x/y"]
    assert whole.list_dirs() == ["some"]
    assert list(storage.list()) == ["top", "x/y"]
    assert storage.list_dirs() == ["x"]
    assert storage.get_bytes("x/y") == b"data"
    assert not open_storage(f"{s3_bucket.url}/some/pre").exists("x/y")
    assert list(open_storage(f"{s3_bucket.url}/some/pre").list()) == []


def test_missing_bucket(s3_bucket: S3Bucket) -> None:
    name = f"missing-{uuid.uuid4().hex[:8]}"
    storage = open_storage(f"s3://{name}/p")
    with pytest.raises(RepositoryError, match=f"bucket '{name}' does not exist"):
        storage.check_writable()
    with pytest.raises(RepositoryError, match=name):
        list(storage.list())
    with pytest.raises(RepositoryError, match=name):
        with storage.open_write("k") as f:
            f.write(b"x")


def test_explicit_endpoint_keyword(s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    storage = open_storage(s3_bucket.url, s3_endpoint_url=s3_bucket.server.endpoint_url)
    storage.put_bytes("k", b"v")
    assert (
        testing.s3_client(s3_bucket.server)
        .get_object(Bucket=s3_bucket.name, Key="k")["Body"]
        .read()
        == b"v"
    )


def test_rejected_credentials(
    rclone_s3: Server, use_s3: Callable[[Server], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = testing.create_bucket(rclone_s3)
    use_s3(rclone_s3)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(CredentialsError, match=bucket):
        open_storage(f"s3://{bucket}").put_bytes("k", b"")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown")
    monkeypatch.setattr("hippolyte.adapters.aws._sessions", {})
    with pytest.raises(CredentialsError):
        open_storage(f"s3://{bucket}").check_writable()
