"""The data files' encoding, written and read in one place: gzip (ISA-L when installed, an
ordinary gzip stream either way) of JSON lines, with the sha256, md5 and size our manifests
and the native export's record. Pure byte transforms: the callers own the I/O."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any, cast

try:  # ISA-L: ~4x zlib's speed at the same ratio, writes ordinary gzip
    from isal import isal_zlib as zlib
except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
    import zlib  # type: ignore[no-redef]

READ_CHUNK = 1 << 20
INFLATE_STEP = 4 << 20  # text inflated at a time (Lines.lines)
GZIP_MAGIC = b"\x1f\x8b"
LEVEL = 1  # ISA-L level 1: the ratio of zlib's default at a fraction of its time
# isal's stubs declare `error` as an instance; at run time it is an exception class
_GZIP_ERRORS = cast(tuple[type[Exception], ...], (zlib.error, EOFError))


class GzipError(ValueError):
    """The bytes are not a whole gzip stream; the message says what is wrong."""


def compressor() -> Any:
    """A gzip (not raw deflate) compressor at our level."""
    return zlib.compressobj(LEVEL, zlib.DEFLATED, 31)


class Lines:
    """A file's bytes, fed chunk by chunk, as complete lines: gunzipped when ``gzip``."""

    def __init__(self, *, gzip: bool = True) -> None:
        self._gz = zlib.decompressobj(31) if gzip else None
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk``, without their newlines."""
        return list(self.lines(chunk))

    def lines(self, chunk: bytes) -> Iterator[bytes]:
        """``feed``, inflating at most INFLATE_STEP bytes at a time: a chunk of a file that
        gzips 60x would otherwise be 60 MiB of text at once."""
        data = chunk
        while data:
            try:
                text = self._gz.decompress(data, INFLATE_STEP) if self._gz else data
            except _GZIP_ERRORS as exc:
                raise GzipError(f"not a valid gzip file ({exc})") from exc
            data = self._gz.unconsumed_tail if self._gz else b""
            *lines, self._tail = (self._tail + text).split(b"\n")
            yield from lines

    def finish(self) -> bytes:
        """What follows the last newline (b"" in a well-formed file)."""
        if self._gz is None:
            return self._tail
        try:
            rest = self._tail + self._gz.flush()
        except _GZIP_ERRORS as exc:
            raise GzipError(f"not a valid gzip file ({exc})") from exc
        if not self._gz.eof:
            raise GzipError("truncated gzip stream")
        return rest


class Checksums:
    """sha256, md5 and size of the bytes seen; each hash only when asked for."""

    def __init__(self, *, sha256: bool = True, md5: bool = True) -> None:
        self._sha = hashlib.sha256() if sha256 else None
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0

    def update(self, chunk: bytes) -> None:
        if self._sha is not None:
            self._sha.update(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        """Hex, as hippolyte.json records it."""
        assert self._sha is not None, "sha256 was not asked for"
        return self._sha.hexdigest()

    @property
    def md5(self) -> str:
        """Base64, as the native export's ``md5Checksum``."""
        assert self._md5 is not None, "md5 was not asked for"
        return base64.b64encode(self._md5.digest()).decode()
