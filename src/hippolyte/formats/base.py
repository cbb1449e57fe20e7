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
and that every line is an item DynamoDB would accept (``check_item``: every value at every
depth, numbers within DynamoDB's limits) whose key matches the schema, so that a restore can
refuse a file before writing any of it, naming the file, the line and the attribute.
"""

from __future__ import annotations

import binascii
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, ConfigError
from hippolyte.core.model import BackupRef, Json
from hippolyte.core.proof import Digest, number_text
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
    prefix: str | None = None  # the backup's folder, where a restore may record its proof

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

_item_shape = msgspec.json.Decoder(dict[str, Any])


def check_item(item: bytes, schema: KeySchema | None, *, canonical: bool = False) -> dict[str, Any]:
    """An item's DynamoDB JSON, decoded, checked as DynamoDB would check it (``check_values``);
    its key attributes present, of the schema's types, not empty. Raises ValueError (or
    msgspec.DecodeError for what is not JSON) saying what is wrong and where."""
    attrs: dict[str, Any] = _item_shape.decode(item)
    check_values(attrs, canonical=canonical)
    if schema is not None:
        for name, kind in schema.attributes:
            key_value = attrs.get(name)
            if key_value is None:
                raise ValueError(f"key attribute {name!r} is missing")
            if kind not in key_value:
                raise ValueError(
                    f"key attribute {name!r} is {next(iter(key_value))}, the schema says {kind}"
                )
            if key_value[kind] == "":
                raise ValueError(f"key attribute {name!r} is empty")
    return attrs


def check_values(attrs: dict[str, Any], *, canonical: bool = False) -> None:
    """Every attribute value of a decoded item, at every depth, as DynamoDB accepts it: one
    known type tag; S a string; N a number of at most 38 significant digits, 1E-130 to
    9.99..E+125 in magnitude; B base64; SS, NS, BS non-empty, without duplicates; M and L of
    such values; NULL true; BOOL true or false. Raises ValueError naming the attribute's path
    (``attribute "a.b[2]": "N" value "abc" is not a number``). ``canonical``: each value put
    in the proof's canonical form in place as it is checked (numbers respelled, sets sorted),
    for ``Digest.add_canonical``, at the cost of a look at each number."""
    try:
        _check_values(attrs.values(), canonical)
    except _Bad as bad:
        name = next(k for k, v in attrs.items() if v is bad.value)
        path = name + "".join(reversed(bad.path))
        raise ValueError(f"attribute {_quoted(path)}: {bad}") from None


class _Bad(ValueError):
    """A bad value, raised by the loop over its container's values; each enclosing container
    adds its key or index to ``path`` on the way out, found by the identity of ``value`` (a
    ``try`` costs nothing until it catches: no path is built for the values that are right)."""

    def __init__(self, what: str, value: Any) -> None:
        super().__init__(what)
        self.value = value  # the value object at the level being left
        self.path: list[str] = []


_SETS = frozenset({"SS", "NS", "BS"})
_a2b_base64 = binascii.a2b_base64


def _check_values(values: Iterable[Any], canonical: bool) -> None:
    """Raises _Bad for the first bad one of ``values`` (the members of one item, M or L).
    Written for speed: this runs for every value of every item a backup reader reads."""
    for value in values:
        if type(value) is not dict or len(value) != 1:
            shown = _json(sorted(value)) if type(value) is dict else _json_type(value)
            raise _Bad(f"expected one type tag, got {shown}", value)
        (tag,) = value
        v = value[tag]
        if tag == "S":
            if type(v) is not str:
                raise _Bad(f'"S" value must be a string, got {_json_type(v)}', value)
        elif tag == "N":
            if canonical:
                if type(v) is not str or _SHORT_CANONICAL_NUMBER(v) is None:
                    _check_number(v, "N", value)
                    value["N"] = number_text(v)
            # A plain number of 38 characters or fewer is within all of DynamoDB's limits.
            elif type(v) is not str or not (
                len(v) <= MAX_DIGITS
                and ((v.isascii() and v.isdigit()) or _PLAIN_NUMBER(v) is not None)
            ):
                _check_number(v, "N", value)
        elif tag == "B":
            try:
                _a2b_base64(v, strict_mode=True)
            except (binascii.Error, ValueError, TypeError):
                _base64(v, "B", value)  # says why
        elif tag == "M":
            if type(v) is not dict:
                raise _Bad(f'"M" value must be an object, got {_json_type(v)}', value)
            try:
                _check_values(v.values(), canonical)
            except _Bad as bad:
                bad.path.append("." + next(k for k, x in v.items() if x is bad.value))
                bad.value = value
                raise
        elif tag == "L":
            if type(v) is not list:
                raise _Bad(f'"L" value must be a list, got {_json_type(v)}', value)
            try:
                _check_values(v, canonical)
            except _Bad as bad:
                bad.path.append(f"[{next(i for i, x in enumerate(v) if x is bad.value)}]")
                bad.value = value
                raise
        elif tag == "BOOL":
            if type(v) is not bool:
                raise _Bad(f'"BOOL" value must be true or false, got {_json(v)}', value)
        elif tag == "NULL":
            if v is not True:
                raise _Bad(f'"NULL" value must be true, got {_json(v)}', value)
        elif tag in _SETS:
            canonical_members = _check_set(tag, v, value)
            if canonical:
                if not canonical_members:
                    v[:] = map(number_text, v)
                v.sort()
        else:
            raise _Bad(f"unknown type tag {_quoted(tag)}", value)


def _check_set(tag: str, v: Any, value: Any) -> bool:
    """Raises _Bad, or says whether the members are spelled as the proof's canonical form
    spells them (an NS of numbers that number_text would change: False)."""
    if type(v) is not list:
        raise _Bad(f"{_quoted(tag)} value must be a list, got {_json_type(v)}", value)
    if not v:
        raise _Bad(f"{_quoted(tag)} value is an empty set", value)
    if tag == "SS":
        for x in v:
            if type(x) is not str:
                raise _Bad(f'"SS" member must be a string, got {_json_type(x)}', value)
        members: list[object] = v
    elif tag == "NS":
        try:  # canonical numbers (as DynamoDB returns them) are equal only if spelled alike
            members = v if all(map(_SHORT_CANONICAL_NUMBER, v)) else []
        except TypeError:  # a member that is not a string
            members = []
        if not members:
            members = [_check_number(x, "NS", value) for x in v]
    else:
        members = [_base64(x, "BS", value) for x in v]
    if len(set(members)) != len(members):
        seen: set[object] = set()
        for x, m in zip(v, members, strict=True):
            if m in seen:
                raise _Bad(f"{_quoted(tag)} value holds {_json(x)} twice", value)
            seen.add(m)
    return members is v or tag != "NS"


MAX_DIGITS = 38  # significant digits of a DynamoDB number
MIN_EXPONENT, MAX_EXPONENT = -130, 125  # of its first significant digit: 1E-130 .. 9.9..E+125
_PLAIN = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_PLAIN_NUMBER = re.compile(_PLAIN).fullmatch
_NUMBER = re.compile(rf"{_PLAIN}(?:[eE][-+]?[0-9]+)?").fullmatch
# A number in the one spelling proof.number_text gives it, of 38 characters or fewer: within
# all of DynamoDB's limits.
_SHORT_CANONICAL_NUMBER = re.compile(
    r"(?=.{1,38}\Z)(?:-?(?:[1-9][0-9]*(?:\.[0-9]*[1-9])?|0\.[0-9]*[1-9])|0)"
).fullmatch


def _check_number(v: Any, tag: str, value: Any) -> Decimal:
    """The number ``v`` if it is one DynamoDB accepts, else raises _Bad."""
    if type(v) is not str:
        raise _Bad(f"{_quoted(tag)} value must be a string, got {_json_type(v)}", value)
    if _NUMBER(v) is None:
        raise _Bad(f"{_quoted(tag)} value {_json(v)} is not a number", value)
    try:
        number = Decimal(v)
    except InvalidOperation:  # an exponent beyond Decimal's own limits
        raise _Bad(f"{_quoted(tag)} value {_json(v)} is out of DynamoDB's range", value) from None
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    if len(digits) > MAX_DIGITS:
        raise _Bad(
            f"{_quoted(tag)} value {_json(v)} has {len(digits)} significant digits, "
            f"more than {MAX_DIGITS}",
            value,
        )
    if digits and not MIN_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
        raise _Bad(
            f"{_quoted(tag)} value {_json(v)} is out of DynamoDB's range "
            "(1E-130 to 9.9999999999999999999999999999999999999E+125 in magnitude)",
            value,
        )
    return number


def _base64(v: Any, tag: str, value: Any) -> bytes:
    if type(v) is not str:
        raise _Bad(f"{_quoted(tag)} value must be a base64 string, got {_json_type(v)}", value)
    try:
        return binascii.a2b_base64(v, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{_quoted(tag)} value {_json(v)} is not base64", value) from None


def _json_type(v: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if v is None else names.get(type(v), "a number")


def _json(v: Any, limit: int = 40) -> str:
    """A value as JSON, for a message; long ones cut."""
    text = msgspec.json.encode(v).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quoted(text: str) -> str:
    return _json(text, limit=200)


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
    digest: Digest | None = None,
) -> Iterator[bytes]:
    """Items of one file in wire JSON; raises BackupCorrupt naming the file and line.
    ``check=False`` for a file ``check_file`` already checked: each line is only turned into
    wire JSON (the load). ``digest`` (with ``check``) takes each item as checked, from the
    same decode."""
    to_wire = source.to_wire
    for n, line in iter_lines(source, f, on_chunk=on_chunk):
        try:
            item = to_wire(line)
            if check:
                attrs = check_item(item, schema, canonical=digest is not None)
                if digest is not None:
                    digest.add_canonical(attrs)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BackupCorrupt(f"{_where(source, f)} line {n}: {exc}") from exc
        yield item


@dataclass
class FileCheck:
    items: int = 0
    raw_bytes: int = 0
    digest: Digest | None = None  # of the file's items, when asked for


def checked_items(
    source: Source, f: SourceFile, *, schema: KeySchema | None, digest: Digest | None = None
) -> Iterator[bytes]:
    """Every item of one file in wire JSON, each line checked (and added to ``digest``) as it
    is read; once the file is read, its checksums and item count against the manifest's. A
    file that changed since the backup says so, rather than what broke in it. Raises
    BackupCorrupt naming file and line."""
    sums = _Sums(f)
    items = 0
    try:
        for item in iter_items(source, f, schema=schema, on_chunk=sums.update, digest=digest):
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
    for item in checked_items(source, f, schema=schema, digest=result.digest):
        result.items += 1
        result.raw_bytes += len(item)
    return result


def check_stored(source: Source, f: SourceFile) -> None:
    """The file's stored bytes against the sha256 its manifest records, nothing decompressed
    (a restore of a backup whose items a recorded check already read: repo.proofs)."""
    sums = _Sums(dataclasses.replace(f, md5=None))  # the sha256 alone proves every byte
    with source.storage.open_read(f.key) as src:
        while chunk := src.read(datafile.READ_CHUNK):
            sums.update(chunk)
    sums.check(_where(source, f))


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
