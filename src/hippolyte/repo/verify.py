"""Re-read every file of a backup and check it against its manifests.

Checks, per data file: size, sha256 and md5 of the stored bytes; that it decompresses; that
every line is a JSON object ``{"Item": {...}}``; the line count against ``itemCount``. Per
backup: ``_SUCCESS`` present, ``manifest-files.json`` agrees with ``hippolyte.json``, no data
file that no manifest lists, totals agree with ``manifest-summary.json``.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import HippolyteError
from hippolyte.core.model import BackupRef, FileEntry
from hippolyte.repo import catalog, manifest

try:
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover
    import zlib as _zlib  # type: ignore[no-redef]

# isal's stubs declare `error` as an instance; at run time it is an exception class
_GZIP_ERRORS = cast(tuple[type[Exception], ...], (_zlib.error, EOFError))

READ_CHUNK = 1 << 20


@dataclass(kw_only=True)
class VerifyReport:
    ref: BackupRef
    problems: list[str] = field(default_factory=list)
    files: int = 0
    items: int = 0
    stored_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_all(storage: Storage, *, workers: int = 4) -> list[VerifyReport]:
    """Every backup folder of the repository, the incomplete ones reported as failures (a
    folder without ``_SUCCESS`` is never usable; a run still writing one shows it too)."""
    return [verify(storage, ref, workers=workers) for ref in catalog.refs(storage)]


def verify(storage: Storage, ref: BackupRef, *, workers: int = 4) -> VerifyReport:
    report = VerifyReport(ref=ref)
    catalog.require(storage, ref)
    if not catalog.is_complete(storage, ref):
        report.problems.append(f"{ref}: incomplete (no {manifest.SUCCESS}); never usable")
        return report
    try:
        doc = catalog.load_descriptor(storage, ref)
    except HippolyteError as exc:
        report.problems.append(str(exc))
        return report
    files: list[FileEntry] = doc["files"]
    report.problems += _check_manifests(storage, ref, files, doc)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for problems, items, size in pool.map(lambda f: _check_file(storage, ref, f), files):
            report.problems += problems
            report.items += items
            report.stored_bytes += size
            report.files += 1
    return report


def _check_manifests(
    storage: Storage, ref: BackupRef, files: list[FileEntry], doc: dict
) -> list[str]:
    problems = []
    where = f"{ref}/{manifest.MANIFEST_FILES}"
    try:
        rows = manifest.parse_manifest_files(
            storage.get_bytes(ref.prefix + manifest.MANIFEST_FILES), where=where
        )
    except HippolyteError as exc:
        return [str(exc)]
    listed = {r.get("dataFileS3Key", "").removeprefix(ref.prefix): r for r in rows}
    for f in files:
        row = listed.pop(f.key, None)
        if row is None:
            problems.append(
                f"{ref}/{f.key}: in hippolyte.json but not in {manifest.MANIFEST_FILES}"
            )
        elif row.get("itemCount") != f.item_count or row.get("md5Checksum") != f.md5:
            problems.append(
                f"{ref}/{f.key}: {manifest.MANIFEST_FILES} disagrees with hippolyte.json"
            )
    for key in listed:
        problems.append(f"{ref}/{key}: in {manifest.MANIFEST_FILES} but not in hippolyte.json")
    known = {ref.prefix + f.key for f in files}
    for key in storage.list(ref.prefix + manifest.DATA_DIR):
        if key not in known:
            problems.append(f"{key}: data file that no manifest lists")
    try:
        summary = orjson.loads(storage.get_bytes(ref.prefix + manifest.MANIFEST_SUMMARY))
        total = sum(f.item_count for f in files)
        if summary.get("itemCount") != total or doc["backup"].get("itemCount") != total:
            problems.append(
                f"{ref}/{manifest.MANIFEST_SUMMARY}: itemCount "
                f"{summary.get('itemCount')} but the files hold {total}"
            )
    except (HippolyteError, orjson.JSONDecodeError) as exc:
        problems.append(f"{ref}/{manifest.MANIFEST_SUMMARY}: unreadable ({exc})")
    return problems


def _check_file(storage: Storage, ref: BackupRef, f: FileEntry) -> tuple[list[str], int, int]:
    """Hash every stored byte; decompress and check lines until the first problem."""
    name = f"{ref}/{f.key}"
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    lines = _LineChecker(name)
    size = 0
    try:
        with storage.open_read(ref.prefix + f.key) as src:
            while chunk := src.read(READ_CHUNK):
                size += len(chunk)
                sha.update(chunk)
                md5.update(chunk)
                lines.feed(chunk)
    except HippolyteError as exc:
        return [str(exc)], 0, 0
    problems = lines.finish()
    if size != f.size:
        problems.append(f"{name}: size {size} bytes, manifest says {f.size}")
    if sha.hexdigest() != f.sha256:
        problems.append(f"{name}: sha256 mismatch")
    if base64.b64encode(md5.digest()).decode() != f.md5:
        problems.append(f"{name}: md5 mismatch")
    if not lines.broken and lines.count != f.item_count:
        problems.append(f"{name}: {lines.count} items, manifest says {f.item_count}")
    return problems, lines.count, size


class _LineChecker:
    """Streams a gzip file: counts lines and checks each is {"Item": {...}}."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.problem: str | None = None
        self._gz = _zlib.decompressobj(31)
        self._tail = b""
        self.broken = False

    def feed(self, chunk: bytes) -> None:
        if self.broken:
            return
        try:
            text = self._tail + self._gz.decompress(chunk)
        except _GZIP_ERRORS as exc:
            self._fail(f"{self.name}: not a valid gzip file ({exc})")
            return
        *complete, self._tail = text.split(b"\n")
        for line in complete:
            self.count += 1
            if self.problem is None and not _is_item_line(line):
                self.problem = f'{self.name} line {self.count}: not a {{"Item": {{...}}}} JSON line'

    def _fail(self, problem: str) -> None:
        self.broken = True
        self.problem = problem

    def finish(self) -> list[str]:
        if not self.broken:
            try:
                rest = self._tail + self._gz.flush()
            except _GZIP_ERRORS as exc:
                rest = b""
                self._fail(f"{self.name}: not a valid gzip file ({exc})")
            if not self.broken and not self._gz.eof:
                self._fail(f"{self.name}: truncated gzip stream")
            elif rest.strip() and self.problem is None:
                self.count += 1
                self.problem = f"{self.name} line {self.count}: last line has no newline"
        return [self.problem] if self.problem else []


def _is_item_line(line: bytes) -> bool:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("Item"), dict) and len(doc) == 1
