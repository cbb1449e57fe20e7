"""The restore checkpoint: a small local JSON file, written atomically after every file that
was fully written, so ``--resume`` continues after a crash or Ctrl-C without loss."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson


def default_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hippolyte" / "restores"


@dataclass
class RestoreState:
    path: Path
    source: str
    target: str  # endpoint/region/table, for messages
    created_table: bool = False
    phase: str = "loading"  # loading -> loaded -> done
    done_files: list[str] = field(default_factory=list)

    @classmethod
    def location(cls, directory: Path, *, target: str) -> Path:
        digest = hashlib.sha256(target.encode()).hexdigest()[:16]
        return directory / f"restore-{digest}.json"

    @classmethod
    def load(cls, path: Path) -> RestoreState | None:
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        doc.pop("path", None)
        return cls(path=path, **doc)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = asdict(self)
        doc.pop("path")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".restore-", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
