"""The one retry helper above botocore's own retries.

botocore (standard mode) already retries throttling, 5xx, dropped connections and bad CRCs a
few times within seconds. When that is not enough, the operation calls ``retrying``: the same
request again after a longer, jittered backoff, so a long throttling episode slows a backup
down instead of failing it. Only errors marked ``retryable`` are retried; nothing is skipped.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

from hippolyte.core.errors import HippolyteError, Interrupted

T = TypeVar("T")


def retrying(
    call: Callable[[], T],
    *,
    attempts: int = 8,
    base_s: float = 2.0,
    cap_s: float = 60.0,
    stop: threading.Event | None = None,
    on_retry: Callable[[HippolyteError, float], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    rng = rng or random.Random()
    for attempt in range(attempts):
        try:
            return call()
        except HippolyteError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            delay = rng.uniform(0, min(cap_s, base_s * 2**attempt))  # full jitter
            if on_retry:
                on_retry(exc, delay)
            if stop is not None and stop.wait(delay):
                raise Interrupted("stopped while waiting to retry") from exc
            if stop is None:
                threading.Event().wait(delay)
    raise AssertionError("unreachable")
