"""The restore's check pass: every file of the backup read and checked, and the proof's digest
of its items folded, before anything is written (``formats.base.check_file``); or, when the
backup carries the record of such a pass that applies (``repo.proofs``), only its stored
files hashed against their manifest.

The first restore (or drill) of a backup records what its check pass found; every later one
against the same key schema reads each stored byte once, through sha256, and decompresses
nothing before the load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import HippolyteError
from hippolyte.core.events import Emit, Note, discard
from hippolyte.core.model import BackupRef
from hippolyte.core.proof import Digest
from hippolyte.engines.pool import cpu_pool, cpus
from hippolyte.formats.base import (
    FileCheck,
    KeySchema,
    Source,
    SourceFile,
    check_file,
    check_stored,
)
from hippolyte.formats.hippolyte import open_backup
from hippolyte.repo import proofs

# From how many items the CPU-bound passes (check + digest, the proof's digest) spread over
# processes: below, starting them costs more than it saves.
PROCESS_MIN_ITEMS = 20_000


def processes_for(files: list[SourceFile], *, workers: int) -> int:
    """Processes for the CPU-bound passes: one per core up to ``workers`` for a large backup
    (each holds an interpreter of its own, ~50 MB), none below PROCESS_MIN_ITEMS."""
    counts = [f.item_count for f in files]
    large = None in counts or sum(c or 0 for c in counts) >= PROCESS_MIN_ITEMS
    return min(cpus(), workers) if large else 1


def check_files(
    source: Source,
    files: list[SourceFile],
    *,
    schema: KeySchema,
    workers: int,
) -> list[FileCheck]:
    """Check and digest every file, for a large backup over processes (``processes_for``)."""
    check = functools.partial(check_file, source, schema=schema, digest=True)
    processes = min(processes_for(files, workers=workers), len(files))
    with cpu_pool(processes, threads=workers, imports=[__name__]) as own:
        return list(own.map(check, files))


def check_backup(
    source: Source,
    *,
    schema: KeySchema,
    workers: int,
    emit: Emit,
    table: str,
    check: Callable[[list[SourceFile]], list[FileCheck]] | None = None,
) -> dict[SourceFile, FileCheck]:
    """Every file of ``source`` checked, with its digest: from the backup's record when one
    applies (the stored bytes hashed), else read in full (by ``check``, which takes the files
    and gives their checks in order, when given: a cluster's tasks), and then recorded."""
    record = _applying(source, schema)
    if record is not None:
        emit(
            Note(
                text=f"{source.location}: its items were checked by an earlier restore "
                f"({proofs.PROOF}); hashing its {len(source.files)} files only",
                table=table,
            )
        )
        with ThreadPoolExecutor(max_workers=max(1, workers)) as hashers:
            list(hashers.map(functools.partial(check_stored, source), source.files))
        found = {p.key: p for p in record.files}
        return {
            f: FileCheck(
                items=found[f.key].items,
                raw_bytes=found[f.key].raw_bytes,
                digest=Digest.from_hex(count=found[f.key].items, hex=found[f.key].digest),
            )
            for f in source.files
        }
    results = (
        check(source.files)
        if check is not None
        else check_files(source, source.files, schema=schema, workers=workers)
    )
    checks = dict(zip(source.files, results, strict=True))
    _record(source, schema, checks, emit=emit, table=table)
    return checks


def _digest_of(check: FileCheck) -> Digest:
    assert check.digest is not None, "check_files digests every file"
    return check.digest


def _recordable(source: Source) -> bool:
    return (
        source.kind == "hippolyte"
        and source.prefix is not None
        and all(f.sha256 for f in source.files)
    )


def _applying(source: Source, schema: KeySchema) -> proofs.ProofRecord | None:
    if not _recordable(source):
        return None
    assert source.prefix is not None
    record = proofs.load(source.storage, source.prefix)
    files = [(f.key, f.sha256) for f in source.files]
    return record if record is not None and record.applies(schema.attributes, files) else None


def _record(
    source: Source,
    schema: KeySchema,
    checks: dict[SourceFile, FileCheck],
    *,
    emit: Emit,
    table: str,
) -> None:
    """Record the pass for the next restore: only against the backup's own key schema (a
    ``--key`` given for this restore must not replace the record every other one uses). A
    repository that refuses the write (read-only access) costs the next restore a full pass,
    nothing else."""
    if not _recordable(source) or source.schema() != schema:
        return
    assert source.prefix is not None
    record = proofs.ProofRecord(
        schema=schema.attributes,
        files=tuple(
            proofs.FileProof(
                key=f.key,
                sha256=f.sha256 or "",
                items=c.items,
                raw_bytes=c.raw_bytes,
                digest=_digest_of(c).hex,
            )  # fmt: skip
            for f, c in checks.items()
        ),
    )
    try:
        proofs.save(source.storage, source.prefix, record)
    except (HippolyteError, OSError) as exc:
        emit(
            Note(
                text=f"{source.location}: could not record its check ({proofs.PROOF}): {exc}; "
                "the next restore checks it in full again",
                level="warning",
                table=table,
            )
        )


def check_items(
    storage: Storage, ref: BackupRef, *, workers: int, emit: Emit = discard
) -> list[str]:
    """``verify --items``: every item of the committed backup ``ref`` checked as its restore
    would check it before writing anything, and the result recorded (``proof.json``) so that
    the backup's first restore only hashes its files. The problems found, as messages."""
    try:
        source = open_backup(storage, ref.prefix, location=str(ref))
        schema = source.schema()
        assert schema is not None  # our format always records its table's description
        check_backup(source, schema=schema, workers=workers, emit=emit, table=ref.table)
    except HippolyteError as exc:
        return [str(exc)]
    return []
