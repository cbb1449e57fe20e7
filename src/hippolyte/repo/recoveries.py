"""What a recovery saves in the repository, before and while it writes into a live table.

Layout (docs/design.md, "Recoveries")::

    <repo>/@recoveries/<recovery-id>/
        actions/<n>.json.gz   gzip JSON lines {"key", "seen", "target"}: the live item as the
                              recovery read it (the saved state) and the item it will write
        started.json          what is being recovered, where (written first)
        recovery.json         the record: what, where, options, and every actions file with
                              its item count, size, sha256 and md5 (the manifest)
        _SUCCESS              the saved state is complete; nothing is written before it
        progress/<n>.json     the outcomes of actions file n, once all of them are done
        forced/<n>-<k>.json.gz  versions a --force write replaced, saved before replacing,
        forced/<n>-<k>.json     then each one's record (sha256, count): checked when read
        result.json           the outcome of the last run over it (rewritten by --resume)

Every file is written whole (storage writes are atomic) and checked when read back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.diff import Key, key_of
from hippolyte.core.errors import BackupCorrupt, NotFound, RepositoryError
from hippolyte.core.recovery import RECORD_FORMAT, Action, is_recovery_id, parse_action
from hippolyte.repo import datafile

RECOVERIES = "@recoveries/"  # "@" cannot appear in a table name
STARTED = "started.json"
RECORD = "recovery.json"
SUCCESS = "_SUCCESS"
RESULT = "result.json"
ACTIONS_PER_FILE = 1000  # also the checkpoint's step


def prefix(recovery: str) -> str:
    return f"{RECOVERIES}{recovery}/"


def actions_key(n: int) -> str:
    return f"actions/{n:05d}.json.gz"


def progress_key(n: int) -> str:
    return f"progress/{n:05d}.json"


@dataclass(frozen=True, kw_only=True)
class SavedFile:
    key: str
    count: int
    size: int
    sha256: str
    md5: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "count": self.count,
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
        }


def write_lines(storage: Storage, key: str, lines: Iterable[bytes]) -> SavedFile:
    """One gzip JSON-lines file, written atomically, with its checksums."""
    gz, sums, count = datafile.compressor(), datafile.Checksums(), 0
    with storage.open_write(key) as out:
        for line in lines:
            data = gz.compress(line)
            out.write(data)
            sums.update(data)
            count += 1
        data = gz.flush()
        out.write(data)
        sums.update(data)
    return SavedFile(key=key, count=count, size=sums.size, sha256=sums.sha256, md5=sums.md5)


def read_lines(storage: Storage, key: str, *, sha256: str, count: int) -> list[bytes]:
    """A file written by ``write_lines``, checked against its record."""
    lines, sums = datafile.Lines(), datafile.Checksums(md5=False)
    out: list[bytes] = []
    try:
        with storage.open_read(key) as f:
            while chunk := f.read(datafile.READ_CHUNK):
                sums.update(chunk)
                out += lines.feed(chunk)
        rest = lines.finish()
    except datafile.GzipError as exc:
        raise BackupCorrupt(f"{storage.url}/{key}: {exc}") from None
    if rest or sums.sha256 != sha256 or len(out) != count:
        raise BackupCorrupt(f"{storage.url}/{key}: checksum or count differs from its record")
    return out


def save_actions(
    storage: Storage, recovery: str, actions: Iterable[Action]
) -> tuple[list[SavedFile], int]:
    """The actions (and so the saved live state), ACTIONS_PER_FILE to a file, taken one at a
    time; the files and how many of the actions are puts."""
    base, puts = prefix(recovery), 0
    saved: list[SavedFile] = []
    batch: list[bytes] = []

    def flush() -> None:
        f = write_lines(storage, base + actions_key(len(saved)), batch)
        saved.append(dataclasses.replace(f, key=actions_key(len(saved))))  # relative
        batch.clear()

    for action in actions:
        puts += action.target is not None
        batch.append(action.line())
        if len(batch) == ACTIONS_PER_FILE:
            flush()
    if batch:
        flush()
    return saved, puts


def start(storage: Storage, recovery: str, doc: dict[str, Any]) -> None:
    storage.put_bytes(prefix(recovery) + STARTED, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def started(storage: Storage, recovery: str) -> dict[str, Any] | None:
    try:
        return dict(orjson.loads(storage.get_bytes(prefix(recovery) + STARTED)))
    except (NotFound, orjson.JSONDecodeError):
        return None


def save_forced(storage: Storage, recovery: str, n: int, k: int, action: Action) -> None:
    """The version a --force write is about to replace, saved before it is: the data file,
    then its record (sha256, count). A data file without its record was never followed by
    a write, and is not read back."""
    key = f"{prefix(recovery)}forced/{n:05d}-{k:06d}"
    saved = write_lines(storage, key + ".json.gz", [action.line()])
    storage.put_bytes(key + ".json", orjson.dumps(saved.to_json()))


def forced(storage: Storage, recovery: str) -> list[Action]:
    """The versions --force replaced, oldest first, each file checked against its record."""
    out = []
    for key in sorted(storage.list(f"{prefix(recovery)}forced/")):
        if not key.endswith(".json") or key.endswith(".json.gz"):
            continue
        doc = orjson.loads(storage.get_bytes(key))
        lines = read_lines(storage, doc["key"], sha256=doc["sha256"], count=doc["count"])
        out += [parse_action(line, where=doc["key"]) for line in lines]
    return out


def commit(storage: Storage, recovery: str, record: dict[str, Any]) -> None:
    """The record, then _SUCCESS: the saved state is complete."""
    base = prefix(recovery)
    storage.put_bytes(base + RECORD, orjson.dumps(record, option=orjson.OPT_INDENT_2))
    storage.put_bytes(base + SUCCESS, b"")


def record(storage: Storage, recovery: str) -> dict[str, Any]:
    """A committed recovery's record; NotFound when there is none, RepositoryError when it is
    not complete (its saved state was never finished: nothing was written)."""
    if not is_recovery_id(recovery):
        raise NotFound(f"{recovery!r} is not a recovery id (see `hippolyte list --recoveries`)")
    base = prefix(recovery)
    try:
        doc = orjson.loads(storage.get_bytes(base + RECORD))
    except NotFound:
        raise NotFound(f"no recovery {recovery} in {storage.url}") from None
    except orjson.JSONDecodeError as exc:
        raise BackupCorrupt(f"{storage.url}/{base}{RECORD}: not JSON ({exc})") from None
    if doc.get("format") != RECORD_FORMAT:
        raise BackupCorrupt(f"{storage.url}/{base}{RECORD}: not a {RECORD_FORMAT} record")
    if not storage.exists(base + SUCCESS):
        raise RepositoryError(f"recovery {recovery} never finished saving; nothing was written")
    return dict(doc)


def actions(storage: Storage, recovery: str, doc: dict[str, Any]) -> Iterator[list[Action]]:
    """The actions of a committed recovery, file by file, each file checked."""
    base = prefix(recovery)
    for f in doc["files"]:
        lines = read_lines(storage, base + f["key"], sha256=f["sha256"], count=f["count"])
        yield [parse_action(line, where=f"{base}{f['key']}") for line in lines]


def progress(storage: Storage, recovery: str, n: int) -> dict[str, Any] | None:
    try:
        return dict(orjson.loads(storage.get_bytes(prefix(recovery) + progress_key(n))))
    except NotFound:
        return None


def save_progress(storage: Storage, recovery: str, n: int, tally: dict[str, Any]) -> None:
    storage.put_bytes(prefix(recovery) + progress_key(n), orjson.dumps(tally))


def save_result(storage: Storage, recovery: str, result: dict[str, Any]) -> None:
    storage.put_bytes(prefix(recovery) + RESULT, orjson.dumps(result, option=orjson.OPT_INDENT_2))


def result(storage: Storage, recovery: str) -> dict[str, Any] | None:
    try:
        return dict(orjson.loads(storage.get_bytes(prefix(recovery) + RESULT)))
    except NotFound:
        return None


def ids(storage: Storage) -> list[str]:
    return sorted(d for d in storage.list_dirs(RECOVERIES) if is_recovery_id(d))


def is_committed(storage: Storage, recovery: str) -> bool:
    return storage.exists(prefix(recovery) + SUCCESS)


def discard(storage: Storage, recovery: str) -> None:
    """An uncommitted recovery's files (it wrote nothing into the table)."""
    for key in list(storage.list(prefix(recovery))):
        storage.delete(key)


