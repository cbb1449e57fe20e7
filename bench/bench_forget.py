"""forget's decision over a large listing (issue 14, Speed): 10,000 tables x 400 backups
(4 million entries), pure, in memory. Target: under 5 s.

    .venv/bin/python bench/bench_forget.py [--tables N] [--backups N] [--repeat N]

Each table has about one backup a day for 400 days (start times jittered by up to 3 hours,
one in 50 incomplete), so the GFS policy (last 3, daily 7, weekly 4, monthly 12, yearly 3,
within 10d) has every bucket rule at work. Prints the time of `decide` (the best of the
repeats), the time to build the listing, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
from datetime import UTC, datetime, timedelta

from hippolyte.core.retention import Backup, KeepPolicy, decide

NOW = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)


def listing(tables: int, per_table: int, seed: int = 14) -> list[Backup]:
    rng = random.Random(seed)
    out = []
    day0 = NOW - timedelta(days=per_table)
    for t in range(tables):
        table = f"table-{t:05d}"
        for d in range(per_table):
            start = day0 + timedelta(days=d, seconds=rng.randrange(3 * 3600))
            bid = start.strftime("%Y%m%dT%H%M%SZ")
            out.append(Backup(table, bid, start, rng.random() >= 0.02))
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--backups", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policy = KeepPolicy(
        keep_last=3,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
        keep_yearly=3,
        keep_within="10d",
    )
    t0 = time.perf_counter()
    backups = listing(args.tables, args.backups)
    built = time.perf_counter() - t0
    print(f"listing: {len(backups):,} backups in {built:.1f} s, peak RSS {rss_mb():.0f} MB")
    times = []
    for _ in range(args.repeat):
        gc.collect()
        t0 = time.perf_counter()
        decision = decide(backups, None, policy, now=NOW)
        times.append(time.perf_counter() - t0)
        kept = sum(1 for e in decision.entries if e.action == "keep")
        del decision
    print(
        f"decide: {min(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)}), "
        f"{kept:,} kept of {len(backups):,}, peak RSS {rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
