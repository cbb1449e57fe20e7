"""`hippolyte demo`: the main job end to end on the embedded DynamoDB Local.

Starts DynamoDB Local on 127.0.0.1 (a free port), creates sample tables (provisioned with a
GSI and an LSI, on-demand, empty), fills them with varied items, backs them up into a local
repository by running tonight's job (plan, pipelines), verifies every backup, restores each
into a new table and proves it identical, shows the status, runs the monitor with its
notification going to a local webhook, then plays a bad deploy on the orders table and shows
`diff` finding exactly what it did and `recover` putting it back (its undo shown in a dry
run), runs one restore drill (the orders table restored into a scratch table, proven, timed
and deleted), writes the dashboard, and stops the server by its pid. It prints nothing:
what it does is told as events (`Step` lines among the backups' and restores' progress), and
the CLI renders them.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters import aws, dynamodb
from hippolyte.adapters.storage import open_storage
from hippolyte.core.channels import WebhookChannel
from hippolyte.core.config import Selection, Settings, Target
from hippolyte.core.errors import ConfigError
from hippolyte.core.events import Emit, Step
from hippolyte.ops import jobs
from hippolyte.ops.bad_deploy import diff_bad_deploy, recover_bad_deploy
from hippolyte.ops.demo_history import capturing, history_of_deploy, instant_before_deploy
from hippolyte.ops.sample_tables import (
    EMPTY,
    ORDERS,
    SESSIONS,
    create_sample_tables,
    fill,
    order_item,
    session_item,
)
from hippolyte.repo import manifest
from hippolyte.repo.verify import verify

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
        with capturing(settings, storage, client, emit):
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
            instant: list[dt.datetime] = []

            def before(ref: Any) -> None:
                started = manifest.parse_backup_id(ref.backup_id)
                instant.append(instant_before_deploy(started))
                tell(f"{ORDERS} just before the deploy: {manifest.iso(instant[0])}")

            found, deploy = diff_bad_deploy(
                run.results,
                settings=settings,
                storage=storage,
                client=client,
                items=items,
                out=Path(repo) / "bad-deploy.diff.jsonl",
                emit=emit,
                before=before,
            )
            history = history_of_deploy(
                settings, storage=storage, deploy=deploy, at=instant[0], emit=emit
            )
        recovered = recover_bad_deploy(found, settings=settings, emit=emit)
        drilled = run_drill(settings, emit=emit)
        page = write_dashboard(settings, html=Path(repo) / "dashboard.html", emit=emit)
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
        "history": history,
        "recover": recovered,
        "drill": drilled,
        "dashboard": str(page),
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


def run_drill(settings: Settings, *, emit: Emit) -> dict[str, Any]:
    """One restore drill of the orders table: its newest backup restored into a scratch table
    tagged as the drill's, proven, timed, and the scratch table deleted."""
    from hippolyte.ops.drill import DrillParams, drill

    emit(Step(text=f"drill: restoring {ORDERS}'s newest backup into a scratch table ..."))
    record = drill(
        settings,
        tables=[ORDERS],
        params=DrillParams(write_capacity=4000, workers=settings.workers),
        emit=emit,
    )
    (t,) = record.tables
    rto = f", {t.seconds_per_gb:g} s per GB" if t.seconds_per_gb is not None else ""
    verdict = (
        f"{t.items:,} items proven in {t.seconds:.1f} s{rto}" if t.ok else f"FAILED: {t.error}"
    )
    cleanup = "deleted" if t.deleted else f"kept ({t.kept})"
    emit(Step(text=f"drill {record.id}: {t.table}: {verdict}; {t.scratch} {cleanup}"))
    return {
        "drill": record.id,
        "ok": record.ok,
        "table": t.table,
        "scratch": t.scratch,
        "items": t.items,
        "seconds": t.seconds,
        "secondsPerGb": t.seconds_per_gb,
        "deleted": t.deleted,
    }


def write_dashboard(settings: Settings, *, html: Path, emit: Emit) -> Path:
    """The dashboard of the demo's repository, as `hippolyte dashboard --out` writes it."""
    from hippolyte.core.dashboard_html import render
    from hippolyte.ops.dashboard import gather

    doc = gather(settings, now=dt.datetime.now(dt.UTC))
    html.write_text(render(doc), encoding="utf-8")
    emit(Step(text=f"dashboard written: open {html.resolve().as_uri()}"))
    return html.resolve()


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
