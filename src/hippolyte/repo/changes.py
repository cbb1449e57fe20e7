"""Change sets: a table's changes between full backups, in the repository.

Both sources of changes (DynamoDB Streams read by ``capture``, DynamoDB's native incremental
export) are committed in one format, the native incremental export's. Layout
(docs/design.md, "Change sets")::

    <repo>/<table>/@changes/<from>/              from: UTC, microseconds; the set is [from, to)
        data/<n>.json.gz      gzip JSON lines, one change each:
                              {"Metadata": {"WriteTimestampMicros": {"N": "..."}},
                               "Keys": {...}, "NewImage": {...}, "OldImage": {...}}
                              (no NewImage: the key was deleted)
        manifest-files.json   native: itemCount, md5Checksum, etag, dataFileS3Key per file
        manifest-summary.json native incremental: version 2023-08-01, exportFromTime,
                              exportToTime, outputView, exportType INCREMENTAL_EXPORT
        hippolyte-changes.json  ours (``hippolyte-changes/1``): table, from, to, source (stream
                              shards and sequence ranges, or the export's ARN), and per file
                              its count, size, sha256, md5, first and last stamp
        _SUCCESS              written last: the commit marker

A change set covers ``[from, to)``: every change whose stamp falls in it is in the set, and
the sets of a chain follow each other (one's ``to`` is the next one's ``from``). Within a set
the changes of one key are in the order they happened (a stream's sequence order, parents'
shards before their children's); across sets, later sets hold later changes. Stamps are the
source's: an export's write time in microseconds; a stream record's
``ApproximateCreationDateTime`` (seconds on AWS, milliseconds on moto, minutes on DynamoDB
Local).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import BackupCorrupt, NotFound
from hippolyte.repo import datafile, manifest

CHANGES = "@changes/"
FORMAT = "hippolyte-changes/1"
MANIFEST = "hippolyte-changes.json"
SUMMARY_VERSION = "2023-08-01"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
FILE_MAX_RAW_BYTES = 64 << 20  # a new data file after this much JSON
ID_TIME = "%Y-%m-%dT%H-%M-%S.%fZ"
ID_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{6}Z$")


def micros(at: dt.datetime) -> int:
    """A time as integer microseconds since the epoch (UTC), the stamps' unit."""
    delta = at.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=value)


def set_id(start: dt.datetime) -> str:
    """A change set's folder: the start of its window."""
    return start.astimezone(dt.UTC).strftime(ID_TIME)


def is_set_id(value: str) -> bool:
    return bool(ID_RE.match(value))


def prefix(table: str, sid: str) -> str:
    return f"{table}/{CHANGES}{sid}/"


def change_line(
    *, stamp_micros: int, keys: bytes, new: bytes | None, old: bytes | None = None
) -> bytes:
    """One change, in the native incremental export's line format (DynamoDB JSON bytes in)."""
    parts = [
        b'{"Metadata":{"WriteTimestampMicros":{"N":"',
        str(stamp_micros).encode(),
        b'"}},"Keys":',
        keys,
    ]
    if new is not None:
        parts += [b',"NewImage":', new]
    if old is not None:
        parts += [b',"OldImage":', old]
    parts.append(b"}\n")
    return b"".join(parts)


@dataclass(frozen=True, kw_only=True)
class Change:
    stamp: int  # microseconds since the epoch
    keys: bytes  # DynamoDB JSON of the key attributes
    new: bytes | None  # the item after the change; None: deleted
    old: bytes | None = None  # the item before, when the source gave it


class _Number(msgspec.Struct):
    N: str


class _Metadata(msgspec.Struct):
    WriteTimestampMicros: _Number


class _Line(msgspec.Struct):
    # msgspec.Raw cannot be part of a union with None: an empty Raw means "absent"
    Metadata: _Metadata
    Keys: msgspec.Raw
    NewImage: msgspec.Raw = msgspec.Raw()
    OldImage: msgspec.Raw = msgspec.Raw()


_line = msgspec.json.Decoder(_Line)


def parse_change(line: bytes, *, where: str) -> Change:
    """One change line; its keys and images are kept as the bytes they are in the line."""
    try:
        doc = _line.decode(line)
        stamp = int(doc.Metadata.WriteTimestampMicros.N)
    except (msgspec.DecodeError, ValueError) as exc:
        raise BackupCorrupt(f"{where}: not a change line ({exc})") from None
    keys = bytes(doc.Keys)
    if not keys.startswith(b"{") or not orjson.loads(keys):
        raise BackupCorrupt(f"{where}: a change line without its Keys")
    new, old = bytes(doc.NewImage), bytes(doc.OldImage)
    return Change(stamp=stamp, keys=keys, new=_image(new), old=_image(old))


