"""What both kinds of repository storage share: sizes, reserved names, the shape of a key, and
the append-only guard."""

from __future__ import annotations

import hashlib
from typing import Protocol

from hippolyte.core.errors import (
    ConfigError,
    RepositoryError,
)

PART_SIZE = 8 * 1024 * 1024  # multipart threshold and part size; also the in-memory spool cap
PROBE_PREFIX = ".hippolyte-probe-"
COMMITTED = "_SUCCESS"  # the marker that commits a folder; append-only storage never deletes it


class _Guarded(Protocol):
    url: str
    append_only: bool


def refuse_delete(storage: _Guarded, key: str) -> None:
    """Append-only storage never deletes a commit marker: what was committed stays."""
    if storage.append_only and key.rsplit("/", 1)[-1] == COMMITTED:
        raise RepositoryError(
            f"repository {storage.url} is append-only for this process (append_only = true): "
            f"{key!r} was not deleted"
        )


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


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
