"""14. fleet (issue 16): the nightly job on 50 tables, clean and behind the fault proxy in the
same run, then killed with SIGKILL at 10 moments its own events choose.

The fleet (tests/support/fleet.py) lives on DynamoDB Local with autoscaling on moto:
provisioned, on-demand, empty, GSI+LSI, boosted by the plan (with a scalable target and a
policy), one deleted mid-run, one of 400 KB items. ``hippolyte backup --all`` runs as a child
process through the fault proxy twice: faults off (clean), then on (20% throttling, 5% 5xx,
dropped connections, slow answers, bad CRCs, non-JSON bodies; seeded) with the victim deleted
once another table is done; each followed by ``monitor``. Reported: tables per minute of each
(tables the job handled / its wall time) and their ratio. Then, behind the faults, 10 seeds:
SIGKILL right after an event of the faulty run (before any table, right after a boost, while a
table is read, right after a commit; a random table and delay), ``revert``, a new run.

Every check holds or the benchmark says which did not: each committed backup verifies and
digests to its source table's digest (and, after the faulty run, restores with its proof);
each failed table is named by the monitor with a reason; after every run and every revert, RCU
and autoscaling are as before and every journal entry is final; a folder with ``_SUCCESS``
always verifies; after each kill, the new run commits every table again.

Standalone: ``python bench/bench_fleet.py [--quick]`` prints its metrics and its README block.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import fleet  # noqa: E402
from tests.support.faults import FaultProxy  # noqa: E402

from hippolyte.adapters import aws, dynamodb  # noqa: E402

import report as show  # noqa: E402
import servers as testing  # noqa: E402
from common import Report, isolate_aws, machine, metric  # noqa: E402

NAME = "fleet"
TITLE = "The nightly job on 50 tables: tables/min behind the fault proxy against clean; kill -9"


class Bench:
    def __init__(self, root: Path, ddb: Any, moto: Any, *, n: int) -> None:
        self.root, self.ddb = root, ddb
        conn = aws.Connection(region=fleet.REGION, endpoint_url=ddb.endpoint_url)
        aas = boto3.client("application-autoscaling", region_name=fleet.REGION,
                           endpoint_url=moto.endpoint_url)
        self.fleet = fleet.build(prefix="night-", n=n, client=dynamodb.control_client(conn),
                                 aas=aas)
        self.proxy = FaultProxy(upstream=ddb.endpoint_url, mix=fleet.FAULTS, seed=16,
                                slow_s=fleet.SLOW_S)
        self.repo = root / "repo"
        self.cfg = fleet.config(root / "hippolyte.toml", repo=self.repo,
                                endpoint=self.proxy.endpoint_url, prefix="night-", workers=4)
        self.env = dict(os.environ)
        self.problems: list[str] = []

    def night(self, job: fleet.Job, before: fleet.Snapshot, *, restore: bool,
              label: str) -> fleet.Night:
        rid = fleet.run_id_of(job, self.repo)
        if rid is None:
            self.problems.append(f"{label}: no run record ({job.stderr[-300:]})")
            return fleet.Night(run_id="")
        checked = fleet.check_night(self.fleet, before, cfg=self.cfg, repo=self.repo,
                                    run_id=rid, restore_endpoint=self.ddb.endpoint_url,
                                    restore=lambda _: restore)
        self.problems += [f"{label}: {p}" for p in checked.problems]
        self.clean(label)
        return checked

    def clean(self, label: str) -> None:
        """Nothing left boosted or missing, every journal entry final, nothing half."""
        before = self.baseline
        self.problems += [f"{label}: {p}" for p in fleet.capacity_problems(self.fleet, before)]
        self.problems += [f"{label}: {p}" for p in fleet.journal_problems(self.repo)]
        bad, _, _ = fleet.half_commits(self.repo, self.fleet)
        self.problems += [f"{label}: {p}" for p in bad]

    baseline: fleet.Snapshot


def _per_minute(job: fleet.Job) -> float:
    return len(job.results) / job.seconds * 60 if job.seconds else 0.0


def _faulty(b: Bench, before: fleet.Snapshot) -> tuple[fleet.Job, fleet.Night, dict[str, int]]:
    victim, deleted = b.fleet.victim.name, []

    def delete_victim(_: int, event: dict[str, Any]) -> bool:
        if not deleted and event.get("event") == "table_done" and event.get("table") != victim:
            b.fleet.client.delete_table(TableName=victim)
            deleted.append(event["table"])
        return False

    counted = dict(b.proxy.counts)
    b.proxy.enabled = True
    job = fleet.run_job(b.cfg, env=b.env, on_event=delete_victim)
    faults = {k: v - counted.get(k, 0) for k, v in b.proxy.counts.items() if k != "ok"}
    if not deleted:
        b.problems.append("faulty run: the victim was not deleted mid-run")
    night = b.night(job, before, restore=True, label="faulty run")
    failed_in_run = {r["table"]: r["error"] for r in job.results if not r["ok"]}
    if set(night.failed) != set(failed_in_run):
        b.problems.append(f"faulty run: monitor failed {night.failed}, run {failed_in_run}")
    for table, error in failed_in_run.items():
        if error not in night.failed.get(table, ""):
            b.problems.append(f"faulty run: {table}: the monitor does not say {error!r}")
    return job, night, faults


def _kill(b: Bench, events: list[tuple[float, dict[str, Any]]], seed: int,
          before: fleet.Snapshot) -> dict[str, Any]:
    point = fleet.kill_point(events, seed=seed)
    known = sorted(p.name for p in (b.repo / "@runs").glob("*"))
    errors_before = len(b.problems)
    killed = fleet.run_job(b.cfg, env=b.env, on_event=lambda _, e: point.matches(e),
                           kill_delay_s=point.delay_s)
    label = f"seed {seed} ({point.phase} {point.table or ''})"
    if killed.killed_after is None:
        b.problems.append(f"{label}: the moment never came (exit {killed.returncode})")
    bad, committed, incomplete = fleet.half_commits(b.repo, b.fleet)
    b.problems += [f"{label}, before revert: {p}" for p in bad]
    code, outcomes, err = fleet.hippolyte("--config", str(b.cfg), "revert", "--json")
    if code != 0:
        b.problems.append(f"{label}: revert exited {code}: {err[-300:]}")
    reverted = sorted(o["table"] for o in outcomes or [] if o["status"] == "reverted")
    b.clean(f"{label}, after revert")
    rid = fleet.run_id_of(killed, b.repo, known=known)
    again = fleet.run_job(b.cfg, env=b.env)
    night = b.night(again, before, restore=False, label=f"{label}, new run")
    expected = {t.name for t in b.fleet.tables if not t.empty and t.name in before.digests}
    same = set(night.committed) == expected and not night.failed
    if not same:
        b.problems.append(f"{label}: new run committed {sorted(expected - set(night.committed))}"
                          f" missing, failed {night.failed}")
    return {
        "seed": seed, "phase": point.phase, "event": point.event, "table": point.table,
        "delay_s": round(point.delay_s, 3), "killed_run": rid,
        "killed_at_s": round(killed.seconds, 1), "incomplete_folders": incomplete,
        "committed_folders": committed, "reverted": reverted,
        "rerun_s": round(again.seconds, 1), "same_end_state": same,
        "held": same and len(b.problems) == errors_before,
    }


def run(*, quick: bool) -> Report:
    isolate_aws()
    report = Report(name=NAME, title=TITLE, quick=quick)
    n, seeds = (14, 2) if quick else (50, 10)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, \
            testing.start_dynamodb_local() as ddb, testing.start_moto() as moto:
        os.environ["AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING"] = moto.endpoint_url
        aws._sessions.clear()
        began = time.monotonic()
        b = Bench(Path(tmp), ddb, moto, n=n)
        built = time.monotonic() - began
        try:
            before = b.baseline = fleet.snapshot(b.fleet)
            b.proxy.enabled = False
            clean = fleet.run_job(b.cfg, env=b.env)
            clean_night = b.night(clean, before, restore=False, label="clean run")
            if clean_night.failed:
                b.problems.append(f"clean run: failed {clean_night.failed}")
            faulty, faulty_night, faults = _faulty(b, before)
            after = fleet.snapshot(b.fleet, digests=False)
            after.digests = {k: v for k, v in before.digests.items() if k in after.rcu}
            b.baseline = after
            kills = [_kill(b, faulty.events, seed, after) for seed in range(seeds)]
        finally:
            b.proxy.close()
    clean_rate, faulty_rate = _per_minute(clean), _per_minute(faulty)
    held = sum(k["held"] for k in kills)
    planned = len(faulty.results)
    report.metrics += [
        metric("clean_tables_per_min", f"clean: tables per minute ({len(clean.results)} tables)",
               clean_rate, "tables/min"),
        metric("faulty_tables_per_min", f"behind faults: tables per minute ({planned} tables)",
               faulty_rate, "tables/min"),
        metric("faulty_over_clean", "behind faults / clean", 100 * faulty_rate / clean_rate, "%",
               digits=0),
        metric("faulty_proven", "behind faults: committed, verified, restored with proof",
               len(faulty_night.committed), f"of {planned}", digits=0),
        metric("kill_seeds_held", f"kill -9 seeds whose checks all held (of {seeds})", held,
               "", at_least=seeds, digits=0),
        metric("checks_failed", "checks that failed, all runs", len(b.problems), "", at_most=1,
               digits=0),
    ]
    report.notes += [
        f"{n} tables built in {built:.0f} s; clean run {clean.seconds:.1f} s, faulty run "
        f"{faulty.seconds:.1f} s (both through the proxy, 4 pipelines at a time).",
        "faults injected in the faulty run: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.items(), key=lambda kv: -kv[1])),
        "failed in the faulty run, as the monitor says: "
        + ("; ".join(f"{t}: {r}" for t, r in faulty_night.failed.items()) or "none"),
        "kill seeds (phase, table, delay; incomplete folders in the repository after the kill, "
        "all runs so far; tables the revert put back): "
        + "; ".join(f"{k['seed']}: {k['phase']} {k['table'] or '-'} +{k['delay_s']} s, "
                    f"{k['incomplete_folders']} incomplete, reverted {len(k['reverted'])}, "
                    f"{'held' if k['held'] else 'FAILED'}" for k in kills),
    ]
    if b.problems:
        report.notes.append("checks that failed: " + " | ".join(b.problems[:20]))
    report.raw.update({"kills": kills, "faults": faults, "problems": b.problems,
                       "clean_s": clean.seconds, "faulty_s": faulty.seconds})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    began = time.monotonic()
    rep = run(quick=args.quick)
    rep.seconds = time.monotonic() - began
    print(show.table([rep]))
    for note in rep.notes:
        print(note)
    print(show.markdown_block(rep, machine=machine()))
    print(orjson.dumps(rep.raw).decode())


if __name__ == "__main__":
    main()
