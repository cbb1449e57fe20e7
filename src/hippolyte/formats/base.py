"""Backups to read from: the ``Source`` every format is read through, and the reading they share.

A ``Source`` is a list of data files plus what is known about them (counts, checksums, the
table's schema when the format records it) and a way to turn each line into one item in
DynamoDB's wire JSON. Formats:

- ``hippolyte``: our own repository format (docs/design.md); trusted only with ``_SUCCESS``.
- ``native-export``: DynamoDB's Export to S3 (see ``formats.native``).
- ``datapipeline``: the Data Pipeline / EMR connector export the original Hippolyte wrote
  (see ``formats.datapipeline``).

``formats.open.open_source`` tells them apart; this module holds what they share.

Reading never trusts a file blindly: ``check_file`` streams it once, verifying its checksum
and that every line is an item whose top level is valid DynamoDB JSON and whose key matches
the schema, so that a restore can refuse a file before writing any of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, ConfigError
from hippolyte.core.model import BackupRef, Json
from hippolyte.core.proof import Digest
from hippolyte.repo import datafile

TYPE_TAGS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})

ToWire = Callable[[bytes], bytes]  # one data line -> one item's DynamoDB JSON


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    key: str  # storage key, from the storage's root
    item_count: int | None = None
    sha256: str | None = None  # hex
    md5: str | None = None  # base64


@dataclass(frozen=True, kw_only=True)
class KeySchema:
    """The key attributes: [(name, type)] with the hash key first."""

    attributes: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> KeySchema:
        """``pk:S[,sk:N]`` as given to ``--key``."""
        attrs = []
        for part in text.split(","):
            name, _, kind = part.strip().rpartition(":")
            if not name or kind not in {"S", "N", "B"}:
                raise ConfigError(
                    f"--key {text!r}: expected NAME:TYPE[,NAME:TYPE], TYPE one of S, N, B"
                )
            attrs.append((name, kind))
        if not 1 <= len(attrs) <= 2:
            raise ConfigError(f"--key {text!r}: give a partition key and at most one sort key")
        return cls(attributes=tuple(attrs))

    @classmethod
    def from_description(cls, desc: Json) -> KeySchema:
        types = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
        ordered = sorted(desc["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        return cls(
            attributes=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ordered)
        )


@dataclass(frozen=True, kw_only=True)
class Source:
    kind: str  # hippolyte | native-export | datapipeline
    storage: Storage
    location: str  # for messages: where the backup is
    files: list[SourceFile]
    to_wire: ToWire
    description: Json | None = None  # DescribeTable's Table, if the format records it
    extras: Json = field(default_factory=dict)  # timeToLive, tags, pointInTimeRecovery
    item_count: int | None = None
    ref: BackupRef | None = None

    def schema(self) -> KeySchema | None:
        return KeySchema.from_description(self.description) if self.description else None


def item_of_export_line(line: bytes) -> bytes:
    """``{"Item": {...}}`` -> ``{...}``, the item's bytes untouched."""
    line = line.strip()
    if line.startswith(b'{"Item":') and line.endswith(b"}"):
        return line[8:-1]
    doc = msgspec.json.decode(line)  # other spacing: decode to find the item
    if not isinstance(doc, dict) or set(doc) != {"Item"}:
        raise ValueError('not an {"Item": {...}} line')
    return msgspec.json.encode(doc["Item"])


# --- reading and checking files --------------------------------------------------------------

_item_shape = msgspec.json.Decoder(dict[str, dict[str, msgspec.Raw]])


def check_item(item: bytes, schema: KeySchema | None) -> dict[str, dict[str, msgspec.Raw]]:
    """Top-level DynamoDB JSON: every attribute one known type tag; key attributes present
    with the schema's types. Nested values are checked by DynamoDB itself."""
    attrs = _item_shape.decode(item)
    for name, value in attrs.items():
        if len(value) != 1 or next(iter(value)) not in TYPE_TAGS:
            raise ValueError(f"attribute {name!r} is not a DynamoDB value: {sorted(value)}")
    if schema is not None:
        for name, kind in schema.attributes:
            key_value = attrs.get(name)
            if key_value is None:
                raise ValueError(f"key attribute {name!r} is missing")
            if kind not in key_value:
                raise ValueError(
                    f"key attribute {name!r} is {next(iter(key_value))}, the schema says {kind}"
                )
    return attrs


