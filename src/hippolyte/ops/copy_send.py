"""One file of a copy, sent and proven to have arrived whole.

The bytes are hashed as they are read from the source (sha256, and MD5 for S3), checked against
the source's manifest when it records the file (data files: sha256, size, MD5), and the
destination must prove it holds those bytes:

- S3: every PUT and UploadPart carries Content-MD5 (AWS and rclone refuse a body that differs);
  the ETag S3 answers, the MD5 of what it stored (``md5(part md5s)-N`` for a multipart upload),
  must be ours too (moto does not check Content-MD5; the ETag catches it). The object records
  its sha256 in its metadata, so that a copy resumed later recognises it without sending it
  again.
- any other storage (a folder): written through ``open_write`` (the file appears only when
  complete), then read back and its sha256 compared.

A file that arrived different is sent again (three attempts); one that left the source
different from its manifest is never sent (the source is damaged: BackupCorrupt).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from hippolyte.adapters.storage import PART_SIZE, Storage
from hippolyte.core.errors import BackupCorrupt, Interrupted, Transient
from hippolyte.core.retry import retrying
from hippolyte.repo import datafile

SHA_META = "sha256"  # the S3 user metadata that records an object's sha256 (hex)
ATTEMPTS = 3


@runtime_checkable
class CheckedUploads(Protocol):
    """What an S3 destination offers beyond ``Storage``: uploads S3 checks on arrival."""

    def head(self, key: str) -> tuple[int, str, dict[str, str]] | None: ...
    def put_checked(
        self, key: str, data: bytes | BinaryIO, *, md5: str, metadata: dict[str, str]
    ) -> str: ...
    def start_parts(self, key: str, *, metadata: dict[str, str]) -> str: ...
    def put_part(self, key: str, upload_id: str, number: int, data: bytes, *, md5: str) -> str: ...
    def finish_parts(self, key: str, upload_id: str, etags: list[str]) -> str: ...
    def abort_parts(self, key: str, upload_id: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class FileJob:
    """A file to copy: its key (the same in both repositories) and what the source's manifest
    records of it, when it does."""

    key: str
    size: int | None = None
    sha256: str | None = None  # hex
    md5: str | None = None  # base64
    items: int = 0


@dataclass(frozen=True, kw_only=True)
class Sent:
    job: FileJob
    size: int
    sent: bool  # False: the destination already held it, matching


class NotAsSent(Transient):
    """What the destination holds differs from what was read from the source."""


class Sender:
    """Sends files from ``source`` to ``dest``. To S3, each body (a small file, or a part of a
    big one, PART_SIZE at most) is read under one of ``parts + 2`` slots, so that many at most
    are in memory and in flight; the parts go through a pool of ``parts`` threads."""

    def __init__(
        self, source: Storage, dest: Storage, *, parts: int = 8, stop: threading.Event | None = None
    ) -> None:
        self.source, self.dest, self.stop = source, dest, stop
        self._pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="copy-part")
        self._slots = threading.BoundedSemaphore(parts + 2)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def send(self, job: FileJob, *, maybe_there: bool) -> Sent:
        """Copy one file, again while what arrived differs (``maybe_there``: the destination
        may already hold it, from a copy that stopped)."""
        return retrying(
            lambda: self._send_once(job, maybe_there=maybe_there),
            attempts=ATTEMPTS,
            base_s=0.2,
            cap_s=2.0,
            stop=self.stop,
        )

    def _send_once(self, job: FileJob, *, maybe_there: bool) -> Sent:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted("copy stopped; nothing half-committed")
        if isinstance(self.dest, CheckedUploads):
            return self._to_s3(self.dest, job, maybe_there=maybe_there)
        return self._streamed(job, maybe_there=maybe_there)

    # -- S3 -------------------------------------------------------------------------------------

    def _to_s3(self, dest: CheckedUploads, job: FileJob, *, maybe_there: bool) -> Sent:
        if maybe_there and job.sha256 is not None and _holds(dest, job):
            return Sent(job=job, size=job.size or 0, sent=False)
        size = job.size if job.size is not None else self.source.size(job.key)
        with self.source.open_read(job.key) as src:
            if _recorded(job) and size <= STREAM_MAX and _seekable(src):
                # a file on disk its manifest records: one PUT straight from the file
                return self._put_recorded(dest, job, src, size, maybe_there=maybe_there)
            if size > PART_SIZE:
                return self._put_parts(dest, job, src)
            with self._slot():  # at most ``parts + 2`` bodies in memory, parts included
                data = _read_full(src, PART_SIZE + 1)
                return self._put_one(dest, job, data, maybe_there=maybe_there)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    def _put_one(
        self, dest: CheckedUploads, job: FileJob, data: bytes, *, maybe_there: bool
    ) -> Sent:
        if _recorded(job) and job.size == len(data):
            return self._put_recorded(dest, job, data, len(data), maybe_there=maybe_there)
        md5 = hashlib.md5(data, usedforsecurity=False)
        sha = hashlib.sha256(data).hexdigest()
        _check_source(job, size=len(data), sha256=sha, md5=_b64(md5.digest()))
        if maybe_there and _holds(dest, job, sha256=sha, etag=md5.hexdigest(), size=len(data)):
            return Sent(job=job, size=len(data), sent=False)
        etag = dest.put_checked(job.key, data, md5=_b64(md5.digest()), metadata={SHA_META: sha})
        if etag != md5.hexdigest():
            raise NotAsSent(
                f"{job.key}: S3 stored other bytes (ETag {etag}, sent MD5 {md5.hexdigest()})"
            )
        return Sent(job=job, size=len(data), sent=True)

    def _put_recorded(
        self,
        dest: CheckedUploads,
        job: FileJob,
        body: bytes | BinaryIO,
        size: int,
        *,
        maybe_there: bool,
    ) -> Sent:
        """A file its manifest records (MD5, sha256, size): the manifest's MD5 goes as
        Content-MD5, so the server (or, where it does not check, the ETag) proves that what
        it stored is exactly what the manifest records: nothing is hashed here unless that
        proof fails, and then only to tell a damaged source from a damaged transfer. ``body``:
        the bytes, or the open, seekable file (read as it is sent: no copy in memory)."""
        assert job.md5 is not None and job.sha256 is not None
        want = base64.b64decode(job.md5).hex()
        if maybe_there and _holds(dest, job, sha256=job.sha256, etag=want, size=size):
            return Sent(job=job, size=size, sent=False)
        try:
            etag = dest.put_checked(job.key, body, md5=job.md5, metadata={SHA_META: job.sha256})
        except Transient:
            self._source_intact(job, body)
            raise
        if etag != want:
            self._source_intact(job, body)
            raise NotAsSent(f"{job.key}: S3 stored other bytes (ETag {etag}, manifest MD5 {want})")
        return Sent(job=job, size=size, sent=True)

    @staticmethod
    def _source_intact(job: FileJob, body: bytes | BinaryIO) -> None:
        if isinstance(body, bytes):
            data = body
        else:  # the file as it is on disk now: read again, whole (only after a failed proof)
            body.seek(0)
            data = body.read()
        _check_source(
            job,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            md5=_b64(hashlib.md5(data, usedforsecurity=False).digest()),
        )

    def _put_parts(self, dest: CheckedUploads, job: FileJob, src: BinaryIO) -> Sent:
        meta = {SHA_META: job.sha256} if job.sha256 else {}
        upload = dest.start_parts(job.key, metadata=meta)
        try:
            sha, digests, size = self._send_parts(dest, job, upload, src)
            _check_source(job, size=size, sha256=sha, md5=None)
            etag = dest.finish_parts(job.key, upload, [d.hex() for d in digests])
        except BaseException:
            dest.abort_parts(job.key, upload)
            raise
        want = f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"
        if etag != want:
            raise NotAsSent(f"{job.key}: S3 assembled other bytes (ETag {etag}, expected {want})")
        return Sent(job=job, size=size, sent=True)

    def _send_parts(
        self, dest: CheckedUploads, job: FileJob, upload: str, src: BinaryIO
    ) -> tuple[str, list[bytes], int]:
        """Each part read under a slot and hashed in order, then sent by the pool (which frees
        the slot); (sha256, part MD5s, size)."""
        sha, size = hashlib.sha256(), 0
        digests: list[bytes] = []
        futures: list[Future[None]] = []
        try:
            while True:
                self._slots.acquire()
                data = b""
                try:
                    if self.stop is not None and self.stop.is_set():
                        raise Interrupted("copy stopped; nothing half-committed")
                    data = _read_full(src, PART_SIZE)
                finally:
                    if not data:
                        self._slots.release()
                if not data:
                    break
                sha.update(data)
                size += len(data)
                digests.append(hashlib.md5(data, usedforsecurity=False).digest())
                number = len(digests)
                futures.append(
                    self._pool.submit(self._part, dest, job, upload, number, data, digests[-1])
                )
            for f in futures:
                f.result()
        finally:
            for f in futures:
                f.cancel()
        return sha.hexdigest(), digests, size

    def _part(
        self,
        dest: CheckedUploads,
        job: FileJob,
        upload: str,
        number: int,
        data: bytes,
        digest: bytes,
    ) -> None:
        try:
            etag = dest.put_part(job.key, upload, number, data, md5=_b64(digest))
            if etag != digest.hex():
                raise NotAsSent(f"{job.key}: part {number} stored as other bytes (ETag {etag})")
        finally:
            self._slots.release()

    # -- any storage: write, then read back --------------------------------------------------

    def _streamed(self, job: FileJob, *, maybe_there: bool) -> Sent:
        if maybe_there and self.dest.exists(job.key):
            there = _sums(self.dest, job.key)
            want = job.sha256 or _sums(self.source, job.key).sha256  # a manifest: small
            if there.sha256 == want and there.size == (job.size or there.size):
                return Sent(job=job, size=there.size, sent=False)
        sums = datafile.Checksums(md5=job.md5 is not None)
        with self.source.open_read(job.key) as src, self.dest.open_write(job.key) as out:
            while chunk := src.read(datafile.READ_CHUNK):
                sums.update(chunk)
                out.write(chunk)
            # inside the with-block: a source that differs from its manifest is never written
            _check_source(
                job, size=sums.size, sha256=sums.sha256, md5=sums.md5 if job.md5 else None
            )
        there = _sums(self.dest, job.key)
        if there.sha256 != sums.sha256 or there.size != sums.size:
            raise NotAsSent(f"{self.dest.url}/{job.key}: read back, it differs from what was sent")
        return Sent(job=job, size=sums.size, sent=True)


def _holds(
    dest: CheckedUploads,
    job: FileJob,
    *,
    sha256: str | None = None,
    etag: str | None = None,
    size: int | None = None,
) -> bool:
    """The destination holds this file already: same size, the sha256 recorded when it was sent
    (only after S3 had checked every part), and an ETag that fits."""
    found = dest.head(job.key)
    if found is None:
        return False
    there_size, there_etag, meta = found
    want_size = size if size is not None else job.size
    if meta.get(SHA_META) != (sha256 or job.sha256) or there_size != want_size:
        return False
    if etag is None and job.md5 is not None and there_size <= PART_SIZE:
        etag = base64.b64decode(job.md5).hex()
    if etag is not None:
        return there_etag == etag
    return there_etag.endswith(f"-{-(-there_size // PART_SIZE)}")


def _check_source(job: FileJob, *, size: int, sha256: str, md5: str | None) -> None:
    """What was read is what the source's manifest records, else the source is damaged."""
    bad = (
        (job.size is not None and size != job.size)
        or (job.sha256 is not None and sha256 != job.sha256)
        or (job.md5 is not None and md5 is not None and md5 != job.md5)
    )
    if bad:
        raise BackupCorrupt(
            f"{job.key}: the source file differs from its manifest ({size} bytes read); "
            "not copied (run `hippolyte verify` on the source)"
        )


def _sums(storage: Storage, key: str) -> datafile.Checksums:
    sums = datafile.Checksums(md5=False)
    with storage.open_read(key) as f:
        while chunk := f.read(datafile.READ_CHUNK):
            sums.update(chunk)
    return sums


STREAM_MAX = 512 * 1024 * 1024  # a file on disk up to this size goes in one PUT from the file


def _recorded(job: FileJob) -> bool:
    """Its manifest records what S3 can check on arrival (MD5) and what we keep (sha256)."""
    return job.md5 is not None and job.sha256 is not None and job.size is not None


def _seekable(src: BinaryIO) -> bool:
    """A file on disk (botocore reads it to sign and checksum, then rewinds to send it); a
    network stream is not."""
    try:
        return bool(src.seekable()) and isinstance(src.fileno(), int)
    except (AttributeError, OSError, ValueError):
        return False


def _read_full(src: BinaryIO, n: int) -> bytes:
    """``n`` bytes, fewer only at the end (a network stream may return less per read)."""
    chunks, got = [], 0
    while got < n:
        chunk = src.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()
