"""Where the repository lives: a local folder or an S3 bucket/prefix, behind one narrow interface.

Keys are '/'-separated and relative to the repository root. Every write is atomic: an object
appears under its key only once it is complete (local: a hidden temp file in the same folder,
fsynced and renamed; S3: an object exists only when its upload completes). Listings never show
an incomplete object. Errors are translated here into ``hippolyte.errors``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import unquote, urlsplit

import botocore.exceptions

from hippolyte.adapters.aws import Connection, client, translate
from hippolyte.core.errors import (
    ConfigError,
    CredentialsError,
    HippolyteError,
    NotFound,
    RepositoryError,
)

PART_SIZE = 8 * 1024 * 1024  # multipart threshold and part size; also the in-memory spool cap
PROBE_PREFIX = ".hippolyte-probe-"
ACCEPTED = "a folder path, file:///absolute/path or s3://bucket[/prefix]"


class Storage(Protocol):
    url: str  # the repository URL, normalized: an absolute path or s3://bucket[/prefix]
    bucket: str | None  # the S3 bucket, None for a local folder
    prefix: str  # the S3 key prefix without slashes ("" for a local folder)

    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The object appears under ``key`` only if the with-block exits without error."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, recursively, sorted, relative to the root."""
        ...

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        """Names of the immediate sub-folders of folder ``prefix``, sorted."""
        ...

    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...
    def check_writable(self) -> None: ...


def open_storage(
    url: str, *, conn: Connection | None = None, s3_endpoint_url: str | None = None
) -> Storage:
    """Build the storage for a repository URL. S3 endpoints also come from the standard
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables, which botocore reads itself."""
    parts = urlsplit(url)
    if url and parts.scheme == "":
        return LocalStorage(Path(url))
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return LocalStorage(Path(unquote(parts.path)))
    s3 = s3_location(url)
    if s3 is not None:
        bucket, prefix = s3
        return S3Storage(
            bucket=bucket, prefix=prefix, conn=conn or Connection(), endpoint_url=s3_endpoint_url
        )
    raise ConfigError(f"unsupported repository URL {url!r}: expected {ACCEPTED}")


def s3_location(url: str | None) -> tuple[str, str] | None:
    """(bucket, prefix without slashes) of a valid ``s3://bucket[/prefix]`` URL, else None."""
    parts = urlsplit(url or "")
    prefix = parts.path.strip("/")
    if (
        parts.scheme == "s3"
        and _valid_bucket(parts.netloc)
        and _valid_prefix(prefix)
        and not (parts.query or parts.fragment)
    ):
        return parts.netloc, prefix
    return None


def _valid_bucket(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-_]{2,254}", name) is not None


def _valid_prefix(prefix: str) -> bool:
    return prefix == "" or not ({"", ".", ".."} & set(prefix.split("/")))


def check_key(key: str, *, allow_empty: bool = False) -> str:
    """Keys are relative, '/'-separated, without '.', '..' or empty segments."""
    if key == "" and allow_empty:
        return key
    bad = {"", ".", ".."}
    if "\\" in key or "\x00" in key or any(segment in bad for segment in key.split("/")):
        raise ConfigError(f"invalid repository key {key!r}")
    return key


def _folder(prefix: str) -> str:
    """A folder prefix: '' for the root, else ending with exactly one '/'."""
    prefix = prefix.strip("/")
    return check_key(prefix, allow_empty=True) + "/" if prefix else ""


# -- local folder ------------------------------------------------------------------------------