@dataclass(frozen=True, kw_only=True)
class RecoverySummary:
    id: str
    kind: str
    table: str
    backup: str
    created: str
    planned: int
    status: str  # saving | saved | done | incomplete
    proven: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "table": self.table,
            "backup": self.backup,
            "created": self.created,
            "planned": self.planned,
            "status": self.status,
            "proven": self.proven,
        }


def summaries(storage: Storage) -> list[RecoverySummary]:
    """Every recovery of the repository, oldest first."""
    out = []
    for rid in ids(storage):
        try:
            doc = record(storage, rid)
        except RepositoryError:  # never finished saving: what it was about, from started.json
            begun = started(storage, rid) or {}
            out.append(
                RecoverySummary(
                    id=rid,
                    kind=str(begun.get("kind", "?")),
                    table=str(begun.get("table", "?")),
                    backup=str(begun.get("backup", "?")),
                    created=str(begun.get("created", _created(rid))),
                    planned=0,
                    status="saving",
                    proven=None,
                )
            )
            continue
        res = result(storage, rid)
        out.append(
            RecoverySummary(
                id=rid,
                kind=str(doc.get("kind", "recover")),
                table=str(doc.get("table", "")),
                backup=str(doc.get("backup", "")),
                created=str(doc.get("created", "")),
                planned=int(doc.get("planned", 0)),
                status="saved" if res is None else str(res.get("status", "done")),
                proven=None if res is None else bool(res.get("proven")),
            )
        )
    return out


