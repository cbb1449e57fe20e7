"""A fleet of tables for the nightly job under faults and kills (tests/test_fleet_faults.py,
bench/bench_fleet.py): built on DynamoDB Local with autoscaling on moto; the job run as a
child process whose progress events say where it stands; and the checks a night must pass,
each against what was measured before the run:

- every table the plan kept has a committed backup that verifies and whose items digest to
  the source table's digest, and restores exactly (the restore's proof, and its digest of the
  new table equal to the source's), or the monitor names it as failed with a reason;
- every journal entry is final; every table's RCU and read autoscaling (target and policies)
  are what they were;
- a folder with ``_SUCCESS`` always verifies (nothing committed half).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hippolyte import cli
from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import BackupRef
from hippolyte.core.proof import Digest, digest_of
from hippolyte.ops.sample_tables import fill
from hippolyte.repo import catalog
from hippolyte.repo.catalog import load_descriptor
from hippolyte.repo.journal import Journal, run_ids
from hippolyte.repo.verify import verify

REGION = "us-east-1"
KEY = (("pk", "S"), ("sk", "N"))
BIG_ITEM = 395_000  # bytes of one attribute: the item stays under DynamoDB's 400 KB
# 20% throttling, 5% 5xx, dropped connections, slow answers, a few malformed bodies
FAULTS = {
    "throttle": 0.12,
    "throttling": 0.08,
    "500": 0.025,
    "503": 0.025,
    "drop": 0.02,
    "slow": 0.03,
    "crc": 0.01,
    "garbage": 0.005,
}
SLOW_S = 0.5
FINAL_KILL_PHASES = ("start", "boost", "table", "commit")


@dataclass(frozen=True, kw_only=True)
class Table:
    name: str
    kind: str  # provisioned, on-demand, empty, indexed, boosted, big, deleted
    rcu: int  # 0: on-demand
    items: int
    scaling: bool = False  # a read scalable target and a policy on moto

    @property
    def empty(self) -> bool:
        return self.items == 0


def kinds(n: int) -> list[str]:
    """The fleet's composition for ``n`` tables (at least 8): one table of each kind, then
    a mix that keeps the proportions of a real account."""
    base = ["boosted", "big", "deleted", "empty", "indexed", "on-demand", "provisioned", "boosted"]
    cycle = ["provisioned", "on-demand", "indexed", "provisioned", "empty", "provisioned"]
    cycle += ["boosted", "provisioned", "on-demand", "provisioned"]
    return base + [cycle[i % len(cycle)] for i in range(n - len(base))]


def item(i: int, *, body: int = 400) -> dict[str, Any]:
    """Every type DynamoDB has, numbers that need canonical forms, binary, nesting."""
    return {
        "pk": {"S": f"p{i % 11}"},
        "sk": {"N": str(i)},
        "g": {"S": f"g{i % 5}"},
        "l": {"S": f"l-{i:06d}"},
        "price": {"N": f"{i}.50"},
        "raw": {"B": bytes([i % 256, 0, 255, (i * 7) % 256])},
        "tags": {"SS": sorted({f"t{i % 3}", f"t{i % 4}", "x"})},
        "ns": {"NS": [f"{i}.25", "1e2", "0.1"]},
        "doc": {"M": {"n": {"N": "-0.0100"}, "l": {"L": [{"BOOL": True}, {"NULL": True}]}}},
        "body": {"S": ("é" + chr(0x1F600) + "abc" * body)[:body]},
    }


@dataclass
class Fleet:
    prefix: str
    tables: list[Table]
    client: Any  # DynamoDB, direct (no proxy)
    aas: Any  # Application Auto Scaling on moto

    def by_name(self) -> dict[str, Table]:
        return {t.name: t for t in self.tables}

    @property
    def victim(self) -> Table:
        return next(t for t in self.tables if t.kind == "deleted")


def build(
    *,
    prefix: str,
    n: int,
    client: Any,
    aas: Any,
    boosted_items: int = 600,
    seed: int = 0,
    composition: Sequence[str] | None = None,
) -> Fleet:
    """``n`` tables of ``kinds(n)`` (or of ``composition``), filled, with autoscaling."""
    rng = random.Random(seed)
    tables = []
    for i, kind in enumerate(composition or kinds(n)):
        name = f"{prefix}{i:03d}-{kind}"
        count = {"empty": 0, "big": 6, "boosted": boosted_items, "deleted": 150}.get(
            kind, rng.randrange(20, 120)
        )
        rcu = {"on-demand": 0, "boosted": 5, "empty": 5}.get(kind, 1000)
        scaling = aas is not None and (kind == "boosted" or (kind == "provisioned" and i % 3 == 0))
        tables.append(Table(name=name, kind=kind, rcu=rcu, items=count, scaling=scaling))
    for t in tables:
        _create(client, t)
    for t in tables:
        body = BIG_ITEM if t.kind == "big" else 1000 if t.kind == "boosted" else 300
        if t.items:
            fill(client, t.name, (item(i, body=body) for i in range(t.items)))
        if t.scaling:
            _register_scaling(aas, t)
    return Fleet(prefix=prefix, tables=tables, client=client, aas=aas)


def _create(client: Any, t: Table) -> None:
    spec: dict[str, Any] = {
        "TableName": t.name,
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": v} for k, v in KEY],
    }
    throughput = {"ReadCapacityUnits": t.rcu, "WriteCapacityUnits": 1000}
    if t.rcu:
        spec["ProvisionedThroughput"] = throughput
    else:
        spec["BillingMode"] = "PAY_PER_REQUEST"
    if t.kind == "indexed":
        spec["AttributeDefinitions"] += [
            {"AttributeName": "g", "AttributeType": "S"},
            {"AttributeName": "l", "AttributeType": "S"},
        ]
        spec["LocalSecondaryIndexes"] = [
            {
                "IndexName": "by-l",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ]
        gsi: dict[str, Any] = {
            "IndexName": "by-g",
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["price"]},
        }
        if t.rcu:
            gsi["ProvisionedThroughput"] = {"ReadCapacityUnits": 50, "WriteCapacityUnits": 50}
        spec["GlobalSecondaryIndexes"] = [gsi]
    client.create_table(**spec)
    client.get_waiter("table_exists").wait(TableName=t.name, WaiterConfig={"Delay": 0.2})


def _register_scaling(aas: Any, t: Table) -> None:
    dims = {
        "ServiceNamespace": "dynamodb",
        "ResourceId": f"table/{t.name}",
        "ScalableDimension": "dynamodb:table:ReadCapacityUnits",
    }
    aas.register_scalable_target(**dims, MinCapacity=t.rcu, MaxCapacity=t.rcu * 40)
    aas.put_scaling_policy(
        **dims,
        PolicyName=f"{t.name}-read",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
            },
        },
    )


# --- what is measured before a run, and compared after -----------------------------------------


@dataclass
class Snapshot:
    digests: dict[str, Digest]  # the source tables' items (static during a run)
    rcu: dict[str, int]
    scaling: dict[str, Any]  # the read scalable target and its policies, per table


def snapshot(fleet: Fleet, *, digests: bool = True) -> Snapshot:
    conn = aws.Connection(region=REGION, endpoint_url=fleet.client.meta.endpoint_url)
    raw = dynamodb.raw_scan_client(conn, pool=2)
    alive = [t for t in fleet.tables if _exists(fleet.client, t.name)]
    return Snapshot(
        digests={t.name: _table_digest(raw, t.name) for t in alive} if digests else {},
        rcu={t.name: rcu_of(fleet.client, t.name) for t in alive},
        scaling={t.name: scaling_of(fleet.aas, t.name) for t in fleet.tables},
    )


def _exists(client: Any, table: str) -> bool:
    try:
        client.describe_table(TableName=table)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


def _table_digest(raw: Any, table: str) -> Digest:
    items: list[bytes] = []
    start = None
    while True:
        page = dynamodb.scan_page(
            raw, table=table, segment=0, total_segments=1, start_key=start, limit=None
        )
        items += page.items
        start = page.last_key
        if not start:
            return digest_of(items)


def rcu_of(client: Any, table: str) -> int:
    pt = client.describe_table(TableName=table)["Table"].get("ProvisionedThroughput") or {}
    return int(pt.get("ReadCapacityUnits") or 0)


def scaling_of(aas: Any, table: str) -> Any:
    dims = {"ServiceNamespace": "dynamodb", "ScalableDimension": "dynamodb:table:ReadCapacityUnits"}
    targets = aas.describe_scalable_targets(**dims, ResourceIds=[f"table/{table}"])
    policies = aas.describe_scaling_policies(**dims, ResourceId=f"table/{table}")
    return {
        "targets": [(t["MinCapacity"], t["MaxCapacity"]) for t in targets["ScalableTargets"]],
        "policies": sorted(
            (
                p["PolicyName"],
                p["PolicyType"],
                orjson.dumps(
                    p.get("TargetTrackingScalingPolicyConfiguration"), option=orjson.OPT_SORT_KEYS
                ),
            )
            for p in policies["ScalingPolicies"]
        ),
    }


def capacity_problems(fleet: Fleet, before: Snapshot) -> list[str]:
    """Tables whose RCU or read autoscaling differ from before the run."""
    out = []
    for t in fleet.tables:
        if t.name in before.rcu and _exists(fleet.client, t.name):
            now = rcu_of(fleet.client, t.name)
            if now != before.rcu[t.name]:
                out.append(f"{t.name}: {now} RCU, was {before.rcu[t.name]} (left boosted)")
        if t.name in before.scaling and _exists(fleet.client, t.name):
            now_scaling = scaling_of(fleet.aas, t.name)
            if now_scaling != before.scaling[t.name]:
                out.append(f"{t.name}: autoscaling {now_scaling}, was {before.scaling[t.name]}")
    return out


def journal_problems(repo: Path) -> list[str]:
    storage = open_storage(str(repo))
    return [
        f"run {rid}: {key} is {entry.get('status')}"
        for rid in run_ids(storage)
        for key, entry in Journal.open(storage, rid, create=True).open_entries().items()
    ]


def half_commits(repo: Path, fleet: Fleet) -> tuple[list[str], int, int]:
    """Committed backups that do not verify; and how many committed and incomplete exist."""
    storage = open_storage(str(repo))
    bad, committed, incomplete = [], 0, 0
    for t in fleet.tables:
        for ref in catalog.refs(storage, t.name):
            if not catalog.is_complete(storage, ref):
                incomplete += 1
                continue
            committed += 1
            result = verify(storage, ref)
            if not result.ok:
                bad.append(f"{ref}: committed but {result.problems[0]}")
    return bad, committed, incomplete


# --- the job as a child process -------------------------------------------------------------


def config(
    path: Path, *, repo: Path, endpoint: str, prefix: str, workers: int = 2, window_s: int = 60
) -> Path:
    path.write_text(f'''repository = "{repo}"
read_percent = 0.5
workers = {workers}
[[targets]]
region = "{REGION}"
endpoint_url = "{endpoint}"
[selection]
include = ["^{prefix}"]
[planning]
window_start = "00:00"
window_end = "00:01"
pipeline_start_s = {window_s - 5}
table_start_s = 1
''')
    return path


@dataclass
class Job:
    returncode: int
    doc: dict[str, Any] | None  # the --json document (None when killed)
    events: list[tuple[float, dict[str, Any]]]  # (seconds since start, event)
    seconds: float
    killed_after: dict[str, Any] | None = None  # the last event before a SIGKILL
    stderr: str = ""

    @property
    def results(self) -> list[dict[str, Any]]:
        return list((self.doc or {}).get("results", []))


OnEvent = Callable[[int, dict[str, Any]], bool]  # True: SIGKILL the job now


def run_job(
    cfg: Path,
    *,
    env: dict[str, str],
    on_event: OnEvent | None = None,
    kill_delay_s: float = 0.0,
    timeout: float = 900,
    args: Sequence[str] = ("backup", "--all", "--json"),
) -> Job:
    """``hippolyte --config CFG backup --all --json`` as a child; ``on_event`` sees every
    JSON event line as it arrives and may ask for a SIGKILL (after ``kill_delay_s``)."""
    command = [sys.executable, "-m", "hippolyte", "--config", str(cfg), *args]
    began = time.monotonic()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cfg.parent
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    events: list[tuple[float, dict[str, Any]]] = []
    other: list[str] = []
    killed_after = None
    try:
        for line in iter(proc.stderr.readline, b""):
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                other.append(line.decode(errors="replace"))
                continue
            events.append((time.monotonic() - began, event))
            if killed_after is None and on_event is not None and on_event(len(events) - 1, event):
                time.sleep(kill_delay_s)
                killed_after = event
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        proc.stderr.close()
        proc.stdout.close()
    text = b"".join(out)
    doc = orjson.loads(text) if text.strip() and killed_after is None else None
    return Job(
        returncode=proc.returncode,
        doc=doc,
        events=events,
        seconds=time.monotonic() - began,
        killed_after=killed_after,
        stderr="".join(other[-20:]),
    )


def hippolyte(*args: str) -> tuple[int, Any, str]:
    """The CLI in this process, with --json output parsed: (exit code, document, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    text = out.getvalue()
    try:
        doc = orjson.loads(text) if text.strip() else None
    except orjson.JSONDecodeError:
        doc = text
    return code, doc, err.getvalue()


# --- the checks of a night -------------------------------------------------------------------


@dataclass
class Night:
    """What a night's run left, checked against the snapshot taken before it."""

    run_id: str
    problems: list[str] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)  # tables committed and proven
    failed: dict[str, str] = field(default_factory=dict)  # table -> the monitor's reason
    skipped: dict[str, str] = field(default_factory=dict)  # table -> the plan's reason
    restored: int = 0


