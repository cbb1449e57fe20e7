"""Re-read every file of a backup and check it against its manifests.

Checks, per data file: size, sha256 and md5 of the stored bytes; that it decompresses; that
every line is a JSON object ``{"Item": {...}}``; the line count against ``itemCount``. Per
backup: ``_SUCCESS`` present, ``manifest-files.json`` agrees with ``hippolyte.json``, no data
file that no manifest lists, totals agree with ``manifest-summary.json``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import HippolyteError
from hippolyte.core.model import BackupRef, FileEntry
from hippolyte.repo import catalog, changes, datafile, manifest


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


def verify_all(
    storage: Storage, *, workers: int = 4, read_files: bool = True
) -> list[VerifyReport]:
    """Every backup folder of the repository, the incomplete ones reported as failures (a
    folder without ``_SUCCESS`` is never usable; a run still writing one shows it too), then
    every committed change set of every table."""
    reports = [
        verify(storage, ref, workers=workers, read_files=read_files)
        for ref in catalog.refs(storage)
    ]
    for table in catalog.tables(storage):
        reports += verify_changes(storage, table)
    return reports


def verify_changes(storage: Storage, table: str) -> list[VerifyReport]:
    """Each committed change set of ``table``: every file re-read, its sha256 and count
    against the manifest, every line a change (a bad one named by file and line)."""
    reports = []
    try:
        sets = changes.change_sets(storage, table)
    except HippolyteError as exc:
        ref = BackupRef(repo=storage.url, table=table, backup_id=changes.CHANGES.rstrip("/"))
        return [VerifyReport(ref=ref, problems=[str(exc)])]
    for c in sets:
        ref = BackupRef(repo=storage.url, table=table, backup_id=f"{changes.CHANGES}{c.id}")
        report = VerifyReport(ref=ref)
        for f in c.files:
            try:
                report.items += sum(1 for _ in changes.read_file(storage, c, f))
            except HippolyteError as exc:
                report.problems.append(str(exc))
            report.files += 1
            report.stored_bytes += f.size
        reports.append(report)
    return reports


def verify(
    storage: Storage, ref: BackupRef, *, workers: int = 4, read_files: bool = True
) -> VerifyReport:
    """``read_files=False``: the manifests only, the counts as they record them, for a
    caller that reads every file itself next (the restore's check pass: ``verify --items``,
    ``monitor --verify``), so that no file is read twice."""
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
    if not read_files:
        report.files = len(files)
        report.items = sum(f.item_count for f in files)
        report.stored_bytes = sum(f.size for f in files)
        return report
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
    sums = datafile.Checksums()
    lines = _LineChecker(name)
    try:
        with storage.open_read(ref.prefix + f.key) as src:
            while chunk := src.read(datafile.READ_CHUNK):
                sums.update(chunk)
                lines.feed(chunk)
    except HippolyteError as exc:
        return [str(exc)], 0, 0
    problems = lines.finish()
    if sums.size != f.size:
        problems.append(f"{name}: size {sums.size} bytes, manifest says {f.size}")
    if sums.sha256 != f.sha256:
        problems.append(f"{name}: sha256 mismatch")
    if sums.md5 != f.md5:
        problems.append(f"{name}: md5 mismatch")
    if not lines.broken and lines.count != f.item_count:
        problems.append(f"{name}: {lines.count} items, manifest says {f.item_count}")
    return problems, lines.count, sums.size


class _LineChecker:
    """Streams a gzip file: counts lines and checks each is {"Item": {...}}; keeps the first
    problem (a broken gzip stream ends the checking)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.problem: str | None = None
        self.broken = False
        self._lines = datafile.Lines()

    def feed(self, chunk: bytes) -> None:
        if self.broken:
            return
        try:
            complete = self._lines.feed(chunk)
        except datafile.GzipError as exc:
            self._fail(f"{self.name}: {exc}")
            return
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
                rest = self._lines.finish()
            except datafile.GzipError as exc:
                self._fail(f"{self.name}: {exc}")
            else:
                if rest.strip() and self.problem is None:
                    self.count += 1
                    self.problem = f"{self.name} line {self.count}: last line has no newline"
        return [self.problem] if self.problem else []


def _is_item_line(line: bytes) -> bool:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("Item"), dict) and len(doc) == 1