_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root.expanduser()))
        self.url = str(self.root)
        self.bucket: str | None = None
        self.prefix = ""

    def __repr__(self) -> str:
        return f"LocalStorage({self.url!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        with _local_errors(path, writing=True):
            f = self._create(tmp)
        try:
            yield cast(BinaryIO, f)
            with _local_errors(path, writing=True):
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(tmp, path)
                _fsync_dir(path.parent)
        except BaseException:
            f.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._prune(path.parent)
            raise

    def _create(self, tmp: Path) -> Any:
        for _ in range(20):  # a concurrent delete may prune the folder while we make it
            try:
                tmp.parent.mkdir(parents=True, exist_ok=True)
                return open(tmp, "xb")
            except (FileNotFoundError, FileExistsError):
                continue  # FileExistsError: mkdir raced a prune of the same folder
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return open(tmp, "xb")

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as f:
            f.write(data)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with _local_errors(path, key=key, url=self.url):
            return path.read_bytes()

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        with _local_errors(path, key=key, url=self.url):
            f = open(path, "rb")
        with f:
            yield f

    def list(self, prefix: str = "") -> Iterator[str]:
        folder, _, _ = prefix.rpartition("/")
        start = self.root / check_key(folder, allow_empty=True) if folder else self.root
        base = folder + "/" if folder else ""
        for key in self._walk(start, base):
            if key.startswith(prefix):
                yield key

    def _walk(self, folder: Path, base: str) -> Iterator[str]:
        """Depth-first in an order that yields keys sorted: a folder sorts as ``name/``."""
        try:
            with os.scandir(folder) as it:
                entries = [(e.name + "/" if e.is_dir() else e.name, e) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise RepositoryError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        for name, entry in sorted(entries, key=lambda pair: pair[0]):
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), base + name)
            elif not _TEMP.match(name):
                yield base + name

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        folder = self.root / _folder(prefix)
        try:
            with os.scandir(folder) as it:
                return sorted(e.name for e in it if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise RepositoryError(f"cannot list {folder}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        with _local_errors(path, key=key, url=self.url):
            return path.stat().st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _local_errors(path, writing=True):
            path.unlink(missing_ok=True)
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the root, so listings match S3's (no empty dirs)."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def check_writable(self) -> None:
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            self.put_bytes(probe, b"probe")
            self.delete(probe)
        except RepositoryError as exc:
            raise RepositoryError(f"repository {self.url} is not writable: {exc}") from exc


@contextlib.contextmanager
def _local_errors(
    path: Path, *, writing: bool = False, key: str = "", url: str = ""
) -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, IsADirectoryError) as exc:
        if writing:
            raise RepositoryError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise NotFound(f"no object {key!r} in repository {url} ({path} is missing)") from exc
    except NotADirectoryError as exc:
        if writing:
            raise RepositoryError(f"cannot write {path}: a parent is not a folder") from exc
        raise NotFound(f"no object {key!r} in repository {url} ({path} is missing)") from exc
    except OSError as exc:
        what = "write" if writing else "read"
        reason = "read-only file system" if exc.errno == errno.EROFS else exc.strerror or exc
        raise RepositoryError(f"cannot {what} {path}: {reason}") from exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- S3 ----------------------------------------------------------------------------------------


def _s3_storage(bucket: str, prefix: str, conn: Connection, endpoint_url: str | None) -> S3Storage:
    return S3Storage(bucket=bucket, prefix=prefix, conn=conn, endpoint_url=endpoint_url)


class S3Storage:
    def __init__(
        self, *, bucket: str, prefix: str, conn: Connection, endpoint_url: str | None = None
    ) -> None:
        from boto3.s3.transfer import TransferConfig

        self.bucket: str | None = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._conn, self._endpoint_url = conn, endpoint_url
        custom = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._custom = bool(custom)
        extra: dict[str, Any] = {"s3": {"addressing_style": "path"}} if custom else {}
        self._client = client(conn, "s3", endpoint_url=endpoint_url, **extra)
        self._transfer = TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its settings, the endpoint as resolved here: another process builds its
        own client."""
        endpoint = self._client.meta.endpoint_url if self._custom else self._endpoint_url
        return (_s3_storage, (self.bucket, self.prefix, self._conn, endpoint))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _root(self) -> str:
        return self.prefix + "/" if self.prefix else ""

    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with tempfile.SpooledTemporaryFile(max_size=PART_SIZE) as spool:
            yield cast(BinaryIO, spool)
            spool.seek(0)
            with self._errors(key):
                self._client.upload_fileobj(spool, self.bucket, full, Config=self._transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        with self._errors(key):
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data)

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body:
            with self._errors(key):
                return body.read()

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with self._errors(key):
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
        with contextlib.closing(body):
            yield cast(BinaryIO, body)

    def list(self, prefix: str = "") -> Iterator[str]:
        root = self._root()
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        )
        with self._errors(prefix):
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield obj["Key"][len(root) :]

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        full = self._root() + _folder(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, Delimiter="/"
        )
        with self._errors(prefix):
            names = [
                p["Prefix"][len(full) :].rstrip("/")
                for page in pages
                for p in page.get("CommonPrefixes", ())
            ]
        return sorted(names)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        full = self._key(key)
        with self._errors(key):
            return int(self._client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def check_writable(self) -> None:
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            self.put_bytes(probe, b"probe")
            self.delete(probe)
        except (RepositoryError, CredentialsError) as exc:
            raise type(exc)(f"repository {self.url} is not writable: {exc}") from exc

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, key) from exc

    def _translate(self, exc: Exception, key: str) -> HippolyteError:
        where = self._where(key)
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchBucket":
                return RepositoryError(
                    f"bucket {self.bucket!r} does not exist (repository {self.url})"
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"no object {key!r} in repository {self.url}")
            if code == "InvalidAccessKeyId":
                return CredentialsError(f"AWS rejected the access key while accessing {where}")
            if code in ("AccessDenied", "AllAccessDisabled", "403"):
                return RepositoryError(f"access denied to {where}: {error.get('Message') or code}")
        translated = translate(exc, what=where)
        if isinstance(translated, CredentialsError):
            return translated
        return RepositoryError(str(translated))