def _image(raw: bytes) -> bytes | None:
    return None if raw in (b"", b"null") else raw


@dataclass(frozen=True, kw_only=True)
class ChangeFile:
    key: str  # relative to the change set's folder
    count: int
    raw_bytes: int
    size: int
    sha256: str
    md5: str
    first: int | None  # the smallest stamp in the file
    last: int | None  # the largest

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "count": self.count,
            "rawBytes": self.raw_bytes,
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
            "firstStamp": self.first,
            "lastStamp": self.last,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ChangeFile:
        return cls(
            key=str(doc["key"]),
            count=int(doc["count"]),
            raw_bytes=int(doc.get("rawBytes", 0)),
            size=int(doc["size"]),
            sha256=str(doc["sha256"]),
            md5=str(doc["md5"]),
            first=doc.get("firstStamp"),
            last=doc.get("lastStamp"),
        )


@dataclass(frozen=True, kw_only=True)
class ChangeSet:
    """A committed change set."""

    table: str
    id: str
    start: int  # microseconds, inclusive
    end: int  # microseconds, exclusive
    source: dict[str, Any]
    files: list[ChangeFile] = field(default_factory=list)
    view: str = "NEW_AND_OLD_IMAGES"  # or NEW_IMAGE: no OldImage, inserts look like updates

    @property
    def prefix(self) -> str:
        return prefix(self.table, self.id)

    @property
    def count(self) -> int:
        return sum(f.count for f in self.files)


class ChangeSetWriter:
    """Writes one change set: ``add`` change lines (in order), then ``commit``. Data files are
    written whole and atomically (a new one after FILE_MAX_RAW_BYTES of JSON); nothing is
    visible to readers before ``_SUCCESS``."""

    def __init__(self, storage: Storage, *, table: str, start: dt.datetime) -> None:
        self.storage, self.table, self.start = storage, table, start
        self.id = set_id(start)
        self.prefix = prefix(table, self.id)
        if storage.exists(self.prefix + manifest.SUCCESS):
            raise BackupCorrupt(f"change set {table}/{CHANGES}{self.id} is already committed")
        for key in list(storage.list(self.prefix)):  # a writer that died before committing
            storage.delete(key)
        self.files: list[ChangeFile] = []
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._stamps: list[int] = []

    @property
    def count(self) -> int:
        return sum(f.count for f in self.files) + len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def add(self, change: Change) -> None:
        line = change_line(
            stamp_micros=change.stamp, keys=change.keys, new=change.new, old=change.old
        )
        self._pending.append(line)
        self._pending_bytes += len(line)
        self._stamps.append(change.stamp)
        if self._pending_bytes >= FILE_MAX_RAW_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        n = len(self.files)
        key = f"{manifest.DATA_DIR}{n:05d}.json.gz"
        gz, sums = datafile.compressor(), datafile.Checksums()
        with self.storage.open_write(self.prefix + key) as out:
            for data in (gz.compress(b"".join(self._pending)), gz.flush()):
                out.write(data)
                sums.update(data)
        self.files.append(
            ChangeFile(
                key=key,
                count=len(self._pending),
                raw_bytes=self._pending_bytes,
                size=sums.size,
                sha256=sums.sha256,
                md5=sums.md5,
                first=min(self._stamps),
                last=max(self._stamps),
            )
        )
        self._pending, self._pending_bytes, self._stamps = [], 0, []

    def commit(
        self, *, end: dt.datetime, source: dict[str, Any], view: str = "NEW_AND_OLD_IMAGES"
    ) -> ChangeSet:
        """The last data file, the manifests, then ``_SUCCESS``. An empty set is committed
        too: it says that nothing changed in its window."""
        self._flush()
        sid, base = self.id, self.prefix
        entries = [
            {
                "itemCount": f.count,
                "md5Checksum": f.md5,
                "etag": f.md5,
                "dataFileS3Key": base + f.key,
            }
            for f in self.files
        ]
        self.storage.put_bytes(
            base + manifest.MANIFEST_FILES, b"".join(orjson.dumps(e) + b"\n" for e in entries)
        )
        self.storage.put_bytes(
            base + manifest.MANIFEST_SUMMARY,
            orjson.dumps(
                {
                    "version": SUMMARY_VERSION,
                    "exportType": INCREMENTAL_EXPORT,
                    "exportFromTime": manifest.iso(self.start),
                    "exportToTime": manifest.iso(end),
                    "outputView": view,
                    "outputFormat": "DYNAMODB_JSON",
                    "itemCount": sum(f.count for f in self.files),
                    "manifestFilesS3Key": base + manifest.MANIFEST_FILES,
                },
                option=orjson.OPT_INDENT_2,
            ),
        )
        changes = ChangeSet(
            table=self.table,
            id=sid,
            start=micros(self.start),
            end=micros(end),
            source=source,
            files=list(self.files),
            view=view,
        )
        self.storage.put_bytes(base + MANIFEST, _manifest(changes))
        self.storage.put_bytes(base + manifest.SUCCESS, b"")
        return changes


