"""The data files' encoding (repo/datafile.py): what the backup writes, restore, convert,
export and verify read back, byte for byte."""

from __future__ import annotations

import base64
import gzip
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippolyte.repo import datafile
from hippolyte.repo.verify import _LineChecker

LINES = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30)


def _feed(data: bytes, *, size: int, gzip_: bool = True) -> tuple[list[bytes], bytes]:
    lines = datafile.Lines(gzip=gzip_)
    out: list[bytes] = []
    for i in range(0, len(data), size):
        out += lines.feed(data[i : i + size])
    return out, lines.finish()


@given(LINES, st.integers(min_value=1, max_value=64))
def test_lines_come_back_whatever_the_chunking(lines: list[bytes], size: int) -> None:
    body = b"".join(line + b"\n" for line in lines)
    gz = datafile.compressor()
    data = gz.compress(body) + gz.flush()
    assert gzip.decompress(data) == body  # an ordinary gzip stream
    assert _feed(data, size=size) == (lines, b"")
    assert _feed(body + b"tail", size=size, gzip_=False) == (lines, b"tail")


def test_a_truncated_or_foreign_stream_is_named() -> None:
    data = gzip.compress(b'{"Item": {}}\n' * 1000)
    with pytest.raises(datafile.GzipError, match="truncated gzip stream"):
        _feed(data[:-20], size=1 << 20)
    with pytest.raises(datafile.GzipError, match="not a valid gzip file"):
        _feed(b"\x1f\x8bnot gzip at all", size=4)


def test_checksums_are_the_manifests_encodings() -> None:
    sums = datafile.Checksums()
    for part in (b"abc", b"", b"def" * 1000):
        sums.update(part)
    whole = b"abc" + b"def" * 1000
    assert sums.size == len(whole)
    assert sums.sha256 == hashlib.sha256(whole).hexdigest()
    assert sums.md5 == base64.b64encode(hashlib.md5(whole).digest()).decode()


def test_verify_reports_a_truncated_file_and_a_missing_last_newline() -> None:
    good = b'{"Item": {"pk": {"S": "a"}}}\n' * 50
    checker = _LineChecker("f")
    checker.feed(gzip.compress(good)[:-12])
    assert checker.finish() == ["f: truncated gzip stream"]
    checker = _LineChecker("f")
    checker.feed(gzip.compress(good + b'{"Item": {}}'))
    assert checker.finish() == ["f line 51: last line has no newline"] and checker.count == 51