def check_night(
    fleet: Fleet,
    before: Snapshot,
    *,
    cfg: Path,
    repo: Path,
    run_id: str,
    restore_endpoint: str,
    restore: Callable[[str], bool] = lambda _: True,
) -> Night:
    """The monitor's report for ``run_id``, then every planned table: committed, verified,
    digest equal to the source's and (where ``restore`` says so) restored with a proof; or
    named failed with a reason. Empty tables must be skipped by the plan with a reason."""
    night = Night(run_id=run_id)
    code, report, err = hippolyte(
        "--config", str(cfg), "monitor", "--run", run_id, "--no-notify", "--json"
    )
    if not isinstance(report, dict):
        night.problems.append(f"monitor exited {code} without a report: {err[-500:]}")
        return night
    checks = {c["table"]: c for r in report["reports"] for c in r["tables"]}
    storage = open_storage(str(repo))
    plan = orjson.loads((repo / "@runs" / run_id / "plan.json").read_bytes())
    night.skipped = {s["table"]: s["reason"] for s in plan.get("skipped", [])}
    if (code == 0) != all(c["ok"] for c in checks.values()):
        night.problems.append(f"monitor exited {code} with checks {checks}")
    for t in fleet.tables:
        if t.name not in before.digests:
            continue  # gone before this run
        if t.empty:
            if "empty" not in night.skipped.get(t.name, ""):
                night.problems.append(f"{t.name}: empty but not skipped ({checks.get(t.name)})")
            continue
        check = checks.get(t.name)
        if check is None:
            night.problems.append(f"{t.name}: not in the monitor's report")
        elif not check["ok"]:
            if not check.get("reason"):
                night.problems.append(f"{t.name}: failed without a reason")
            night.failed[t.name] = check["reason"]
        else:
            _check_committed(
                night, t, before, storage, check["backup"], repo, restore_endpoint, restore
            )
    return night


