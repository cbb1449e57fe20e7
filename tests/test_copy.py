"""``hippolyte copy``: committed backups and change sets copied between a folder, moto S3 and
``rclone serve s3``, verified equal at the destination; a second copy skips everything and
writes nothing; a copy stopped midway resumes without sending again what arrived and never
commits half; a byte corrupted in transit is caught (moto by the ETag, rclone by Content-MD5)
and sent again or failed, never committed; bad input is refused before anything is written."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest
from conftest import S3Bucket

from hippolyte.adapters.storage import PART_SIZE, Storage, open_storage
from hippolyte.core.config import Copy
from hippolyte.core.errors import ExitCode
from hippolyte.core.model import BackupRef, TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.ops import copy as copy_op
from hippolyte.repo import changes, manifest, writer
from tests.helpers import run
from tests.support.s3faults import S3FaultProxy
from tests.support.servers import Server, create_bucket, s3_client

DESC = {
    "TableName": "orders",
    "TableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
}
T0 = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
SMALL = "orders/2026-11-20-10-00-00"
BIG = "orders/2026-11-21-10-00-00"  # a data file over PART_SIZE: a multipart upload
USERS = "users/2026-11-21-11-00-00"
INCOMPLETE = "orders/2026-11-22-10-00-00"
CHANGES = f"orders/{changes.CHANGES}{changes.set_id(T0 + dt.timedelta(hours=1))}"
COMMITTED = (SMALL, BIG, USERS, CHANGES)

pytestmark = pytest.mark.servers


def _backup(storage: Storage, name: str, files: list[list[bytes]]) -> None:
    table, bid = name.split("/")
    ref = BackupRef(repo=storage.url, table=table, backup_id=bid)
    entries = []
    for n, items in enumerate(files):
        out = DataFileWriter(storage, prefix=ref.prefix, key=manifest.data_key(n, 0))
        out.write_items(items)
        entries.append(out.commit())
    start = manifest.parse_backup_id(bid)
    desc = {**DESC, "TableName": table, "TableArn": DESC["TableArn"].replace("orders", table)}
    writer.commit(
        storage,
        ref=ref,
        info=TableInfo.from_description(desc),
        extras={},
        files=entries,
        start=start,
        end=start + dt.timedelta(minutes=1),
        run={},
        consumed=0.0,
        source={},
    )


def _items(n: int, *, size: int = 40, seed: int = 0) -> list[bytes]:
    return [orjson.dumps({"pk": {"S": f"k{seed}-{i}"}, "v": {"S": "x" * size}}) for i in range(n)]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    storage = open_storage(str(tmp_path_factory.mktemp("copy-src") / "repo"))
    _backup(storage, SMALL, [_items(50, seed=s) for s in range(3)])
    noise = base64.b64encode(os.urandom(int(PART_SIZE * 1.15))).decode()
    cut = len(noise) // 4000
    big = [
        orjson.dumps({"pk": {"S": f"b{i}"}, "v": {"S": noise[i * cut : (i + 1) * cut]}})
        for i in range(4000)
    ]
    _backup(storage, BIG, [big, _items(10)])
    _backup(storage, USERS, [_items(20, seed=9)])
    writer_ = changes.ChangeSetWriter(storage, table="orders", start=T0 + dt.timedelta(hours=1))
    for i in range(30):
        keys = orjson.dumps({"pk": {"S": f"k0-{i}"}})
        writer_.add(changes.Change(stamp=changes.micros(T0) + i, keys=keys, new=None))
    writer_.commit(end=T0 + dt.timedelta(hours=2), source={"kind": "test"})
    out = DataFileWriter(storage, prefix=INCOMPLETE + "/", key=manifest.data_key(0, 0))
    out.write_items(_items(5))
    out.commit()
    assert storage.size(BIG + "/" + manifest.data_key(0, 0)) > PART_SIZE
    return storage


def fingerprint(storage: Storage, names: tuple[str, ...] = COMMITTED) -> dict[str, str]:
    """sha256 of every file of the named backups and change sets."""
    out = {}
    for name in names:
        for key in storage.list(name + "/"):
            out[key] = hashlib.sha256(storage.get_bytes(key)).hexdigest()
    return out


def everything(storage: Storage) -> list[str]:
    return [k for k in storage.list("") if not k.startswith(".hippolyte-probe")]


def copy_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run(capsys, "copy", *args, "--json")
    return code, (orjson.loads(out) if out.strip() else {}), err


def actions(doc: dict[str, Any]) -> dict[str, str]:
    return {
        f"{c['table']}/{c['id']}"
        if c["kind"] == "backup"
        else f"{c['table']}/{changes.CHANGES}{c['id']}": c["action"]
        for c in doc["copies"]
    }


# -- local <-> S3 ---------------------------------------------------------------------------------


def test_local_to_moto_verified_then_idempotent(
    source: Storage,
    moto_server: Server,
    make_s3_bucket: Callable[[Server], S3Bucket],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = make_s3_bucket(moto_server)
    code, doc, err = copy_cli(capsys, "--repo", source.url, "--to", bucket.url + "/dr")
    assert code == 0, err
    assert actions(doc) == dict.fromkeys(COMMITTED, "copied")  # not the incomplete backup
    assert doc["bytes"] > PART_SIZE and '"event": "step"' in err.replace('":"', '": "')
    dest = open_storage(bucket.url + "/dr")
    assert fingerprint(dest) == fingerprint(source)
    assert not any(k.startswith(INCOMPLETE) for k in everything(dest))
    code, out, err = run(capsys, "verify", "--all", "--repo", bucket.url + "/dr", "--json")
    assert code == 0, out + err

    # again, through a proxy that counts the uploads: everything skipped, nothing sent
    with S3FaultProxy(upstream=moto_server.endpoint_url) as proxy:
        code, doc, err = copy_cli(
            capsys,
            "--repo",
            source.url,
            "--to",
            bucket.url + "/dr",
            "--to-endpoint-url",
            proxy.endpoint_url,
        )
    assert code == 0, err
    assert actions(doc) == dict.fromkeys(COMMITTED, "skipped")
    assert [p for p in proxy.puts if ".hippolyte-probe" not in p] == []
    assert copy_op.lagging(source, dest) == []


def test_s3_to_s3_rclone_to_moto_and_back_to_a_folder(
    source: Storage,
    moto_server: Server,
    rclone_s3: Server,
    make_s3_bucket: Callable[[Server], S3Bucket],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    on_rclone = make_s3_bucket(rclone_s3)  # the environment's endpoint and key: rclone's
    code, doc, err = copy_cli(capsys, "--repo", source.url, "--to", on_rclone.url)
    assert code == 0, err
    moto_bucket = create_bucket(moto_server)  # moto takes any key
    to_moto = open_storage(f"s3://{moto_bucket}/copy", s3_endpoint_url=moto_server.endpoint_url)
    from_rclone = open_storage(on_rclone.url)
    report = copy_op.copy(from_rclone, to_moto)
    assert report.ok and report.count("copied") == len(COMMITTED)
    assert fingerprint(to_moto) == fingerprint(source)
    back = open_storage(str(tmp_path / "back"))
    assert copy_op.copy(to_moto, back, refs=["users", CHANGES]).count("copied") == 2
    assert fingerprint(back, (USERS, CHANGES)) == fingerprint(source, (USERS, CHANGES))
    code, out, err = run(capsys, "verify", "--all", "--repo", back.url, "--json")
    assert code == 0, out + err


# -- stopped midway ------------------------------------------------------------------------------


class Breaking:
    """A storage that records its writes and fails every write after the first ``after``."""

    def __init__(self, inner: Storage, *, after: int | None = None) -> None:
        self._inner, self._after = inner, after
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _count(self, key: str) -> None:
        if self._after is not None and len(self.writes) >= self._after:
            from hippolyte.core.errors import RepositoryError

            raise RepositoryError(f"injected: no more writes ({key})")
        self.writes.append(key)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        self._count(key)
        with self._inner.open_write(key) as f:
            yield f

    def put_bytes(self, key: str, data: bytes) -> None:
        self._count(key)
        self._inner.put_bytes(key, data)


def test_stopped_copy_resumes_and_commits_last(source: Storage, tmp_path: Path) -> None:
    inner = open_storage(str(tmp_path / "dr"))
    inner.check_writable()  # the probe is not one of the counted writes
    broken = Breaking(inner, after=5)  # the first backup's 3 data files and 2 of its manifests
    report = copy_op.copy(source, broken, workers=1)  # type: ignore[arg-type]
    assert not report.ok and report.count("copied") < len(COMMITTED)
    done = {r.unit.name for r in report.results if r.action == "copied"}
    for name in COMMITTED:  # committed whole, or not at all
        assert inner.exists(f"{name}/_SUCCESS") == (name in done)
    assert {u.name for u in copy_op.lagging(source, inner)} == set(COMMITTED) - done
    sent_before = set(everything(inner))

    again = Breaking(inner)
    report = copy_op.copy(source, again)  # type: ignore[arg-type]
    assert report.ok, [r.error for r in report.results]
    assert [r.reused for r in report.results if r.unit.name == SMALL] == [5]
    assert not set(again.writes) & {k for k in sent_before if not k.endswith("_SUCCESS")}
    for name in COMMITTED:  # _SUCCESS after every other file of its backup
        mine = [k for k in again.writes if k.startswith(name + "/")]
        if mine:
            assert mine[-1] == f"{name}/_SUCCESS"
    assert fingerprint(inner) == fingerprint(source)


def test_denied_midway_on_s3_then_resumed(
    source: Storage,
    moto_server: Server,
    make_s3_bucket: Callable[[Server], S3Bucket],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = make_s3_bucket(moto_server)
    with S3FaultProxy(
        upstream=moto_server.endpoint_url, match="/data/", schedule=["ok"] * 4, then="deny"
    ) as proxy:
        code, doc, err = copy_cli(
            capsys,
            "--repo",
            source.url,
            "--to",
            bucket.url,
            "--to-endpoint-url",
            proxy.endpoint_url,
            "--workers",
            "2",
        )
    assert code == ExitCode.AUTH and proxy.counts["deny"] >= 1, err
    assert "failed" in actions(doc).values()
    keys = everything(open_storage(bucket.url))
    assert keys, "some files arrived before the refusal"
    failed = [n for n, a in actions(doc).items() if a == "failed"]
    assert not any(k == f"{n}/_SUCCESS" for n in failed for k in keys)

    code, doc, err = copy_cli(capsys, "--repo", source.url, "--to", bucket.url)
    assert code == 0, err
    assert sum(c["reusedFiles"] for c in doc["copies"]) >= 1
    assert fingerprint(open_storage(bucket.url)) == fingerprint(source)


# -- corrupted in transit -------------------------------------------------------------------------


@pytest.mark.parametrize("server_name", ["moto_server", "rclone_s3"])
def test_a_flipped_byte_is_sent_again(
    server_name: str,
    source: Storage,
    request: pytest.FixtureRequest,
    make_s3_bucket: Callable[[Server], S3Bucket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: Server = request.getfixturevalue(server_name)
    bucket = make_s3_bucket(server)
    # as from a source that cannot stream its files (S3): bodies read into memory, parts
    monkeypatch.setattr("hippolyte.ops.copy_send.STREAM_MAX", 0)
    # a plain PUT (the first backup's first data file) and a part (the big file's second)
    hits = rf"{SMALL}/data/00000|{BIG}/data/00000-0000.json.gz\?.*partNumber=2"
    with S3FaultProxy(upstream=server.endpoint_url, match=hits, schedule=["flip", "flip"]) as proxy:
        dest = open_storage(bucket.url, s3_endpoint_url=proxy.endpoint_url)
        report = copy_op.copy(source, dest, refs=[SMALL, BIG])
    assert proxy.counts == {"flip": 2, "ok": 2}  # each sent again, once
    assert report.ok, [r.error for r in report.results]
    assert fingerprint(open_storage(bucket.url), (SMALL, BIG)) == fingerprint(source, (SMALL, BIG))


@pytest.mark.parametrize("server_name", ["moto_server", "rclone_s3"])
def test_a_file_streamed_from_disk_goes_in_one_put_and_a_flipped_byte_is_sent_again(
    server_name: str,
    source: Storage,
    request: pytest.FixtureRequest,
    make_s3_bucket: Callable[[Server], S3Bucket],
) -> None:
    server: Server = request.getfixturevalue(server_name)
    bucket = make_s3_bucket(server)
    big = rf"{BIG}/data/00000-0000.json.gz"  # over PART_SIZE, on disk: one PUT from the file
    with S3FaultProxy(upstream=server.endpoint_url, match=big, schedule=["flip"]) as proxy:
        dest = open_storage(bucket.url, s3_endpoint_url=proxy.endpoint_url)
        report = copy_op.copy(source, dest, refs=[BIG])
    assert proxy.counts == {"flip": 1, "ok": 1}  # no part: the whole file, sent again once
    assert not any("partNumber" in p or "uploads" in p for p in proxy.puts)
    assert report.ok, [r.error for r in report.results]
    assert fingerprint(open_storage(bucket.url), (BIG,)) == fingerprint(source, (BIG,))


@pytest.mark.parametrize("server_name", ["moto_server", "rclone_s3"])
def test_always_corrupted_is_never_committed(
    server_name: str,
    source: Storage,
    request: pytest.FixtureRequest,
    make_s3_bucket: Callable[[Server], S3Bucket],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server: Server = request.getfixturevalue(server_name)
    bucket = make_s3_bucket(server)
    with S3FaultProxy(upstream=server.endpoint_url, match="/data/", then="flip") as proxy:
        code, doc, err = copy_cli(
            capsys,
            "--repo",
            source.url,
            "--to",
            bucket.url,
            USERS,
            "--to-endpoint-url",
            proxy.endpoint_url,
        )
    assert code == ExitCode.AWS, err
    assert proxy.counts["flip"] == 3  # three attempts
    assert actions(doc) == {USERS: "failed"}
    assert (
        "what arrived is not what was sent" in doc["copies"][0]["error"]
        or "other bytes" in (doc["copies"][0]["error"])
    )
    assert not any(k.endswith("_SUCCESS") for k in everything(open_storage(bucket.url)))


# -- [[copies]] -----------------------------------------------------------------------------------


def test_copy_by_config_copies_the_wanted_tables(source: Storage, tmp_path: Path) -> None:
    there = tmp_path / "dr"
    copies = [Copy(to=str(there), tables=["^users$"]), Copy(to=source.url)]
    first, second = copy_op.copy_by_config(source, copies)
    assert first.ok and [r.unit.name for r in first.results] == [USERS]
    assert not second.ok and "is the source" in (second.error or "")
    assert [u.name for u in copy_op.lagging(source, open_storage(str(there)), ["users"])] == []


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--to", "{src}"], ExitCode.USAGE, "is the source"),
        (["--to", "{src}/inside"], ExitCode.USAGE, "is the source"),
        (["--to", "{dst}", "nosuchtable"], ExitCode.NOT_FOUND, "no committed backup"),
        (["--to", "{dst}", "orders/2026-01-01-00-00-00"], ExitCode.NOT_FOUND, "no orders/"),
        (["--to", "{dst}", INCOMPLETE], ExitCode.NOT_FOUND, "incomplete"),
        (["--to", "{dst}", "orders/yesterday"], ExitCode.USAGE, "is not TABLE"),
    ],
)
def test_bad_input_is_refused_before_writing(
    source: Storage,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    says: str,
) -> None:
    before = everything(source)
    dst = tmp_path / "dr"
    argv = [a.format(src=source.url, dst=dst) for a in args]
    got, out, err = run(capsys, "copy", "--repo", source.url, *argv)
    assert got == code and says in err and len(err.strip().splitlines()) == 1, err
    assert everything(source) == before and not dst.exists()


def test_unwritable_destination_is_refused(
    source: Storage,
    moto_server: Server,
    make_s3_bucket: Callable[[Server], S3Bucket],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = make_s3_bucket(moto_server)
    with S3FaultProxy(upstream=moto_server.endpoint_url, then="deny") as proxy:
        got, out, err = run(
            capsys,
            "copy",
            "--repo",
            source.url,
            "--to",
            bucket.url,
            "--to-endpoint-url",
            proxy.endpoint_url,
        )
    assert got == ExitCode.AUTH and "not writable" in err, err
    assert s3_client(moto_server).list_objects_v2(Bucket=bucket.name).get("KeyCount") == 0


def test_the_lambda_copies_after_the_monitor(source: Storage, tmp_path: Path) -> None:
    from hippolyte.aws_lambda import copy_configured
    from hippolyte.core.config import Settings

    settings = Settings(repository=source.url, copies=[Copy(to=str(tmp_path / "dr"))])
    (summary,) = copy_configured(settings)
    assert summary["ok"] and summary["copied"] == len(COMMITTED), summary
    (summary,) = copy_configured(settings)
    assert summary["skipped"] == len(COMMITTED) and summary["copies"] == []


def test_killed_midway_then_resumed(
    source: Storage, moto_server: Server, make_s3_bucket: Callable[[Server], S3Bucket]
) -> None:
    """A real ``kill -9`` while data files are on their way: whatever is committed at the
    destination is whole; the next copy completes the rest."""
    bucket = make_s3_bucket(moto_server)
    units = (SMALL, CHANGES, USERS)
    argv = [sys.executable, "-m", "hippolyte", "copy", "--repo", source.url, "--to", bucket.url]
    argv += units
    with S3FaultProxy(upstream=moto_server.endpoint_url, match="/data/", then="slow") as proxy:
        proc = subprocess.Popen(
            [*argv, "--to-endpoint-url", proxy.endpoint_url, "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while len(proxy.puts) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
    dest = open_storage(bucket.url)
    arrived = everything(dest)
    assert arrived and proc.returncode == -9
    whole = [n for n in units if f"{n}/_SUCCESS" in arrived]
    assert len(whole) < len(units)
    assert fingerprint(dest, tuple(whole)) == fingerprint(source, tuple(whole))

    report = copy_op.copy(source, dest, refs=units)
    assert report.ok and {r.unit.name for r in report.results if r.action == "skipped"} == set(
        whole
    )
    assert fingerprint(dest, units) == fingerprint(source, units)


@pytest.mark.parametrize("where", ["moto_server", "rclone_s3", "folder"])
def test_a_damaged_source_is_never_copied(
    where: str,
    request: pytest.FixtureRequest,
    make_s3_bucket: Callable[[Server], S3Bucket],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A byte flipped at rest in the source (a single-PUT data file, and a multipart one) is
    found against the manifest: exit 4, that backup never committed, the others copied."""
    src = open_storage(str(tmp_path / "src"))
    small, big, fine = (f"tbl/2026-11-2{d}-10-00-00" for d in (0, 1, 2))
    _backup(src, small, [_items(200)])
    noise = base64.b64encode(os.urandom(int(PART_SIZE * 1.1))).decode()
    cut = len(noise) // 1000
    _backup(
        src,
        big,
        [
            [
                orjson.dumps({"pk": {"S": f"b{i}"}, "v": {"S": noise[i * cut : (i + 1) * cut]}})
                for i in range(1000)
            ]
        ],
    )
    _backup(src, fine, [_items(30, seed=3)])
    for name in (small, big):
        path = Path(src.url) / name / manifest.data_key(0, 0)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    to = (
        str(tmp_path / "dr")
        if where == "folder"
        else make_s3_bucket(request.getfixturevalue(where)).url
    )
    code, doc, err = copy_cli(capsys, "--repo", src.url, "--to", to)
    assert code == 4, (doc, err)
    got = {f"{c['table']}/{c['id']}": c for c in doc["copies"]}
    assert got[fine]["action"] == "copied"
    for name in (small, big):
        assert got[name]["action"] == "failed" and "differs from its manifest" in got[name]["error"]
    dest = open_storage(to)
    assert dest.exists(f"{fine}/_SUCCESS")
    assert not dest.exists(f"{small}/_SUCCESS") and not dest.exists(f"{big}/_SUCCESS")
