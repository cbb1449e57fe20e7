"""One run at a time: a lease-based lock object in the repository.

``@locks/run.json`` holds the holder (host, pid, a random token), when it was taken and when its
lease ends. Taking, renewing and releasing it are compare-and-swaps on that one object, so two
contenders can never both win:

- take: create it only if absent (S3 ``PutObject`` with ``If-None-Match: *``; in a folder, a
  hard link of a complete temp file, which fails like ``O_EXCL`` if the name exists); a stale
  lock is replaced only if it is still the one read (``If-Match`` on its ETag);
- renew (a third of the lease) and release: ``If-Match`` on the ETag of our last write. A
  renewal that fails means another took the lock over after our lease ended: logged, the
  holder stops renewing (``lost``) and ``on_lost`` is set, which the holder's work stops on
  (``serve`` passes its job's stop event: a run that lost its lock stops as if interrupted,
  its boosts reverted, rather than run beside the one that took over).

In a folder the compare of a renew or release and its write run under an exclusive flock of
the repository's root folder (see ``LocalStorage``).

A lock whose holder is gone is stale and is taken over, which is logged: on this host once its
pid is dead (a kill -9 need not wait for the lease to end), elsewhere once its lease ended
unrenewed. Hosts must agree on the time to within much less than the lease.

An S3 server that ignores conditional writes (``rclone serve s3``) gets the listed protocol
instead, correct on any store whose listings are consistent with its writes: each contender
writes its own ``<key>.<token>``, then lists ``<key>*``; it holds the lock only once a listing
shows no live lock object but its own. Seeing a holder, or a contender with a smaller token,
it removes its own and gives up; seeing only contenders it outranks, it lists again shortly
(they withdraw). Of two winners, each listing would have had to precede the other's write,
which cannot be: at most one wins. This is logged once per process.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import HippolyteError, NotFound

log = logging.getLogger("hippolyte.lock")
KEY = "@locks/run.json"  # "@": never a table name
LISTED_TRIES = 10  # listed protocol: listings while only contenders we outrank are seen
_noted: set[str] = set()  # repositories already logged as using the listed protocol


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


@dataclass
class RepoLock:
    storage: Storage
    lease_s: float
    purpose: str = "run"
    key: str = KEY  # the lock object; a table's capture has its own
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=socket.gethostname)
    lost: bool = False  # set when a renewal finds the lock taken over
    on_lost: threading.Event | None = None  # set then too: the holder's work stops on it
    _etag: str | None = field(default=None, repr=False)  # of our last write; None: not held
    _listed: bool = field(default=False, repr=False)  # the listed protocol (no conditions)
    _acquired: dt.datetime | None = field(default=None, repr=False)
    _expires: dt.datetime | None = field(default=None, repr=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def held(self) -> bool:
        return self._etag is not None

    def _record(self, *, contending: bool = False) -> bytes:
        now = self.clock()
        self._acquired = self._acquired or now
        self._expires = now + dt.timedelta(seconds=self.lease_s)
        record = {
            "token": self.token,
            "host": self.host,
            "pid": os.getpid(),
            "purpose": self.purpose,
            "acquired": self._acquired.isoformat(),
            "expires": self._expires.isoformat(),
        }
        return orjson.dumps({**record, "contending": True} if contending else record)

    def stale(self, held: dict[str, Any]) -> bool:
        """On this host, the holder is gone once its pid is (a kill -9 need not wait for the
        lease to end); elsewhere, once it stopped renewing its lease. A record that cannot be
        read is stale."""
        try:
            if held.get("host") == self.host:
                return not _pid_alive(int(held["pid"]))
            expires = dt.datetime.fromisoformat(str(held["expires"]))
            return expires <= self.clock()
        except (KeyError, TypeError, ValueError):
            return True

    # -- acquire ---------------------------------------------------------------------------------

    def acquire(self) -> bool:
        if self.held:
            return self.renew()
        with self._mutex:
            self._acquired = None
            self._listed = not self.storage.conditional_writes()
            taken = self._take_listed() if self._listed else self._take()
            self.lost = False
        if taken:
            self._renew_in_background()
        return taken

    def _take(self) -> bool:
        try:
            data, etag = self.storage.get_tagged(self.key)
        except NotFound:
            self._etag = self.storage.put_if_absent(self.key, self._record())
            return self._busy_unless_held(None)
        held = _decode(data)
        if held is not None and held.get("token") == self.token:
            pass  # ours already (acquire twice): renew it
        elif held is not None and not self.stale(held):
            return self._busy_unless_held(held)
        else:
            log.warning("taking over a stale lock", extra={"holder": held, "key": self.key})
        self._etag = self.storage.replace_if(self.key, self._record(), etag)
        return self._busy_unless_held(None)

    def _busy_unless_held(self, holder: dict[str, Any] | None) -> bool:
        if self._etag is None:
            log.info("lock busy", extra={"holder": holder, "key": self.key})
        return self._etag is not None

    # -- the listed protocol, for a server without conditional writes ----------------------------

    @property
    def _mine(self) -> str:
        return f"{self.key}.{self.token}"

    def _take_listed(self) -> bool:
        if self.storage.url not in _noted:
            _noted.add(self.storage.url)
            log.warning(
                "this S3 server ignores conditional writes: the lock uses one object per "
                "contender and a listing instead (exclusive if its listings are consistent)",
                extra={"repository": self.storage.url},
            )
        self.storage.put_bytes(self._mine, self._record(contending=True))
        for _ in range(LISTED_TRIES):
            others, stale = self._others()
            if not others:
                self.storage.put_bytes(self._mine, self._record())
                self._etag = "listed"
                for key, holder in stale:
                    log.warning("taking over a stale lock", extra={"holder": holder, "key": key})
                    self.storage.delete(key)
                return True
            if any(not o.get("contending") or str(o.get("token")) < self.token for o in others):
                break  # a holder, or a contender that outranks us (it stays and wins)
            time.sleep(random.uniform(0.02, 0.1))  # the contenders we outrank withdraw
        self.storage.delete(self._mine)
        log.info("lock busy", extra={"holder": others[0], "key": self.key})
        return False

    def _others(self) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any] | None]]]:
        """The live lock objects of others, and the stale ones (key, record)."""
        live: list[dict[str, Any]] = []
        stale: list[tuple[str, dict[str, Any] | None]] = []
        for key in self.storage.list(self.key):
            if key == self._mine or not (key == self.key or key.startswith(self.key + ".")):
                continue
            try:
                held = _decode(self.storage.get_bytes(key))
            except NotFound:
                continue  # released meanwhile
            if held is None or self.stale(held):
                stale.append((key, held))
            else:
                live.append(held)
        return live, stale

    # -- renew and release -----------------------------------------------------------------------

    def renew(self) -> bool:
        """Extend the lease; False (and ``lost``) if the lock is no longer ours."""
        with self._mutex:
            if self._etag is None:
                return False
            if self._listed:
                expired = self._expires is not None and self._expires <= self.clock()
                if not expired and self.storage.exists(self._mine):
                    self.storage.put_bytes(self._mine, self._record())
                    return True
                etag = None
            else:
                etag = self.storage.replace_if(self.key, self._record(), self._etag)
            if etag is None:
                log.error(
                    "lock lost: another run took it over after our lease ended",
                    extra={"key": self.key, "repository": self.storage.url},
                )
                self.lost, self._etag = True, None
                self._stop.set()
                if self.on_lost is not None:
                    self.on_lost.set()
                return False
            self._etag = etag
            return True

    def _renew_in_background(self) -> None:
        self._stop.clear()

        def renew() -> None:
            while not self._stop.wait(self.lease_s / 3):
                try:
                    if not self.renew():
                        return
                except HippolyteError as exc:  # the next renewal may get through
                    log.warning("cannot renew the lock", extra={"error": str(exc)})

        threading.Thread(target=renew, daemon=True, name="hippolyte-lock").start()

    def release(self) -> None:
        self._stop.set()
        with self._mutex:
            etag, self._etag = self._etag, None
            if etag is None:
                return
            if self._listed:
                self.storage.delete(self._mine)
            else:
                self.storage.delete_if(self.key, etag)