def _check_committed(
    night: Night,
    t: Table,
    before: Snapshot,
    storage: Any,
    backup: str,
    repo: Path,
    endpoint: str,
    restore: Callable[[str], bool],
) -> None:
    table, _, backup_id = backup.rpartition("/")
    ref = BackupRef(repo=storage.url, table=t.name, backup_id=backup_id)
    result = verify(storage, ref)
    if not result.ok:
        night.problems.append(f"{t.name}: committed {backup_id} does not verify: {result.problems}")
        return
    lines = []
    import gzip

    for f in load_descriptor(storage, ref)["files"]:
        lines += [
            orjson.dumps(orjson.loads(x)["Item"])
            for x in gzip.decompress(storage.get_bytes(ref.prefix + f.key)).splitlines()
        ]
    got, want = digest_of(lines), before.digests[t.name]
    if (got.count, got.hex) != (want.count, want.hex):
        night.problems.append(
            f"{t.name}: backup {backup_id} holds {got.count} items digest {got.hex[:12]}, "
            f"the table {want.count} items digest {want.hex[:12]}"
        )
        return
    if restore(t.name):
        new = f"{t.name}-r{backup_id[-8:].replace('-', '')}"
        code, doc, err = hippolyte(
            "restore",
            f"{t.name}/{backup_id}",
            "--repo",
            str(repo),
            "--table",
            new,
            "--endpoint-url",
            endpoint,
            "--region",
            REGION,
            "--json",
        )
        proof = doc.get("proof", {}) if isinstance(doc, dict) else {}
        if code != 0 or not proof.get("ok") or proof["table"]["digest"] != want.hex:
            night.problems.append(f"{t.name}: restore exited {code}: {proof or err[-300:]}")
            return
        night.restored += 1
        with contextlib.suppress(Exception):
            night_client_delete(endpoint, new)
    night.committed.append(t.name)