def _manifest(changes: ChangeSet) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT,
            "table": changes.table,
            "id": changes.id,
            "from": manifest.iso(from_micros(changes.start)),
            "to": manifest.iso(from_micros(changes.end)),
            "fromMicros": changes.start,
            "toMicros": changes.end,
            "source": changes.source,
            "outputView": changes.view,
            "itemCount": changes.count,
            "files": [f.to_json() for f in changes.files],
        },
        option=orjson.OPT_INDENT_2,
    )


def load(storage: Storage, table: str, sid: str) -> ChangeSet:
    """A committed change set; NotFound if absent or not committed."""
    base = prefix(table, sid)
    if not storage.exists(base + manifest.SUCCESS):
        raise NotFound(f"no committed change set {table}/{CHANGES}{sid}")
    where = f"{storage.url}/{base}{MANIFEST}"
    try:
        doc = orjson.loads(storage.get_bytes(base + MANIFEST))
        if doc.get("format") != FORMAT:
            raise BackupCorrupt(f"{where}: not a {FORMAT} manifest")
        return ChangeSet(
            table=table,
            id=sid,
            start=int(doc["fromMicros"]),
            end=int(doc["toMicros"]),
            source=dict(doc.get("source") or {}),
            files=[ChangeFile.from_json(f) for f in doc["files"]],
            view=str(doc.get("outputView", "NEW_AND_OLD_IMAGES")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BackupCorrupt(f"{where}: {exc}") from None


def change_sets(storage: Storage, table: str) -> list[ChangeSet]:
    """The committed change sets of ``table``, oldest first (uncommitted ones are ignored)."""
    out = []
    for sid in sorted(storage.list_dirs(f"{table}/{CHANGES}")):
        if is_set_id(sid) and storage.exists(prefix(table, sid) + manifest.SUCCESS):
            out.append(load(storage, table, sid))
    return sorted(out, key=lambda c: (c.start, c.end))


def read_changes(storage: Storage, changes: ChangeSet) -> Iterator[Change]:
    """Every change of a set, in order, each file checked (sha256, count, every line)."""
    for f in changes.files:
        yield from read_file(storage, changes, f)


def read_file(storage: Storage, changes: ChangeSet, f: ChangeFile) -> Iterator[Change]:
    key = changes.prefix + f.key
    where = f"{storage.url}/{key}"
    lines, sums, n = datafile.Lines(), datafile.Checksums(md5=False), 0
    try:
        with storage.open_read(key) as src:
            while chunk := src.read(datafile.READ_CHUNK):
                sums.update(chunk)
                for line in lines.lines(chunk):
                    n += 1
                    yield parse_change(line, where=f"{where} line {n}")
        rest = lines.finish()
    except datafile.GzipError as exc:
        raise BackupCorrupt(f"{where}: {exc}") from None
    if rest:
        raise BackupCorrupt(f"{where}: the last line has no newline (a cut file)")
    if sums.sha256 != f.sha256:
        raise BackupCorrupt(f"{where}: its sha256 differs from the manifest's (changed since)")
    if n != f.count:
        raise BackupCorrupt(f"{where}: {n} changes, the manifest says {f.count}")


def write_checkpoint(storage: Storage, key: str, doc: dict[str, Any]) -> None:
    storage.put_bytes(key, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def read_checkpoint(storage: Storage, key: str) -> dict[str, Any] | None:
    try:
        return dict(orjson.loads(storage.get_bytes(key)))
    except NotFound:
        return None
