"""diff's spill: one side's items in partition files on local disk, by a hash of their key,
and the private temporary folder they live in (removed whatever happens; one left by a killed
process, whose name holds its pid, is removed by the next diff)."""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from hippolyte.core.diff import partitions_of

PARTITION_BYTES = 16 << 20  # a partition of the first side is held in memory at once
MAX_PARTITIONS = 1024
BUFFER_BYTES = 32 << 20  # all partitions' write buffers of one side together
_IOV_MAX = 1024  # buffers per writev (Linux's IOV_MAX)
_HEADER = struct.Struct(">II")  # key length, item length
BATCH = 1000  # items keyed and spilled at a time
TMP_PREFIX = "hippolyte-diff-"


class Spill:
    """One side's items in ``n`` partition files, by a hash of their key. Thread-safe.
    ``divisor``: a partition split again (``split``) is partitioned by the hash's next digits
    (``hash // divisor mod n``), so its keys spread over the new files."""

    def __init__(self, folder: Path, side: str, partitions: int, *, divisor: int = 1) -> None:
        self.folder, self.side, self.divisor = folder, side, divisor
        self.paths = [folder / f"{side}-{i:05d}" for i in range(partitions)]
        # each partition's records not yet written, and their size: a list of the pieces, not
        # a bytearray (growing one copies each item ~8 times over)
        self._pending: list[list[bytes]] = [[] for _ in range(partitions)]
        self._sizes = [0] * partitions
        self._flush_at = max(4096, BUFFER_BYTES // partitions)
        self._lock = threading.Lock()
        self.items = 0

    def add(self, entries: list[tuple[bytes, bytes]]) -> None:
        """(canonical key, item) pairs."""
        places = partitions_of((key for key, _ in entries), len(self.paths), divisor=self.divisor)
        pending, sizes, flush_at, pack = self._pending, self._sizes, self._flush_at, _HEADER.pack
        with self._lock:
            self.items += len(entries)
            for p, (key, item) in zip(places, entries, strict=True):
                pending[p] += (pack(len(key), len(item)), key, item)
                size = sizes[p] = sizes[p] + _HEADER.size + len(key) + len(item)
                if size >= flush_at:
                    self._flush(p)

    def close(self) -> None:
        with self._lock:
            for p in range(len(self.paths)):
                self._flush(p)

    def _flush(self, p: int) -> None:
        pieces = self._pending[p]
        if pieces:
            fd = os.open(self.paths[p], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                for at in range(0, len(pieces), _IOV_MAX):  # no copy of the pieces into one
                    _write_all(fd, pieces[at : at + _IOV_MAX])
            finally:
                os.close(fd)
            pieces.clear()
            self._sizes[p] = 0

    def size(self, p: int) -> int:
        path = self.paths[p]
        return path.stat().st_size if path.exists() else 0

    def read(self, p: int) -> Iterator[tuple[bytes, bytes]]:
        """The (key, item) pairs of partition ``p``, in the order they came (the file is
        mapped, not read: each item is copied once, straight from the page cache)."""
        path = self.paths[p]
        size = self.size(p)
        if not size:
            return
        head, unpack = _HEADER.size, _HEADER.unpack_from
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = 0
            while at < size:
                k, n = unpack(data, at)
                at += head
                yield data[at : at + k], data[at + k : at + k + n]
                at += k + n

    def split(self, p: int, partitions: int) -> Spill:
        """Partition ``p`` spread over ``partitions`` new files (then removed)."""
        sub = Spill(
            self.folder, f"{self.side}.{p}", partitions, divisor=self.divisor * len(self.paths)
        )
        batch: list[tuple[bytes, bytes]] = []
        for entry in self.read(p):
            batch.append(entry)
            if len(batch) == BATCH:
                sub.add(batch)
                batch.clear()
        sub.add(batch)
        sub.close()
        self.paths[p].unlink(missing_ok=True)
        return sub


def _write_all(fd: int, pieces: list[bytes]) -> None:
    left = sum(map(len, pieces))
    while left:
        done = os.writev(fd, pieces)
        left -= done
        if left:  # a short write (rare on local disks): the rest, in one
            pieces = [b"".join(pieces)[done:]]


def spills(folder: Path, estimate: int) -> tuple[Spill, Spill]:
    n = min(MAX_PARTITIONS, max(1, math.ceil(estimate / PARTITION_BYTES)))
    return Spill(folder, "before", n), Spill(folder, "after", n)


@contextlib.contextmanager
def workspace(tmp_dir: Path | None) -> Iterator[Path]:
    """A private temporary folder, removed whatever happens; folders of dead diffs go too."""
    base = Path(tmp_dir) if tmp_dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    _sweep(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep(base: Path) -> None:
    """Remove the folders of diffs whose process is gone (killed with SIGKILL)."""
    for path in base.glob(f"{TMP_PREFIX}*"):
        pid = path.name.removeprefix(TMP_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
