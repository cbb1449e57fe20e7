"""Issue 16: the repository lock under a race. Two ``serve`` processes and a Lambda invocation,
each through its own lock path (tests/support/lock_race.py), try for one repository's lock
every round, all at once, with S3-like latency on every lock request: 100 rounds on moto S3,
on rclone's S3 (which ignores conditional writes: the listed protocol) and on a folder.
Target: never two holders at once. ``make test`` runs the same race with 10 rounds.

Standalone: ``python bench/bench_lock.py [--quick]`` prints its metrics.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.support import lock_race  # noqa: E402

import servers  # noqa: E402
from common import Report, isolate_aws, metric  # noqa: E402

NAME = "lock"
TITLE = "Repository lock: two serve processes and a Lambda racing, 100 rounds per repository"
LATENCY_S = 0.03  # as tests/test_lock_race.py


def run(*, quick: bool) -> Report:
    isolate_aws()
    rounds = 10 if quick else 100
    report = Report(name=NAME, title=TITLE, quick=quick)
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        for where in ("moto", "rclone", "folder"):
            began = time.monotonic()
            outcome = _race(where, Path(tmp) / where, rounds=rounds)
            seconds = time.monotonic() - began
            report.raw[where] = {
                "rounds": rounds,
                "holds": outcome.holds,
                "overlaps": outcome.overlaps,
                "seconds": seconds,
            }
            report.metrics += [
                metric(f"{where}_overlaps", f"{where}: two holders at once",
                       len(outcome.overlaps), "", at_most=1, digits=0),
                metric(f"{where}_holds", f"{where}: holds per round", outcome.per_round, "",
                       digits=2),
                metric(f"{where}_round_s", f"{where}: seconds per round", seconds / rounds, "s",
                       digits=2),
            ]
    report.notes.append(
        f"{rounds} rounds of 3 contenders; each holds for {lock_race.HOLD_S} s; lock requests "
        f"lag 0..{LATENCY_S} s each way, one in five 3-8 times that. More than one hold per "
        "round is fine (one after another); an overlap is not."
    )
    return report


def _race(where: str, tmp: Path, *, rounds: int) -> lock_race.Outcome:
    tmp.mkdir(parents=True)
    record = tmp / "holders"
    if where == "folder":
        return lock_race.race(str(tmp / "repo"), rounds=rounds, latency=LATENCY_S, record=record)
    start = servers.start_moto if where == "moto" else (lambda: servers.start_rclone_s3(tmp / "s3"))
    with start() as server:
        env = servers.aws_env(server, services=["s3"])
        os.environ.update(env)
        try:
            url = f"s3://{servers.create_bucket(server)}/repo"
            return lock_race.race(url, rounds=rounds, latency=LATENCY_S, record=record, env=env)
        finally:
            for name in env:
                os.environ.pop(name, None)
            isolate_aws()


# -- standalone ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    width = max(len(m.label) for m in result.metrics)
    for m in result.metrics:
        verdict = "" if m.ok is None else ("  ok" if m.ok else "  MISSED")
        print(f"  {m.label:<{width}}  {m.shown()}{verdict}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
