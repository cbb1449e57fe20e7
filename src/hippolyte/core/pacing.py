"""Read pacing: one token bucket per table, in read capacity units, shared by its segments.

A segment *reserves* its next page's estimated cost before sending it and sleeps off any debt,
so concurrent segments queue behind each other instead of bursting together; when the page
returns, the estimate is *settled* against the ``ConsumedCapacity`` DynamoDB reported. Over
any window the consumption is ``rate * window`` plus at most the bucket's burst and one page's
estimation error, which is why page sizes are capped at a couple of seconds of budget
(``page_limit``). When DynamoDB throttles us anyway (the application is busy), the rate
halves and recovers linearly over ``recovery_s``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

EC_BYTES_PER_RCU = 8192  # an eventually consistent read of up to 4 KB costs 0.5 RCU
MAX_PAGE_BYTES = 1024 * 1024  # DynamoDB returns at most 1 MB per Scan page
MIN_PAGE_UNITS = 0.5  # the least a Scan page costs
PROBE_ITEMS = 16  # items in a segment's first page, before its item size is known


class TokenBucket:
    def __init__(
        self,
        *,
        rate: float,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        recovery_s: float = 60.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._capacity = rate * burst_s
        self._level = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()
        self._penalty_at: float | None = None
        self._recovery_s = recovery_s

    def effective_rate(self, now: float | None = None) -> float:
        if self._penalty_at is None:
            return self.rate
        now = self._clock() if now is None else now
        progress = min(1.0, (now - self._penalty_at) / self._recovery_s)
        if progress >= 1.0:
            self._penalty_at = None
            return self.rate
        return self.rate * (0.5 + 0.5 * progress)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._level = min(self._capacity, self._level + elapsed * self.effective_rate(now))

    def reserve(self, units: float) -> float:
        """Take ``units`` now; return how long the caller must wait before using them."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._level -= units
            return 0.0 if self._level >= 0 else -self._level / self.effective_rate(now)

    def acquire(self, units: float, *, stop: threading.Event | None = None) -> None:
        wait = self.reserve(units)
        if wait <= 0:
            return
        if stop is not None:
            stop.wait(wait)
        else:
            self._sleep(wait)

    def settle(self, estimated: float, actual: float) -> None:
        """Correct a reservation with what the page really cost."""
        with self._lock:
            self._level -= actual - estimated

    def throttled(self) -> None:
        with self._lock:
            self._refill(self._clock())
            self._penalty_at = self._clock()


@dataclass
class PageSizer:
    """Chooses each segment's Scan ``Limit`` so one page costs at most ``max_page_s`` seconds
    of the table's budget, and estimates the next page's cost from what pages cost so far."""

    rate: float  # RCU/s for the whole table
    max_page_s: float = 2.0
    units_per_item: float | None = None  # learned from ConsumedCapacity

    def limit(self) -> int | None:
        if self.units_per_item is None:
            return PROBE_ITEMS  # a small first page teaches the per-item cost cheaply
        max_units = self.rate * self.max_page_s
        if max_units >= MAX_PAGE_BYTES / EC_BYTES_PER_RCU:  # a full 1 MB page fits: no Limit
            return None
        return max(1, math.floor(max_units / self.units_per_item))

    def estimate(self) -> float:
        if self.units_per_item is None:
            return MIN_PAGE_UNITS
        limit = self.limit()
        full_page = MAX_PAGE_BYTES / EC_BYTES_PER_RCU
        return full_page if limit is None else min(full_page, limit * self.units_per_item)

    def learn(self, *, items: int, consumed: float) -> None:
        if items <= 0 or consumed <= 0:
            return
        per_item = consumed / items
        self.units_per_item = (
            per_item if self.units_per_item is None else 0.7 * self.units_per_item + 0.3 * per_item
        )


def read_budget(
    *,
    on_demand: bool,
    read_capacity: int,
    read_percent: float,
    on_demand_units: float,
    max_read_request_units: int | None = None,
) -> float:
    """Read units per second the backup may use. Never zero: an on-demand table (which has
    no RCU) gets the configured request-unit budget, capped by the table's own maximum."""
    if on_demand or read_capacity <= 0:
        budget = on_demand_units
        if max_read_request_units:
            budget = min(budget, max_read_request_units * read_percent)
        return max(budget, 1.0)
    return max(read_capacity * read_percent, 0.5)


def segments_for(*, size_bytes: int, workers: int, override: int | None) -> int:
    """One segment per ~1 GB, at least one per worker, at most 1,000 (overridable)."""
    if override:
        return override
    by_size = math.ceil(size_bytes / (1 << 30)) if size_bytes else 1
    return max(workers, min(by_size, 1000))


class AdaptiveLimit:
    """How many requests may be in flight: halves when DynamoDB pushes back (throttling or
    unprocessed items), grows by about one per round of successes (AIMD)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self._active = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while self._active >= max(1, int(self.limit)):
                self._cond.wait()
            self._active += 1

    def release(self, *, pushed_back: bool) -> None:
        with self._cond:
            self._active -= 1
            if pushed_back:
                self.limit = max(1.0, self.limit / 2)
            else:
                self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
            self._cond.notify_all()


def write_units(item_bytes: int) -> int:
    """WCU to write an item: one per started KB (its JSON length slightly overestimates)."""
    return max(1, -(-item_bytes // 1024))
