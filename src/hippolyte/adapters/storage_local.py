"""A repository in a local folder: atomic writes (a hidden temp file, fsynced and renamed),
listings that never show an incomplete file, and compare-and-swap for the lock."""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import errno
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from hippolyte.adapters.storage_common import (
    PROBE_PREFIX,
    _folder,
    check_key,
    md5_hex,
    refuse_delete,
)
from hippolyte.core.config import ObjectLock
from hippolyte.core.errors import (
    NotFound,
    RepositoryError,
)

_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")


class LocalStorage:
    def __init__(self, root: Path, *, append_only: bool = False) -> None:
        self.root = Path(os.path.abspath(root.expanduser()))
        self.url = str(self.root)
        self.bucket: str | None = None
        self.prefix = ""
        self.append_only = append_only
        self.object_lock: ObjectLock | None = None

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
        refuse_delete(self, key)
        path = self._path(key)
        with _local_errors(path, writing=True):
            path.unlink(missing_ok=True)
        self._prune(path.parent)

    def delete_many(self, keys: builtins.list[str]) -> None:
        for key in keys:
            refuse_delete(self, key)
        folders = set()
        for key in keys:
            path = self._path(key)
            with _local_errors(path, writing=True):
                path.unlink(missing_ok=True)
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            self._prune(folder)  # once per folder, deepest first

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

    def lock_enabled(self) -> bool:
        return False  # a folder has no Object Lock

    def locked_until(self, key: str) -> tuple[str, dt.datetime] | None:
        return None

    # -- conditional writes (the repository lock): compare-and-swap on one object ----------------
    # The "ETag" of a file is the hex MD5 of its bytes, as S3's of a plain PUT.

    def conditional_writes(self) -> bool:
        return True  # under the root folder's flock, below

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.get_bytes(key)
        return data, md5_hex(data)

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        path = self._path(key)
        with self._compare_and_swap():
            tmp = self._staged(path, data)
            try:
                os.link(tmp, path)  # as O_CREAT|O_EXCL: fails if the name exists, but the
            except FileExistsError:  # file appears whole, never empty or half written
                return None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise RepositoryError(f"cannot write {path}: {exc.strerror or exc}") from exc
                if not self._create_exclusive(path, data):  # no hard links on this file system
                    return None
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        return md5_hex(data)

    def _create_exclusive(self, path: Path, data: bytes) -> bool:
        """O_CREAT|O_EXCL, then the bytes: a reader may see the file short for a moment, which
        a compare-and-swap (under the flock, once it is whole) then refuses."""
        with _local_errors(path, writing=True):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with open(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return True

    def replace_if(self, key: str, data: bytes, etag: str) -> str | None:
        with self._compare_and_swap():
            if self._etag_now(key) != etag:
                return None
            self.put_bytes(key, data)
        return md5_hex(data)

    def delete_if(self, key: str, etag: str) -> bool:
        with self._compare_and_swap():
            if self._etag_now(key) != etag:
                return False
            self.delete(key)
        return True

    def _etag_now(self, key: str) -> str | None:
        try:
            return self.get_tagged(key)[1]
        except NotFound:
            return None

    def _staged(self, path: Path, data: bytes) -> Path:
        """``data`` in a hidden, fsynced temp file beside ``path`` (listings skip it)."""
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        with _local_errors(path, writing=True):
            with self._create(tmp) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return tmp

    @contextlib.contextmanager
    def _compare_and_swap(self) -> Iterator[None]:
        """An exclusive flock on the repository's root folder (never pruned) around a
        compare-and-swap: atomic between the processes of a host, and between hosts where the
        file system's locks are shared (NFSv4, not every SMB or FUSE mount). The kernel drops
        the flock of a killed process."""
        import fcntl

        with _local_errors(self.root, writing=True):
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and with it the flock


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
