"""`hippolyte demo`: the main job end to end on the embedded DynamoDB Local.

Starts DynamoDB Local on 127.0.0.1 (a free port), creates sample tables (provisioned with a
GSI and an LSI, on-demand, empty), fills them with varied items, backs them up into a local
repository, verifies every backup, restores each into a new table and proves it identical,
and stops the server by its pid.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.events import Emit
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.verify import verify

ORDERS, SESSIONS, EMPTY = "demo-orders", "demo-sessions", "demo-empty"


def run_demo(*, workdir: str, items: int, emit: Emit, say: Callable[[str], None]) -> dict[str, Any]:
    from hippolyte.testing import start_dynamodb_local

    for var, value in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo")):
        os.environ.setdefault(var, value)
    say("starting DynamoDB Local (AWS's own emulator) on 127.0.0.1 ...")
    with start_dynamodb_local() as server:
        say(f"DynamoDB Local is up at {server.endpoint_url} (pid {server.pid})")
        conn = aws.Connection(region="us-east-1", endpoint_url=server.endpoint_url, account="demo")
        client = dynamodb.control_client(conn)
        create_sample_tables(client)
        fill(client, ORDERS, (order_item(i) for i in range(items)))
        fill(client, SESSIONS, (session_item(i) for i in range(max(items // 3, 1))))
        say(
            f"created {ORDERS} (provisioned, GSI + LSI, {items} items), "
            f"{SESSIONS} (on-demand), {EMPTY} (empty)"
        )
        repo = str(Path(workdir).resolve())
        storage = open_storage(repo)
        plan_lines = write_plan(conn, storage=storage, html=Path(repo) / "plan.html")
        for line in plan_lines:
            say(line)
        say(f"backing up into {repo} at read percent 0.5 ...")
        results = backup_tables(
            [ORDERS, SESSIONS, EMPTY],
            conn=conn,
            storage=storage,
            params=BackupParams(read_percent=0.5, workers=4),
            emit=emit,
        )
        lines = []
        for r in results:
            if r.ref is None:
                continue
            report = verify(storage, r.ref)
            lines.append(
                f"verify {r.ref}: "
                + ("ok" if report.ok else "; ".join(report.problems))
                + f" ({report.files} files, {report.items} items)"
            )
        with tempfile.TemporaryDirectory(prefix="hippolyte-demo-") as state_dir:
            proofs = restore_all(
                results, storage=storage, conn=conn, state_dir=Path(state_dir), emit=emit, say=say
            )
        say(f"stopping DynamoDB Local (pid {server.pid})")
    return {
        "repository": repo,
        "plan": plan_lines,
        "results": results,
        "verify": lines,
        "restores": proofs,
    }


def write_plan(conn: aws.Connection, *, storage: Any, html: Path) -> list[str]:
    """Plan the sample tables as tonight's run would, and write the HTML chart."""
    from hippolyte.config import Selection, Settings, Target
    from hippolyte.ops.plan import plan_target
    from hippolyte.plan_html import render
    from hippolyte.planning import to_json

    settings = Settings(selection=Selection(include=["demo-"]))
    target = Target(region=conn.region, endpoint_url=conn.endpoint_url, account=conn.account)
    planned, _ = plan_target(settings, target, storage=storage, at=None)
    doc = to_json(planned)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render(doc), encoding="utf-8")
    lines = [f"plan: {d}" for d in doc["decisions"]]
    for p in doc["pipelines"]:
        for t in p["tables"]:
            boost = (
                f", boost {t['boost']['old_rcu']}->{t['boost']['new_rcu']} RCU"
                if t["boost"]
                else ""
            )
            lines.append(
                f"plan: pipeline {p['index']}: {t['table']} {t['starts_at']}-{t['ends_at']}"
                f" ({t['estimate']['why']}{boost})"
            )
    lines += [f"plan: skip {s['table']}: {s['reason']}" for s in doc["skipped"]]
    lines.append(f"plan: Gantt chart written to {html}")
    return lines


