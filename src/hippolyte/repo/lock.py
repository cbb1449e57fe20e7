"""One run at a time: a lease-based lock object in the repository.

``@locks/run.json`` holds the holder (host, pid, a random token), when it was taken and when its
lease ends. The holder renews the lease while it works. A lock whose holder is gone (on this
host: its pid is dead; elsewhere: its lease ended unrenewed) is stale and is taken over, which
is logged. After writing, the taker reads the lock back and owns it only if
its token is there (last writer wins on S3 and on a folder alike).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from hippolyte.adapters.storage import Storage
from hippolyte.core.errors import NotFound

log = logging.getLogger("hippolyte.lock")
KEY = "@locks/run.json"  # "@": never a table name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RepoLock:
    storage: Storage
    lease_s: float
    purpose: str = "run"
    key: str = KEY  # the lock object; a table's capture has its own
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _read(self) -> dict[str, object] | None:
        try:
            return dict(orjson.loads(self.storage.get_bytes(self.key)))
        except (NotFound, orjson.JSONDecodeError):
            return None

    def _write(self) -> None:
        now = self.clock()
        self.storage.put_bytes(
            self.key,
            orjson.dumps(
                {
                    "token": self.token,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "purpose": self.purpose,
                    "acquired": now.isoformat(),
                    "expires": (now + dt.timedelta(seconds=self.lease_s)).isoformat(),
                }
            ),
        )

    def stale(self, held: dict[str, object]) -> bool:
        """On this host, the holder is gone once its pid is (a kill -9 need not wait for the
        lease to end); elsewhere, once it stopped renewing its lease."""
        if held.get("host") == socket.gethostname():
            return not _pid_alive(int(str(held.get("pid", 0))))
        expires = dt.datetime.fromisoformat(str(held["expires"]))
        return expires <= self.clock()  # another host that stopped renewing its lease

    def acquire(self) -> bool:
        held = self._read()
        if held is not None and held.get("token") != self.token:
            if not self.stale(held):
                log.info("lock busy", extra={"holder": held})
                return False
            log.warning("taking over a stale lock", extra={"holder": held})
        self._write()
        time.sleep(0.05)
        mine = (self._read() or {}).get("token") == self.token
        if mine:
            self._renew_in_background()
        return mine

    def _renew_in_background(self) -> None:
        self._stop.clear()

        def renew() -> None:
            while not self._stop.wait(self.lease_s / 3):
                if (self._read() or {}).get("token") == self.token:
                    self._write()

        threading.Thread(target=renew, daemon=True, name="hippolyte-lock").start()

    def release(self) -> None:
        self._stop.set()
        if (self._read() or {}).get("token") == self.token:
            self.storage.delete(self.key)
