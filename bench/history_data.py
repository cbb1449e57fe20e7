"""The history benchmark's data and tools: a chain of change sets written straight into a
repository after a full backup (updates with new bodies, deletes, inserts), the state it leads
to (count and proof digest, computed here, independently of ops/pitr.py), and a measured child
process that runs until it is told to stop (``hippolyte capture``).
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core.proof import Digest
from hippolyte.repo import changes as change_sets
from hippolyte.repo.changes import Change, ChangeSetWriter, from_micros

sys.path.insert(0, str(Path(__file__).resolve().parent))

import items  # noqa: E402
from common import BENCH, ProcessRun  # noqa: E402
from rawscan import _Signer  # noqa: E402

DELETED = -1


# -- the chain -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Mix:
    """What the changes are, in per mille: updates of live keys (a new body each, a key often
    changed more than once), deletes of live keys, inserts of new keys (index count + n)."""

    updates: int = 800
    deletes: int = 100
    inserts: int = 100

    def pick(self, rnd: random.Random) -> str:
        roll = rnd.randrange(self.updates + self.deletes + self.inserts)
        if roll < self.updates:
            return "update"
        return "delete" if roll < self.updates + self.deletes else "insert"


@dataclass(frozen=True, kw_only=True)
class Chain:
    """A written chain: its change sets, the instant after its last change, and the state
    there (items and the restore proof's digest of them)."""

    sets: int
    changes: int
    kinds: dict[str, int]
    raw_bytes: int  # the change lines' JSON
    gzip_bytes: int
    first_stamp: int  # microseconds
    last_stamp: int
    end: int  # the last set's end (exclusive)
    at: dt.datetime  # T: after the last change, before the chain's end
    expected_items: int
    expected_digest: str
    write_s: float

    @property
    def at_text(self) -> str:
        return self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body(template: int) -> bytes:
    return items.template_bodies()[template]


def item_of(index: int, template: int) -> bytes:
    return items.key_json(index) + body(template)


def keys_of(index: int) -> bytes:
    return items.key_json(index) + b"}"


def stream_item_json(index: int) -> bytes:
    """Item ``index`` with its empty map made a NULL: DynamoDB Local drops the type of an
    empty map in stream images, which capture rightly refuses (tests/test_capture.py)."""
    return items.item_json(index).replace(b'"empty":{"M":{}}', b'"empty":{"NULL":true}')


def write_chain(storage: Storage, *, table: str, count: int, changes: int, sets: int,
                start: int, stamps_until: int, seed: int = 13, mix: Mix = Mix()) -> Chain:
    """``changes`` changes of a table whose backup (started at ``start``, in microseconds)
    holds items 0..count-1 (bench/items.py's), spread evenly over ``(start, stamps_until)``
    in ``sets`` change sets; the first set begins at the backup's start, each next one where
    the previous ends, the last just after T. Each change carries the key's new image (none
    for a delete) and its old one (NEW_AND_OLD_IMAGES, as capture writes them)."""
    began = time.monotonic()
    rnd = random.Random(seed)
    state = [i % items.TEMPLATES for i in range(count)]  # index -> template, or DELETED
    live = list(range(count))  # the keys that exist, for picks (swap-removed on delete)
    where = {i: i for i in range(count)}  # index -> its position in live
    step = max(1, (stamps_until - start) // (changes + 1))
    per_set = -(-changes // sets)
    kinds = {"update": 0, "delete": 0, "insert": 0}
    raw = gz = 0
    stamp = start
    writer: ChangeSetWriter | None = None
    written = 0
    for n in range(changes):
        stamp = start + step * (n + 1)
        if n % per_set == 0:
            if writer is not None:
                raw, gz = _commit(writer, end=stamp, raw=raw, gz=gz)
                written += 1
            writer = ChangeSetWriter(storage, table=table, start=from_micros(
                start if n == 0 else stamp))
        assert writer is not None
        kind = mix.pick(rnd) if live else "insert"
        kinds[kind] += 1
        if kind == "insert":
            index = len(state)
            state.append(rnd.randrange(items.TEMPLATES))
            where[index] = len(live)
            live.append(index)
            old = None
        else:
            index = live[rnd.randrange(len(live))]
            old = item_of(index, state[index])
            if kind == "delete":
                state[index] = DELETED
                spot, last = where.pop(index), live.pop()
                if last != index:
                    live[spot], where[last] = last, spot
            else:
                state[index] = (state[index] + 1 + rnd.randrange(items.TEMPLATES - 1)) \
                    % items.TEMPLATES
        new = None if state[index] == DELETED else item_of(index, state[index])
        writer.add(Change(stamp=stamp, keys=keys_of(index), new=new, old=old))
    at = stamp + 1000  # 1 ms after the last change
    end = at + 1000
    assert writer is not None and end <= stamps_until + 2000
    raw, gz = _commit(writer, end=end, raw=raw, gz=gz)
    written += 1
    write_s = time.monotonic() - began
    digest = Digest()
    alive = 0
    for index, template in enumerate(state):
        if template != DELETED:
            digest.add(item_of(index, template))
            alive += 1
    return Chain(sets=written, changes=changes, kinds=kinds, raw_bytes=raw, gzip_bytes=gz,
                 first_stamp=start + step, last_stamp=stamp, end=end,
                 at=from_micros(at - at % 1000), expected_items=alive,
                 expected_digest=digest.hex, write_s=write_s)


def _commit(writer: ChangeSetWriter, *, end: int, raw: int, gz: int) -> tuple[int, int]:
    done = writer.commit(end=from_micros(end), source={"synthetic": "bench/history_data.py"})
    return (raw + sum(f.raw_bytes for f in done.files), gz + sum(f.size for f in done.files))


# -- capture: writes at a fixed rate, commits -------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Written:
    index: int
    sent: float  # time.time() before the request
    acked: float  # time.time() after the answer


def write_at_rate(endpoint_url: str, table: str, *, rate: float, seconds: float, threads: int,
                  first: int) -> tuple[list[Written], float]:
    """Puts of items ``first``, ``first + 1``... (~1 KB each), the n-th due at start + n/rate,
    from ``threads`` keep-alive connections (signed raw HTTP); a thread that falls behind
    sends at once. Returns every write and the wall time from the start to the last answer."""
    total = int(rate * seconds)
    parts = urlsplit(endpoint_url)
    lock = threading.Lock()
    next_n = [0]
    done: list[Written] = []
    errors: list[BaseException] = []
    prefix = b'{"TableName":"%s","Item":' % table.encode()
    start = time.monotonic() + 0.2

    def worker() -> None:
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                              timeout=60)
            signer = _Signer(endpoint_url)
            mine: list[Written] = []
            while True:
                with lock:
                    n = next_n[0]
                    next_n[0] += 1
                if n >= total:
                    break
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                body = prefix + stream_item_json(first + n) + b"}"
                headers = signer.headers("PutItem", body)
                sent = time.time()
                conn.request("POST", "/", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                acked = time.time()
                if response.status != 200:
                    raise RuntimeError(f"PutItem answered {response.status}: {data[:300]!r}")
                mine.append(Written(index=first + n, sent=sent, acked=acked))
            conn.close()
            with lock:
                done.extend(mine)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    return done, time.monotonic() - start


def committed(root: Path, table: str) -> list[tuple[float, change_sets.ChangeSet]]:
    """The committed change sets with their commit time (their _SUCCESS file's mtime)."""
    storage = open_storage(str(root))
    out = []
    for cs in change_sets.change_sets(storage, table):
        marker = root / table / "@changes" / cs.id / "_SUCCESS"
        out.append((marker.stat().st_mtime_ns / 1e9, cs))
    return out


# -- a measured child that runs until stopped ------------------------------------------------------

class Background:
    """``command`` through bench/measure.py (so its CPU and peak RSS are its own, from
    ``wait4``), started now, stopped by ``stop()``: SIGTERM to the command itself (its pid,
    the launcher's one child), then wait for both; SIGKILL to the group after ``grace`` s."""

    def __init__(self, command: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
                 ) -> None:
        self.command = list(command)
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-background-")
        self._usage = Path(self._tmp.name) / "usage.json"
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "measure.py"), str(self._usage), "--", *command],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out: list[bytes] = []
        self._err: list[tuple[float, bytes]] = []
        out, err = self.proc.stdout, self.proc.stderr
        self._readers = [
            threading.Thread(target=lambda: self._out.append(out.read()), daemon=True),
            threading.Thread(target=lambda: self._err.extend(
                (time.monotonic() - self.began, line) for line in iter(err.readline, b"")),
                daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def child_pid(self) -> int | None:
        """The command's pid: the launcher's only child."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        pids = [int(p) for p in text.split()]
        return pids[0] if pids else None

    def stop(self, *, grace: float = 60.0) -> ProcessRun:
        pid = self.child_pid()
        if pid is not None and self.alive():
            os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        for reader in self._readers:
            reader.join()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        usage: dict[str, Any] = orjson.loads(self._usage.read_bytes()) if self._usage.exists() \
            else {"returncode": self.proc.returncode, "wall_s": time.monotonic() - self.began,
                  "user_s": 0.0, "sys_s": 0.0, "max_rss_kib": 0}
        self._tmp.cleanup()
        return ProcessRun(command=self.command, returncode=usage["returncode"],
                          wall_s=usage["wall_s"], user_s=usage["user_s"], sys_s=usage["sys_s"],
                          max_rss_mb=usage["max_rss_kib"] / 1024, stdout=b"".join(self._out),
                          stderr=self._err)