def night_client_delete(endpoint: str, table: str) -> None:
    conn = aws.Connection(region=REGION, endpoint_url=endpoint)
    dynamodb.control_client(conn).delete_table(TableName=table)


def run_id_of(job: Job, repo: Path, *, known: Sequence[str] = ()) -> str | None:
    """The run this job started: from its document, else the one new run folder."""
    if job.doc and job.doc.get("runs"):
        return str(job.doc["runs"][0]["run"])
    new = sorted(p.name for p in (repo / "@runs").glob("*") if p.name not in known)
    return new[-1] if new else None


# --- kills at moments the job's own events choose ----------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    phase: str  # start, boost, table, commit
    event: str  # the event kind the kill follows
    table: str | None
    delay_s: float

    def matches(self, event: dict[str, Any]) -> bool:
        if event.get("event") != self.event:
            return False
        if self.phase == "boost":
            return event.get("table") == self.table and ": boosted " in str(event.get("text"))
        return self.table is None or event.get("table") == self.table


def kill_point(events: Sequence[tuple[float, dict[str, Any]]], *, seed: int) -> KillPoint:
    """A moment of a run, chosen from a previous run's events: seeds cycle through the phases
    (before any table; right after a boost, i.e. during the boosted table's backup; while a
    table's data files are written; right after a commit), each at a random table of that
    phase and a random delay."""
    rng = random.Random(seed)
    phase = FINAL_KILL_PHASES[seed % len(FINAL_KILL_PHASES)]
    seen = [e for _, e in events]
    if phase == "boost":
        boosted = [
            e["table"]
            for e in seen
            if e.get("event") == "note" and ": boosted " in str(e.get("text"))
        ]
        if boosted:
            return KillPoint(phase, "note", rng.choice(boosted), rng.uniform(0.0, 0.3))
        phase = "table"
    if phase == "table":
        started = [e["table"] for e in seen if e.get("event") == "table_started"]
        return KillPoint(phase, "table_started", rng.choice(started), rng.uniform(0.0, 0.3))
    if phase == "commit":
        done = [e["table"] for e in seen if e.get("event") == "table_done" and e.get("ok")]
        return KillPoint(phase, "table_done", rng.choice(done), rng.uniform(0.0, 0.05))
    return KillPoint("start", "note", None, rng.uniform(0.0, 0.2))  # the run's first line
