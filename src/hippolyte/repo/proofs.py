"""What a restore's check pass found in a backup, recorded beside it (``proof.json``).

Before writing anything, a restore reads every item of the backup, checks it and folds the
proof's digest of it (``formats.base.check_file``): that pass costs more CPU than the load.
Once it has passed, the result is recorded in the backup's folder: the key schema the items
were checked against and, for every data file, the sha256 of its stored bytes, its items, their
JSON bytes and their digest. A later restore or drill of the same backup against the same key
schema then only hashes the stored files: when every sha256 is the recorded one, the items are
the ones already checked and the recorded digest is the backup's side of the proof. A record
that does not apply (another key schema, a file added, removed or changed, an unreadable or
unknown record) is ignored and the files are checked in full, as if there were none.

The record is a cache, not part of the backup: written after ``_SUCCESS`` (never by a
backup), not copied, not needed by verify; forget removes it with the folder. A wrong digest
in it can only make the proof fail, never make a restore look proven: the proof compares it
with the digest of the restored table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import HippolyteError

PROOF = "proof.json"
FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class FileProof:
    key: str  # from the storage's root, as a Source lists it
    sha256: str  # hex, of the stored bytes
    items: int
    raw_bytes: int  # of the items' DynamoDB JSON
    digest: str  # hex, core.proof.Digest of the file's ``items`` items


@dataclass(frozen=True, kw_only=True)
class ProofRecord:
    schema: tuple[tuple[str, str], ...]  # (name, type), the hash key first
    files: tuple[FileProof, ...]

    def applies(
        self, schema: tuple[tuple[str, str], ...], files: Sequence[tuple[str, str | None]]
    ) -> bool:
        """Whether this record speaks for ``files`` ((key, sha256) each) checked against
        ``schema``: the same schema, and exactly the same files with the same sha256."""
        if tuple(schema) != self.schema or any(sha is None for _, sha in files):
            return False
        return sorted(files) == sorted((f.key, f.sha256) for f in self.files)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "schema": [list(a) for a in self.schema],
                "files": [
                    {
                        "key": f.key,
                        "sha256": f.sha256,
                        "items": f.items,
                        "rawBytes": f.raw_bytes,
                        "digest": f.digest,
                    }
                    for f in self.files
                ],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> ProofRecord | None:
        """None for anything this version does not read exactly (it is then ignored)."""
        try:
            doc = orjson.loads(data)
            if doc.get("format") != FORMAT:
                return None
            return cls(
                schema=tuple((str(n), str(t)) for n, t in doc["schema"]),
                files=tuple(
                    FileProof(
                        key=_text(f["key"]),
                        sha256=_text(f["sha256"]),
                        items=_count(f["items"]),
                        raw_bytes=_count(f["rawBytes"]),
                        digest=f"{int(_text(f['digest']), 16):064x}",
                    )
                    for f in doc["files"]
                ),
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return None


def _text(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError(v)
    return v


def _count(v: object) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(v)
    return v


def load(storage: Storage, prefix: str) -> ProofRecord | None:
    """The record in the backup folder ``prefix``, or None (none, unreadable, unknown)."""
    try:
        return ProofRecord.from_json(storage.get_bytes(prefix + PROOF))
    except HippolyteError:
        return None


def save(storage: Storage, prefix: str, record: ProofRecord) -> None:
    storage.put_bytes(prefix + PROOF, record.to_json())
