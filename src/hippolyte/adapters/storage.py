"""Where the repository lives: a local folder or an S3 bucket/prefix, behind one narrow interface.

Keys are '/'-separated and relative to the repository root. Every write is atomic: an object
appears under its key only once it is complete (local: a hidden temp file in the same folder,
fsynced and renamed; S3: an object exists only when its upload completes). Listings never show
an incomplete object. Errors are translated into ``hippolyte.errors``. The two kinds live in
``storage_local`` and ``storage_s3``, what they share in ``storage_common``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from hippolyte.adapters.aws import Connection
from hippolyte.adapters.storage_common import COMMITTED, PART_SIZE, PROBE_PREFIX, check_key
from hippolyte.adapters.storage_local import LocalStorage
from hippolyte.adapters.storage_s3 import S3Storage
from hippolyte.core.config import ObjectLock
from hippolyte.core.errors import ConfigError

__all__ = [  # the one import path for the rest of the package
    "ACCEPTED",
    "COMMITTED",
    "PART_SIZE",
    "PROBE_PREFIX",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "check_key",
    "open_storage",
    "s3_location",
]

ACCEPTED = "a folder path, file:///absolute/path or s3://bucket[/prefix]"


class Storage(Protocol):
    url: str  # the repository URL, normalized: an absolute path or s3://bucket[/prefix]
    bucket: str | None  # the S3 bucket, None for a local folder
    prefix: str  # the S3 key prefix without slashes ("" for a local folder)
    append_only: bool  # this process never deletes a commit marker (nothing committed is lost)
    object_lock: ObjectLock | None  # the retention every object is written with (S3 only)

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
    def delete(self, key: str) -> None:
        """Remove ``key``; refused for a commit marker when the storage is append-only."""
        ...

    def delete_many(self, keys: builtins.list[str]) -> None:
        """Remove every key (S3: 1,000 per request), in no promised order: for what may go
        in any order once its folder's commit marker has gone."""
        ...

    def check_writable(self) -> None:
        """Refuse, before anything is written, a repository this process cannot write as
        configured (permissions; an S3 bucket without Object Lock under ``[object_lock]``)."""
        ...

    def lock_enabled(self) -> bool:
        """Whether any object here can carry an Object Lock (an S3 bucket with it enabled)."""
        ...

    def locked_until(self, key: str) -> tuple[str, dt.datetime] | None:
        """The S3 Object Lock (mode, retain-until) that protects ``key`` now, else None."""
        ...

    # Conditional writes, for the repository lock. An "ETag" is S3's (without quotes) or, in a
    # folder, the hex MD5 of the file.
    def conditional_writes(self) -> bool:
        """Whether the three methods below are atomic here (an S3 server may ignore them)."""
        ...

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag, read together."""
        ...

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        """Write ``key`` only if nothing is there: the new ETag, or None if something was."""
        ...

    def replace_if(self, key: str, data: bytes, etag: str) -> str | None:
        """Overwrite ``key`` only if its ETag is still ``etag``: the new ETag, else None."""
        ...

    def delete_if(self, key: str, etag: str) -> bool:
        """Delete ``key`` only if its ETag is still ``etag``; False if it changed or is gone."""
        ...


def open_storage(
    url: str,
    *,
    conn: Connection | None = None,
    s3_endpoint_url: str | None = None,
    object_lock: ObjectLock | None = None,
    append_only: bool = False,
) -> Storage:
    """Build the storage for a repository URL. S3 endpoints also come from the standard
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables, which botocore reads itself.
    ``object_lock``: every object written gets that retention (S3 only);
    ``append_only``: no commit marker is ever deleted through this storage."""
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ConfigError(f"repository {url!r} contains a control character")
    parts = urlsplit(url)
    local: Path | None = None
    if url and parts.scheme == "":
        local = Path(url)
    elif parts.scheme == "file" and parts.netloc in ("", "localhost"):
        if parts.path.startswith("/"):
            local = Path(unquote(parts.path))
    if local is not None:
        if object_lock is not None:
            raise ConfigError(
                f"[object_lock] needs an S3 repository; {url!r} is a local folder "
                "(use append_only = true to protect a folder from this process)"
            )
        return LocalStorage(local, append_only=append_only)
    s3 = s3_location(url)
    if s3 is not None:
        bucket, prefix = s3
        return S3Storage(
            bucket=bucket,
            prefix=prefix,
            conn=conn or Connection(),
            endpoint_url=s3_endpoint_url,
            object_lock=object_lock,
            append_only=append_only,
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
