"""`hippolyte demo`: the main job end to end on the embedded DynamoDB Local.

Starts DynamoDB Local on 127.0.0.1 (a free port), creates sample tables (provisioned with a
GSI and an LSI, on-demand, empty), fills them with varied items, backs them up into a local
repository by running tonight's job (plan, pipelines), verifies every backup, restores each
into a new table and proves it identical, shows the status, runs the monitor with its
notification going to a local webhook, then plays a bad deploy on the orders table and shows
`diff` finding exactly what it did, and stops the server by its pid. It prints nothing:
what it does is told as events (`Step` lines among the backups' and restores' progress), and
the CLI renders them.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.channels import WebhookChannel
from hippolyte.core.config import Selection, Settings, Target
from hippolyte.core.diff import key_of, normal
from hippolyte.core.errors import BackupFailed, ConfigError
from hippolyte.core.events import Emit, Step
from hippolyte.ops import jobs
from hippolyte.repo.verify import verify

ORDERS, SESSIONS, EMPTY = "demo-orders", "demo-sessions", "demo-empty"
ORDERS_KEY = (("customer", "S"), ("order", "N"))
MIN_ITEMS = 10  # the bad deploy touches seven distinct orders


def run_demo(*, workdir: str, items: int, emit: Emit) -> dict[str, Any]:
    """Run the demo and return its summary. What it does is told as it happens, as `Step`
    events through ``emit``, in one stream with the backups' and restores' progress."""
    from hippolyte.adapters.local_servers import start_dynamodb_local

    if items < MIN_ITEMS:
        raise ConfigError(f"the demo needs at least {MIN_ITEMS} items, not {items}")

    def tell(text: str) -> None:
        emit(Step(text=text))

    for var, value in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo")):
        os.environ.setdefault(var, value)
    tell("starting DynamoDB Local (AWS's own emulator) on 127.0.0.1 ...")
    with start_dynamodb_local() as server, _Webhook() as hook:
        tell(f"DynamoDB Local is up at {server.endpoint_url} (pid {server.pid})")
        conn = aws.Connection(region="us-east-1", endpoint_url=server.endpoint_url, account="demo")
        client = dynamodb.control_client(conn)
        tell(
            f"creating the sample tables: {ORDERS} (provisioned, GSI + LSI), "
            f"{SESSIONS} (on-demand), {EMPTY} ..."
        )
        create_sample_tables(client)
        sessions = max(items // 3, 1)
        fill(client, ORDERS, (order_item(i) for i in range(items)))
        fill(client, SESSIONS, (session_item(i) for i in range(sessions)))
        tell(f"filled {ORDERS} with {items:,} varied items, {SESSIONS} with {sessions:,}")
        repo = str(Path(workdir).resolve())
        settings = demo_settings(conn, repo=repo, webhook=hook.url)
        storage = open_storage(repo)
        plan_lines = write_plan(settings, storage=storage, html=Path(repo) / "plan.html")
        for line in plan_lines:
            tell(line)
        tell(f"running tonight's job into {repo} ...")
        (run,) = jobs.nightly_backup(settings, emit=emit)
        verified = [_verify_line(storage, r.ref) for r in run.results if r.ref is not None]
        for line in verified:
            tell(line)
        with tempfile.TemporaryDirectory(prefix="hippolyte-demo-") as state_dir:
            proofs = restore_all(
                run.results, storage=storage, conn=conn, state_dir=Path(state_dir), emit=emit
            )
        status = status_lines(settings)
        for line in status:
            tell(line)
        monitor = run_monitor(settings, hook=hook, emit=emit)
        found = diff_bad_deploy(
            run.results,
            settings=settings,
            storage=storage,
            client=client,
            items=items,
            out=Path(repo) / "bad-deploy.diff.jsonl",
            emit=emit,
        )
        tell(f"stopping DynamoDB Local (pid {server.pid})")
    return {
        "repository": repo,
        "plan": plan_lines,
        "run": run.run_id,
        "results": run.results,
        "verify": verified,
        "restores": proofs,
        "status": status,
        "monitor": monitor,
        "diff": found,
    }


def demo_settings(conn: aws.Connection, *, repo: str, webhook: str) -> Settings:
    return Settings(
        repository=repo,
        targets=[Target(account=conn.account, region=conn.region, endpoint_url=conn.endpoint_url)],
        selection=Selection(include=["demo-"], exclude=["demo-.*-restored$"]),
        notifications=[WebhookChannel(type="webhook", url=webhook, name="demo webhook")],
        notify_on_success=True,
    )


def _verify_line(storage: Any, ref: Any) -> str:
    report = verify(storage, ref)
    verdict = "ok" if report.ok else "; ".join(report.problems)
    return f"verify {ref}: {verdict} ({report.files} files, {report.items:,} items)"


def status_lines(settings: Settings) -> list[str]:
    from hippolyte.ops.status import fleet_status

    lines = []
    for t in fleet_status(settings).tables:
        if not t.selected:
            continue
        if t.note:
            lines.append(f"status {t.table}: {t.note}")
        elif t.meets_rpo:
            items = "?" if t.items is None else f"{t.items:,}"
            lines.append(
                f"status {t.table}: last backup {t.last_backup}, {items} items, "
                f"{t.age_hours:.2f} h old: within the RPO"
            )
        else:
            lines.append(f"status {t.table}: no committed backup ({t.last_run or 'not run'})")
    return lines


def run_monitor(settings: Settings, *, hook: _Webhook, emit: Emit) -> dict[str, Any]:
    """Run the monitor as its schedule would, its notification going to the local webhook."""
    emit(Step(text=f"monitor: checking tonight's run, notifying {hook.url} ..."))
    outcome = jobs.nightly_monitor(settings)
    verdict = "ok" if outcome.ok else "FAILED"
    emit(Step(text=f"monitor: {verdict}, {len(hook.received)} notification(s) sent"))
    for message in hook.received:
        emit(Step(text=f"webhook received: {message.get('text')}"))
    return {"ok": outcome.ok, "webhook": hook.url, "received": hook.received}


class _Webhook:
    """A local HTTP endpoint that records what the monitor posts to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.received: list[dict[str, Any]] = []
        received = self.received

        class Hook(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                size = int(self.headers.get("Content-Length", 0))
                received.append(orjson.loads(self.rfile.read(size)))
                self.send_response(204)
                self.end_headers()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hippolyte"

    def __enter__(self) -> _Webhook:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_plan(settings: Settings, *, storage: Any, html: Path) -> list[str]:
    """Plan the sample tables as tonight's run will, and write the HTML chart."""
    from hippolyte.core.plan_html import render
    from hippolyte.core.planning import to_json
    from hippolyte.ops.plan import plan_target

    planned, _ = plan_target(settings, settings.effective_targets()[0], storage=storage, at=None)
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
) -> list[dict[str, Any]]:
    """Restore every sample backup into a new table and prove it."""
    from hippolyte.formats.open import open_source
    from hippolyte.ops.restore import RestoreParams, restore

    proofs = []
    for r in results:
        if r.ref is None:
            continue
        target = f"{r.table}-restored"
        emit(Step(text=f"restoring {r.ref} into {target} ..."))
        source = open_source(storage, r.ref.prefix, location=str(r.ref))
        params = RestoreParams(write_capacity=4000, state_dir=state_dir)
        report = restore(
            source, conn=conn, table=target, description=None, emit=emit, params=params
        )
        verdict = (
            "= the backup's: identical"
            if report.proven
            else f"!= the backup's {report.backup.hex[:16]}: DIFFERENT"
        )
        emit(
            Step(
                text=f"restored {target}: {report.restored.count:,} items, "
                f"digest {report.restored.hex[:16]} {verdict}"
            )
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


# -- a bad deploy, and diff finding it ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BadDeploy:
    story: list[str]  # what it did, told before the diff
    expected: dict[bytes, tuple[str, tuple[str, ...]]]  # key (canonical) -> kind, attributes
    identical: int  # the items diff must find unchanged


def bad_deploy(client: Any, *, items: int) -> BadDeploy:
    """Change a few orders as a bad deploy would: delete two, change three (a status, a total
    in cents, a city inside the address map), add one, and rewrite one total with only its
    notation changed, which is no change. Returns what diff must find."""
    gone, gone2, status, total, city, same = (items * k // 7 for k in range(1, 7))
    was = order_item(same)["total"]["N"]
    cents = Decimal(order_item(total)["total"]["N"]) * 100
    for i, path, value in (
        (status, "status", {"S": "cancelled"}),
        (total, "total", {"N": str(int(cents))}),
        (city, "address.city", {"S": "undefined"}),
        # DynamoDB Local keeps an update's notation: the live bytes differ from the backup's
        (same, "total", {"N": f"{was}0"}),
    ):
        names = {f"#p{n}": part for n, part in enumerate(path.split("."))}
        client.update_item(
            TableName=ORDERS,
            Key=_order_key(i),
            UpdateExpression=f"SET {'.'.join(names)} = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": value},
        )
    for i in (gone, gone2):
        client.delete_item(TableName=ORDERS, Key=_order_key(i))
    client.put_item(TableName=ORDERS, Item=order_item(items))
    changes = [("deleted", gone, ""), ("deleted", gone2, ""), ("changed", status, "status")]
    changes += [("changed", total, "total"), ("changed", city, "address"), ("added", items, "")]
    return BadDeploy(
        story=[
            f"a bad deploy hits {ORDERS}: it deletes 2 orders, changes 3 and adds 1",
            f"it also rewrites order {same}'s total {was} as {was}0: the same number",
        ],
        expected={
            key_of(_order_key(i), ORDERS_KEY): (kind, (name,) if name else ())
            for kind, i, name in changes
        },
        identical=items - 5,  # 2 deleted, 3 changed; the rewritten total is no change
    )


def _order_key(i: int) -> dict[str, Any]:
    return {name: order_item(i)[name] for name, _ in ORDERS_KEY}


def diff_bad_deploy(
    results: list[Any],
    *,
    settings: Settings,
    storage: Any,
    client: Any,
    items: int,
    out: Path,
    emit: Emit,
) -> dict[str, Any]:
    """Play the bad deploy, diff the orders' backup against the live table into ``out``, tell
    what diff found, and check it is exactly what the deploy did."""
    from hippolyte.formats.open import open_source
    from hippolyte.ops.diff import DiffParams, diff_live

    ref = next((r.ref for r in results if r.table == ORDERS and r.ref is not None), None)
    if ref is None:
        raise BackupFailed(f"no backup of {ORDERS} to compare the live table with")
    deploy = bad_deploy(client, items=items)
    for line in deploy.story:
        emit(Step(text=line))
    emit(Step(text=f"running hippolyte diff {ref} --live ..."))
    params = DiffParams(
        read_percent=settings.read_percent,
        on_demand_read_units=settings.on_demand_read_units,
        workers=settings.workers,
        page_attempts=settings.max_attempts,
    )
    conn = settings.effective_targets()[0].connection()
    source = open_source(storage, ref.prefix, location=str(ref))
    with out.open("wb") as sink:
        result = diff_live(
            source, conn=conn, table=ORDERS, schema=None, params=params, out=sink, emit=emit
        )
    s = result.summary
    found = {
        key_of(orjson.loads(d.key), ORDERS_KEY): (str(d.kind), tuple(d.attributes))
        for d in result.first
    }
    matches = found == deploy.expected and s.identical == deploy.identical
    matches = matches and len(result.first) == s.differences
    for line in _diff_lines(result, matches=matches, out=out):
        emit(Step(text=line))
    return {
        "backup": str(ref),
        "deleted": s.deleted,
        "added": s.added,
        "changed": s.changed,
        "identical": s.identical,
        "file": str(out),
        "matches": matches,
    }


def _diff_lines(result: Any, *, matches: bool, out: Path) -> list[str]:
    """What diff found, as the demo tells it: the counts, then each difference with its key
    and, for a changed item, each value that differs (down to the leaf of a nested map)."""
    s = result.summary
    lines = [
        f"diff found {s.deleted} deleted, {s.added} added, {s.changed} changed and "
        f"{s.identical:,} identical items:"
    ]
    rank = {"deleted": 0, "changed": 1, "added": 2}
    for d in sorted(result.first, key=lambda d: (rank[d.kind], _order_number(d.key))):
        key = " ".join(f"{n}={v}" for n, tv in orjson.loads(d.key).items() for v in tv.values())
        if d.kind != "changed":
            lines.append(f"  {d.kind:<7} {key}")
            continue
        before, after = orjson.loads(d.before), orjson.loads(d.after)
        for name in d.attributes:
            lines += [
                f"  changed {key}: {change}"
                for change in _changes(name, before.get(name), after.get(name))
            ]
    lines.append(
        "exactly what the bad deploy did, and nothing else"
        if matches
        else "NOT what the bad deploy did: the demo FAILED"
    )
    lines.append(f"every difference in full: {out}")
    return lines


def _order_number(key: bytes) -> Decimal:
    return Decimal(orjson.loads(key)["order"]["N"])


def _changes(path: str, old: Any, new: Any) -> Iterator[str]:
    """``path old -> new`` for a value that differs; a map is followed down to its leaves."""
    if old is not None and new is not None and "M" in old and "M" in new:
        for name in sorted(old["M"].keys() | new["M"].keys()):
            a, b = old["M"].get(name), new["M"].get(name)
            if a is None or b is None or normal(a) != normal(b):
                yield from _changes(f"{path}.{name}", a, b)
        return
    yield f"{path} {_value(old)} -> {_value(new)}"


def _value(value: Any, width: int = 40) -> str:
    if value is None:
        return "(absent)"
    ((tag, v),) = value.items()
    text = v if tag == "N" else orjson.dumps(v if tag == "S" else value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


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