def restore_all(
    results: list[Any],
    *,
    storage: Any,
    conn: aws.Connection,
    state_dir: Path,
    emit: Emit,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Restore every sample backup into a new table and prove it."""
    from hippolyte.ops.restore import RestoreParams, restore
    from hippolyte.sources import open_source

    proofs = []
    for r in results:
        if r.ref is None:
            continue
        target = f"{r.table}-restored"
        source = open_source(storage, r.ref.prefix, location=str(r.ref))
        params = RestoreParams(write_capacity=500, state_dir=state_dir)
        report = restore(
            source, conn=conn, table=target, description=None, emit=emit, params=params
        )
        verdict = "= backup: identical" if report.proven else f"!= {report.backup.hex[:16]}"
        say(
            f"restore {r.ref} -> {target}: {report.restored.count} items, "
            f"digest {report.restored.hex[:16]} {verdict}"
        )
        proofs.append(
            {
                "source": str(r.ref),
                "table": target,
                "proven": report.proven,
                "items": report.restored.count,
                "digest": report.restored.hex,
                "notes": report.notes,
            }
        )
    return proofs


def create_sample_tables(client: Any) -> None:
    def throughput(r: int, w: int) -> dict[str, int]:
        return {"ReadCapacityUnits": r, "WriteCapacityUnits": w}

    client.create_table(
        TableName=ORDERS,
        KeySchema=[
            {"AttributeName": "customer", "KeyType": "HASH"},
            {"AttributeName": "order", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "customer", "AttributeType": "S"},
            {"AttributeName": "order", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "placed", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "placed", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
                "ProvisionedThroughput": throughput(20, 20),
            }
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-placed",
                "KeySchema": [
                    {"AttributeName": "customer", "KeyType": "HASH"},
                    {"AttributeName": "placed", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        ProvisionedThroughput=throughput(200, 200),
    )
    client.create_table(
        TableName=SESSIONS,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "B"}],
    )
    client.create_table(
        TableName=EMPTY,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput=throughput(5, 5),
    )
    for name in (ORDERS, SESSIONS, EMPTY):
        client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(
        TableName=ORDERS, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )


def fill(client: Any, table: str, items: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == 25:
            _write(client, table, batch)
            batch = []
    if batch:
        _write(client, table, batch)


def _write(client: Any, table: str, batch: list[dict[str, Any]]) -> None:
    pending = {table: batch}
    while pending:
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


STATUSES = ["placed", "packed", "shipped", "delivered", "returned"]


def order_item(i: int) -> dict[str, Any]:
    """A varied order: every DynamoDB type, nested binary, unicode, big numbers."""
    rnd = random.Random(i)
    item: dict[str, Any] = {
        "customer": {"S": f"customer-{i % 97:03d}"},
        "order": {"N": str(i)},
        "status": {"S": STATUSES[i % len(STATUSES)]},
        "placed": {"S": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"},
        "total": {"N": f"{rnd.randint(1, 10**6)}.{rnd.randint(0, 99):02d}"},
        "precise": {"N": "1234567890123456789012345678901234567" + str(i % 10)},
        "note": {"S": rnd.choice(["", "leave at the door", "zerbrechlich ✓", "配達", "🦆" * 3])},
        "gift": {"BOOL": i % 7 == 0},
        "coupon": {"NULL": True},
        "tags": {"SS": sorted({rnd.choice("abcdefgh") for _ in range(3)})},
        "scores": {"NS": [str(n) for n in sorted({rnd.randint(-50, 50) for _ in range(3)})]},
        "thumbs": {"BS": [bytes([i % 256, 0, 255]), b"\x00"]},
        "lines": {
            "L": [
                {
                    "M": {
                        "sku": {"S": f"sku-{rnd.randint(1, 500)}"},
                        "qty": {"N": str(rnd.randint(1, 5))},
                        "sig": {"B": rnd.randbytes(8)},
                    }
                }
                for _ in range(rnd.randint(1, 4))
            ]
        },
        "address": {
            "M": {
                "city": {"S": rnd.choice(["Hatfield", "Łódź", "Zürich"])},
                "raw": {"M": {"blob": {"B": rnd.randbytes(16)}}},
            }
        },
        "payload": {"S": "x" * rnd.randint(100, 800)},
    }
    if i % 10 == 0:
        item["expires"] = {"N": str(1_900_000_000 + i)}
    return item


def session_item(i: int) -> dict[str, Any]:
    rnd = random.Random(-i - 1)
    return {
        "id": {"B": i.to_bytes(4, "big") + rnd.randbytes(4)},
        "user": {"S": f"user-{i}"},
        "data": {"B": rnd.randbytes(rnd.randint(10, 400))},
        "seen": {"L": [{"N": str(rnd.randint(0, 10**9))} for _ in range(3)]},
    }