def iter_lines(
    source: Source, f: SourceFile, *, on_chunk: Callable[[bytes], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a data file, gzip or plain (detected by its magic bytes);
    ``on_chunk`` sees the file's bytes as read (to checksum them on the same pass)."""
    with source.storage.open_read(f.key) as src:
        chunk = src.read(datafile.READ_CHUNK)
        lines = datafile.Lines(gzip=chunk[:2] == datafile.GZIP_MAGIC)
        n = 0
        try:
            while chunk:
                if on_chunk is not None:
                    on_chunk(chunk)
                for line in lines.lines(chunk):
                    n += 1
                    if line.strip():
                        yield n, line
                chunk = src.read(datafile.READ_CHUNK)
            tail = lines.finish()
        except datafile.GzipError as exc:
            raise BackupCorrupt(f"{_where(source, f)}: {exc}") from exc
        if tail.strip():
            yield n + 1, tail


def iter_items(
    source: Source,
    f: SourceFile,
    *,
    schema: KeySchema | None,
    check: bool = True,
    on_chunk: Callable[[bytes], None] | None = None,
) -> Iterator[bytes]:
    """Items of one file in wire JSON; raises BackupCorrupt naming the file and line.
    ``check=False`` for a file ``check_file`` already checked: each line is only turned into
    wire JSON (the load)."""
    to_wire = source.to_wire
    for n, line in iter_lines(source, f, on_chunk=on_chunk):
        try:
            item = to_wire(line)
            if check:
                check_item(item, schema)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BackupCorrupt(f"{_where(source, f)} line {n}: {exc}") from exc
        yield item


@dataclass
class FileCheck:
    items: int = 0
    raw_bytes: int = 0
    digest: Digest | None = None  # of the file's items, when asked for


def checked_items(source: Source, f: SourceFile, *, schema: KeySchema | None) -> Iterator[bytes]:
    """Every item of one file in wire JSON, each line checked as it is read; once the file is
    read, its checksums and item count against the manifest's. A file that changed since the
    backup says so, rather than what broke in it. Raises BackupCorrupt naming file and line."""
    sums = _Sums(f)
    items = 0
    try:
        for item in iter_items(source, f, schema=schema, on_chunk=sums.update):
            items += 1
            yield item
    except BackupCorrupt:
        whole = _Sums(f)
        with source.storage.open_read(f.key) as src:
            while chunk := src.read(datafile.READ_CHUNK):
                whole.update(chunk)
        whole.check(_where(source, f))
        raise
    sums.check(_where(source, f))
    if f.item_count is not None and items != f.item_count:
        raise BackupCorrupt(f"{_where(source, f)}: {items} items, the manifest says {f.item_count}")


def check_file(
    source: Source, f: SourceFile, *, schema: KeySchema | None, digest: bool = False
) -> FileCheck:
    """Read a whole file before any of it is written, in one pass: checksums, lines, keys,
    count, and (``digest``) the proof's digest of its items."""
    result = FileCheck(digest=Digest() if digest else None)
    for item in checked_items(source, f, schema=schema):
        result.items += 1
        result.raw_bytes += len(item)
        if result.digest is not None:
            result.digest.add(item)
    return result


class _Sums:
    """The checksums a manifest records for a file, computed over the bytes read."""

    def __init__(self, f: SourceFile):
        self.f = f
        self.sums = datafile.Checksums(sha256=bool(f.sha256), md5=bool(f.md5))
        self.update = self.sums.update

    def check(self, where: str) -> None:
        if self.f.sha256 and self.sums.sha256 != self.f.sha256:
            raise BackupCorrupt(f"{where}: sha256 mismatch (the file changed since the backup)")
        if self.f.md5 and self.sums.md5 != self.f.md5:
            raise BackupCorrupt(f"{where}: md5 mismatch (the file changed since the backup)")


def _where(source: Source, f: SourceFile) -> str:
    return f.key if "://" in f.key else f"{source.storage.url.rstrip('/')}/{f.key}"