def _created(rid: str) -> str:
    head = rid.rpartition("-")[0]
    at = dt.datetime.strptime(head, "%Y-%m-%d-%H-%M-%S").replace(tzinfo=dt.UTC)
    return at.isoformat()


def unfinished(storage: Storage, *, backup: str, where: str, discard_saving: bool) -> str | None:
    """The last recovery of ``backup`` into the table at ``where`` (endpoint and ARN) that did
    not finish; ones that never finished saving (they wrote nothing) are removed when
    ``discard_saving``."""
    found = None
    for rid in ids(storage):
        doc = started(storage, rid)
        if doc is None or doc.get("backup") != backup or doc.get("where") != where:
            continue
        if not is_committed(storage, rid):
            if discard_saving:
                discard(storage, rid)
            continue
        res = result(storage, rid)
        if res is None or res.get("status") == "interrupted":
            found = rid
    return found


def _spec(doc: dict[str, Any]) -> Key:
    return tuple((str(n), str(k)) for n, k in doc["key"])


def skipped_keys(storage: Storage, recovery: str, doc: dict[str, Any]) -> set[bytes]:
    """The canonical keys a recovery skipped (left as the application had them)."""
    keys = set()
    for n in range(len(doc["files"])):
        saved = progress(storage, recovery, n)
        for s in (saved or {}).get("skipped_items", []):
            keys.add(key_of(s["key"], _spec(doc)))
    return keys


def forced_by_key(storage: Storage, recovery: str, doc: dict[str, Any]) -> dict[bytes, Action]:
    """The versions --force replaced, by canonical key (the last one of a key wins)."""
    return {key_of(orjson.loads(a.key), _spec(doc)): a for a in forced(storage, recovery)}
