"""The command line: parse, build adapters, call one operation, render. No business logic."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.cli.render import Bars, JsonLines, dumps, human_bytes
from hippolyte.core import config
from hippolyte.core.config import Settings, Target
from hippolyte.core.errors import ConfigError, ExitCode, HippolyteError, Interrupted
from hippolyte.core.version import __version__
from hippolyte.repo import manifest

err_console = Console(stderr=True)


@dataclass
class Ctx:
    settings: Settings
    json: bool


def _fail(message: str, code: int) -> None:
    err_console.print(
        f"[red]hippolyte: error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure becomes one line and a documented exit code."""
    try:
        cli.main(args=argv, prog_name="hippolyte", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("interrupted", ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except HippolyteError as exc:
        _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; nothing half-committed", ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def aws_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--region/--profile/--endpoint-url/--role-arn, as the AWS CLI spells them."""
    for opt in reversed(
        [
            click.option("--region", help="AWS region (default: the standard chain)."),
            click.option("--profile", help="AWS profile from ~/.aws/config."),
            click.option(
                "--endpoint-url", help="DynamoDB endpoint (also AWS_ENDPOINT_URL_DYNAMODB)."
            ),
            click.option("--role-arn", help="IAM role to assume for the target account."),
        ]
    ):
        fn = opt(fn)
    return fn


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Machine-readable output (the default when not on a terminal).",
    )(fn)


def repo_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--repo", help="Repository: a path, file://..., or s3://bucket/prefix.")(fn)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    base: Settings = ctx.obj["settings"]
    return base.with_overrides(**overrides)


def _json_mode(as_json: bool) -> bool:
    return as_json or not sys.stdout.isatty()


def _storage(settings: Settings, target: Target | None = None) -> Storage:
    target = target or settings.effective_targets()[0]
    repo = settings.repository_for(target)
    if not repo:
        raise ConfigError("no repository: pass --repo or set `repository` in the config")
    return open_storage(repo, conn=target.connection())


def _out(obj: Any) -> None:
    click.echo(dumps(obj))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hippolyte")
@click.option(
    "--config",
    "config_file",
    envvar=config.ENV_CONFIG,
    help="Config file (default: $HIPPOLYTE_CONFIG, else ./hippolyte.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Hippolyte: paced, lossless, verifiable backups for fleets of DynamoDB tables."""
    ctx.obj = {"settings": config.load(config_file)}


@cli.command()
@aws_options
@json_option
@click.pass_context
def discover(ctx: click.Context, as_json: bool, **aws: Any) -> None:
    """List the selected tables (billing, RCU, size, items) and why others are left out."""
    from hippolyte.ops.discover import discover as run

    settings = _settings(ctx, **aws)
    rows: list[dict[str, Any]] = []
    for target in settings.effective_targets():
        for sel in run(
            conn=target.connection(),
            rules=settings.selection.rules(),
            max_attempts=settings.max_attempts,
        ):
            t = sel.table
            rows.append(
                {
                    "target": target.label,
                    "table": t.name,
                    "selected": sel.selected,
                    "reason": sel.reason,
                    "billingMode": t.billing_mode,
                    "readCapacity": t.read_capacity,
                    "sizeBytes": t.size_bytes,
                    "itemCount": t.item_count,
                }
            )
    if _json_mode(as_json):
        _out(rows)
        return
    table = Table("target", "table", "selected", "billing", "RCU", "size", "items", "reason")
    for r in rows:
        table.add_row(
            r["target"],
            r["table"],
            "yes" if r["selected"] else "no",
            r["billingMode"],
            str(r["readCapacity"] or "-"),
            human_bytes(r["sizeBytes"]),
            f"{r['itemCount']:,}",
            r["reason"],
        )
    Console().print(table)


@cli.command()
@click.argument("tables", nargs=-1)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Run tonight's plan for every selected table (the default without TABLEs).",
)
@click.option("--dry-run", is_flag=True, help="Print what the plan would do; change nothing.")
@repo_option
@click.option("--read-percent", type=float, help="Share of the table's read capacity (0-1].")
@click.option("--segments", type=int, help="Parallel Scan segments (default: from size).")
@click.option("--workers", type=int, help="Threads per table.")
@click.option(
    "--engine",
    type=click.Choice(["local", "dask", "export", "auto", "datapipeline"]),
    help="local: threads here; dask: a Dask cluster; export: DynamoDB's point-in-time export "
    "(PITR tables); auto: export where PITR is on, else scan; datapipeline: start the plan's "
    "pipelines on AWS Data Pipeline (closed to new customers since 2024-07-25; `monitor` "
    "checks them).",
)
@click.option("--at", "export_at", help="Export as of this time (ISO 8601, UTC): engine export.")
@click.option(
    "--no-fallback",
    is_flag=True,
    help="--engine export: fail tables without PITR instead of scanning them.",
)
@click.option("--scheduler", help="Dask scheduler address (tcp://HOST:PORT) for --engine dask.")
@aws_options
@json_option
@click.pass_context
def backup(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_: bool,
    dry_run: bool,
    repo: str | None,
    read_percent: float | None,
    segments: int | None,
    workers: int | None,
    engine: str | None,
    export_at: str | None,
    no_fallback: bool,
    scheduler: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Back up the named tables; without names (or with --all), run tonight's plan: every
    selected table, pipelines in parallel, boosting and reverting capacity as planned."""
    from hippolyte.ops.context import backup_params

    if tables and all_:
        raise click.UsageError("give TABLE names or --all, not both")
    if tables and dry_run:
        raise click.UsageError("--dry-run applies to the planned run (--all)")
    settings = _settings(
        ctx,
        repository=repo,
        read_percent=read_percent,
        segments=segments,
        workers=workers,
        engine=engine,
        scheduler=scheduler,
        **aws,
    )
    targets = settings.effective_targets()
    if tables and len(targets) > 1:
        raise ConfigError(
            "tables named on the command line need exactly one target "
            f"(the config has {len(targets)}); pass --region/--endpoint-url"
        )
    params = replace(backup_params(settings), at=_instant(export_at), fallback=not no_fallback)
    if export_at and settings.engine not in ("export", "auto"):
        raise click.UsageError("--at needs --engine export (or auto)")
    if dry_run:
        _dry_run(settings)
        return
    json_mode = _json_mode(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    results: list[Any] = []
    runs: list[Any] = []
    try:
        with _stop_on_sigterm() as stop:
            for target in targets:
                if tables:
                    from hippolyte.ops.backup import backup_tables

                    results += backup_tables(
                        list(tables),
                        conn=target.connection(),
                        storage=_storage(settings, target),
                        params=params,
                        emit=renderer,
                        stop=stop,
                    )
                else:
                    run = _run_plan(settings, target, params=params, emit=renderer, stop=stop)
                    runs.append(run)
                    results += run.results
    finally:
        renderer.close()
    if json_mode:
        _out(
            {
                "results": results,
                "ok": all(r.ok for r in results),
                "runs": [{"run": r.run_id, "capacity": r.capacity} for r in runs],
            }
        )
    else:
        _print_results(results)
    failed = [r for r in results if not r.ok]
    if failed:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed(
            f"{len(failed)} of {len(results)} table backups failed: "
            + "; ".join(f"{r.table}: {r.error}" for r in failed)
        )


def _instant(text: str | None) -> Any:
    import datetime as dt

    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--at {text!r}: expected an ISO 8601 time, e.g. 2026-11-22T00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _run_plan(settings: Settings, target: Target, *, params: Any, emit: Any, stop: Any) -> Any:
    from hippolyte.ops.plan import plan_target
    from hippolyte.ops.run import run_plan

    storage = _storage(settings, target)
    storage.check_writable()
    planned, _ = plan_target(settings, target, storage=storage, at=None)
    return run_plan(
        planned,
        conn=target.connection(),
        storage=storage,
        params=params,
        pipelines_at_once=settings.workers,
        emit=emit,
        stop=stop,
    )


def _dry_run(settings: Settings) -> None:
    from hippolyte.ops.plan import plan_target
    from hippolyte.ops.run import actions

    for target in settings.effective_targets():
        repo = settings.repository_for(target)
        storage = open_storage(repo, conn=target.connection()) if repo else None
        planned, _ = plan_target(settings, target, storage=storage, at=None)
        for line in actions(planned):
            click.echo(f"{target.label}: {line}")


def _print_results(results: list[Any]) -> None:
    table = Table("table", "backup", "items", "data", "stored", "RCU used", "time", "status")
    for r in results:
        backup = str(r.ref.backup_id if r.ref else "-")
        if r.started_in:  # runs remotely: nothing measured here
            table.add_row(r.table, backup, *["-"] * 5, f"[yellow]started in {r.started_in}")
            continue
        table.add_row(
            r.table,
            backup,
            f"{r.item_count:,}",
            human_bytes(r.raw_bytes),
            human_bytes(r.stored_bytes),
            f"{r.consumed_read_units:,.0f}",
            f"{r.duration_s:.1f}s",
            "[green]complete" if r.ok else f"[red]failed: {r.error}",
        )
    Console().print(table)


class _stop_on_sigterm:
    """SIGTERM stops the segments between pages, like Ctrl-C: nothing half-committed."""

    def __enter__(self) -> threading.Event:
        self.stop = threading.Event()
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self.stop

    def _handle(self, *_: Any) -> None:
        self.stop.set()

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        if self.stop.is_set() and exc[0] is None:
            raise Interrupted("terminated; no partial backup was committed")


@cli.command(name="list")
@click.argument("table", required=False)
@repo_option
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, table: str | None, repo: str | None, as_json: bool) -> None:
    """Backups in the repository: table, id, time, items, bytes, complete or incomplete."""
    from hippolyte.repo.catalog import list_backups

    settings = _settings(ctx, repository=repo)
    rows = list_backups(_storage(settings), table)
    if _json_mode(as_json):
        _out(
            [
                {
                    "table": s.ref.table,
                    "id": s.ref.backup_id,
                    "time": s.started,
                    "status": "complete" if s.complete else "incomplete",
                    "items": s.item_count,
                    "bytes": s.raw_bytes,
                    "storedBytes": s.stored_bytes,
                    "durationSeconds": s.duration_s,
                }
                for s in rows
            ]
        )
        return
    out = Table("table", "backup id", "time (UTC)", "items", "data", "stored", "status")
    for s in rows:
        out.add_row(
            s.ref.table,
            s.ref.backup_id,
            s.started.strftime("%Y-%m-%d %H:%M:%S") if s.started else "-",
            f"{s.item_count:,}" if s.item_count is not None else "-",
            human_bytes(s.raw_bytes),
            human_bytes(s.stored_bytes),
            "[green]complete" if s.complete else "[yellow]incomplete",
        )
    Console().print(out)


@cli.command()
@click.argument("ref")
@repo_option
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, repo: str | None, as_json: bool) -> None:
    """Details of one backup: REF is TABLE/BACKUP_ID or the path/URL of a backup folder."""
    from hippolyte.repo import catalog

    storage, bref = _resolve(ctx, ref, repo)
    catalog.require(storage, bref)
    if not catalog.is_complete(storage, bref):
        doc = {
            "ref": str(bref),
            "status": "incomplete",
            "started": catalog.started_info(storage, bref),
        }
    else:
        d = catalog.load_descriptor(storage, bref)
        doc = {
            "ref": str(bref),
            "status": "complete",
            "table": d["table"],
            "backup": d["backup"],
            "files": d["files"],
        }
    if _json_mode(as_json):
        _out(doc)
        return
    _print_show(doc)


def _print_show(doc: dict[str, Any]) -> None:
    con = Console()
    con.print(f"[bold]{doc['ref']}[/bold]  {doc['status']}")
    if doc["status"] != "complete":
        return
    b, t = doc["backup"], doc["table"]["description"]
    keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in t.get("KeySchema", []))
    con.print(f"  time      {b['startTime']} -> {b['endTime']} ({b['durationSeconds']} s)")
    con.print(
        f"  items     {b['itemCount']:,}   data {human_bytes(b['rawBytes'])}   "
        f"stored {human_bytes(b['storedBytes'])}   RCU used {b['consumedReadUnits']:,}"
    )
    con.print(f"  keys      {keys}")
    billing = (t.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    con.print(f"  billing   {billing}")
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for idx in t.get(kind, []):
            con.print(f"  {kind[:-7].lower()} {idx['IndexName']}")
    con.print(f"  files     {len(doc['files'])}")


def _resolve(ctx: click.Context, ref: str, repo: str | None) -> tuple[Storage, Any]:
    settings = _settings(ctx, repository=repo)
    bref = manifest.parse_ref(ref, repo=settings.repository)
    storage = open_storage(bref.repo, conn=settings.effective_targets()[0].connection())
    return storage, bref


@cli.command()
@click.argument("ref", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every backup in the repository.")
@repo_option
@json_option
@click.pass_context
def verify(
    ctx: click.Context, ref: str | None, all_: bool, repo: str | None, as_json: bool
) -> None:
    """Re-read every file and check checksums and counts against the manifests."""
    from hippolyte.repo import catalog
    from hippolyte.repo.verify import verify as run

    if bool(ref) == all_:
        raise click.UsageError("give either REF or --all")
    if all_:
        settings = _settings(ctx, repository=repo)
        storage = _storage(settings)
        refs = [r for r in catalog.refs(storage) if catalog.is_complete(storage, r)]
    else:
        storage, bref = _resolve(ctx, ref or "", repo)
        refs = [bref]
    reports = [run(storage, r, workers=_settings(ctx).workers) for r in refs]
    if _json_mode(as_json):
        _out(
            [
                {
                    "ref": str(r.ref),
                    "ok": r.ok,
                    "files": r.files,
                    "items": r.items,
                    "storedBytes": r.stored_bytes,
                    "problems": r.problems,
                }
                for r in reports
            ]
        )
    else:
        for r in reports:
            if r.ok:
                Console().print(
                    f"[green]ok[/green]  {r.ref}: {r.files} files, {r.items:,} items, "
                    f"{human_bytes(r.stored_bytes)}"
                )
            else:
                for p in r.problems:
                    Console().print(f"[red]FAIL[/red] {p}", highlight=False)
    bad = [r for r in reports if not r.ok]
    if bad:
        from hippolyte.core.errors import BackupCorrupt

        raise BackupCorrupt(
            f"{len(bad)} of {len(reports)} backups failed verification: " + bad[0].problems[0]
        )


@cli.command()
@click.option(
    "--dir",
    "workdir",
    default="demo-repo",
    show_default=True,
    help="Where the demo's repository goes.",
)
@click.option("--items", default=3000, show_default=True, help="Items in the main sample table.")
@json_option
@click.pass_context
def demo(ctx: click.Context, workdir: str, items: int, as_json: bool) -> None:
    """Start the embedded DynamoDB Local, create sample tables, plan and run tonight's job,
    verify, restore each backup into a new table and prove it, show the status, and run the
    monitor with its notification going to a local webhook; print what was done."""
    from hippolyte.ops.demo import run_demo

    json_mode = _json_mode(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)

    def say(text: str) -> None:
        if isinstance(renderer, JsonLines):
            renderer.line({"event": "demo", "text": text})
        else:
            err_console.print(text, highlight=False)

    try:
        summary = run_demo(workdir=workdir, items=items, emit=renderer, say=say)
    finally:
        renderer.close()
    if json_mode:
        _out(summary)
    else:
        _print_results(summary["results"])
        for line in summary["verify"]:
            Console().print(line, highlight=False)
        for proof in summary["restores"]:
            Console().print(
                f"restore {proof['source']} -> {proof['table']}: {proof['items']:,} "
                f"items, "
                + (
                    "[green]identical to the backup"
                    if proof["proven"]
                    else "[red]DIFFERENT from the backup"
                ),
                highlight=False,
            )
        for line in summary["status"]:
            Console().print(line, highlight=False)
        monitor = summary["monitor"]
        Console().print(
            f"monitor: {'ok' if monitor['ok'] else 'FAILED'}; "
            f"{len(monitor['received'])} notification(s) to {monitor['webhook']}",
            highlight=False,
        )
    if not all(p["proven"] for p in summary["restores"]) or not summary["monitor"]["ok"]:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed("the demo found a problem (see above)")


@cli.command()
@click.argument("ref")
@click.option("--table", "table", required=True, help="Name of the table to restore into.")
@repo_option
@click.option(
    "--write-percent",
    type=click.FloatRange(0.01, 1.0),
    default=0.9,
    show_default=True,
    help="Share of the target's write capacity to use.",
)
@click.option(
    "--write-capacity",
    type=click.IntRange(1, 40000),
    default=1000,
    show_default=True,
    help="Temporary RCU/WCU of a provisioned target while loading and proving.",
)
@click.option("--workers", type=click.IntRange(1, 256), help="Parallel writers.")
@click.option("--resume", is_flag=True, help="Continue an interrupted restore from its checkpoint.")
@click.option(
    "--into-existing",
    is_flag=True,
    help="Write into an existing table whose keys and indexes match the backup.",
)
@click.option("--schema-from", help="Take the key schema and indexes from this existing table.")
@click.option("--key", "key_spec", help="Key schema for exports without one: pk:S[,sk:N].")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Where checkpoints are kept.")
@aws_options
@json_option
@click.pass_context
def restore(
    ctx: click.Context,
    ref: str,
    table: str,
    repo: str | None,
    write_percent: float,
    write_capacity: int,
    workers: int | None,
    resume: bool,
    into_existing: bool,
    schema_from: str | None,
    key_spec: str | None,
    state_dir: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Restore a backup (ours, a DynamoDB export, or a Data Pipeline export) into a new table,
    then prove it: item count and digest of the new table against the backup."""
    from pathlib import Path

    from hippolyte.ops.restore import RestoreParams
    from hippolyte.ops.restore import restore as run

    if schema_from and key_spec:
        raise click.UsageError("give --schema-from or --key, not both")
    settings = _settings(ctx, workers=workers, repository=repo, **aws)
    target = settings.effective_targets()[0]
    source = _open_source(settings, ref, repo=settings.repository)
    description = _schema(target, schema_from=schema_from, key_spec=key_spec, table=table)
    params = RestoreParams(
        write_percent=write_percent,
        write_capacity=write_capacity,
        workers=settings.workers,
        max_attempts=settings.max_attempts,
        resume=resume,
        into_existing=into_existing,
        state_dir=Path(state_dir) if state_dir else None,
    )
    json_mode = _json_mode(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with _stop_on_sigterm() as stop:
            report = run(
                source,
                conn=target.connection(),
                table=table,
                params=params,
                description=description,
                emit=renderer,
                stop=stop,
            )
    finally:
        renderer.close()
    doc = {
        "table": report.table,
        "source": report.source,
        "itemsWritten": report.items_written,
        "proof": {
            "ok": report.proven,
            "backup": {"items": report.backup.count, "digest": report.backup.hex},
            "table": {"items": report.restored.count, "digest": report.restored.hex},
        },
        "notes": report.notes,
    }
    if json_mode:
        _out(doc)
    else:
        con = Console()
        con.print(f"restored {report.items_written:,} items from {report.source} into {table}")
        con.print(f"  backup  {report.backup.count:,} items  digest {report.backup.hex[:16]}")
        con.print(f"  table   {report.restored.count:,} items  digest {report.restored.hex[:16]}")
        con.print("  proof   [green]identical" if report.proven else "  proof   [red]DIFFERENT")
        for note in report.notes:
            con.print(f"  note    {note}", highlight=False)
    if not report.proven:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed(
            f"the restored table {table!r} differs from the backup: "
            f"{report.restored.count} items vs {report.backup.count}"
        )


def _open_source(settings: Settings, ref: str, *, repo: str | None) -> Any:
    """TABLE/BACKUP_ID within ``repo``, or the path/URL of any backup folder."""
    from hippolyte.formats.open import open_source

    conn = settings.effective_targets()[0].connection()
    try:
        bref = manifest.parse_ref(ref, repo=repo)
    except ConfigError:  # not shaped like ours: any folder (a native or Data Pipeline export)
        folder = ref.rstrip("/")
        return open_source(open_storage(folder, conn=conn), "", location=folder)
    storage = open_storage(bref.repo, conn=conn)
    return open_source(storage, bref.prefix, location=f"{bref.repo}/{bref}")


def _schema(target: Target, *, schema_from: str | None, key_spec: str | None, table: str) -> Any:
    if schema_from:
        from hippolyte.adapters import dynamodb

        client = dynamodb.control_client(target.connection())
        return dynamodb.describe(client, schema_from).description
    if key_spec:
        from hippolyte.formats.base import KeySchema
        from hippolyte.ops.convert import schema_from_key

        return schema_from_key(table, KeySchema.parse(key_spec))
    return None


@cli.command()
@click.argument("src")
@repo_option
@click.option("--table-name", required=True, help="Table name the backup is filed under.")
@click.option("--schema-from", help="Take the key schema and indexes from this existing table.")
@click.option("--key", "key_spec", help="Key schema: pk:S[,sk:N].")
@aws_options
@json_option
@click.pass_context
def convert(
    ctx: click.Context,
    src: str,
    repo: str | None,
    table_name: str,
    schema_from: str | None,
    key_spec: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Rewrite a DynamoDB export or a Data Pipeline export (SRC: its folder's path or URL)
    into a Hippolyte backup in the repository, with checksums."""
    from hippolyte.ops.convert import convert as run

    if bool(schema_from) == bool(key_spec):
        raise click.UsageError("give exactly one of --schema-from TABLE or --key pk:S[,sk:N]")
    settings = _settings(ctx, repository=repo, **aws)
    target = settings.effective_targets()[0]
    source = _open_source(settings, src, repo=None)
    if source.kind == "hippolyte":
        raise ConfigError(f"{src} is already a Hippolyte backup")
    description = _schema(target, schema_from=schema_from, key_spec=key_spec, table=table_name)
    json_mode = _json_mode(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        ref = run(
            source,
            dest=_storage(settings, target),
            table_name=table_name,
            schema_description=description,
            emit=renderer,
        )
    finally:
        renderer.close()
    if json_mode:
        _out({"ref": str(ref), "repository": ref.repo, "kind": source.kind})
    else:
        Console().print(f"converted {source.kind} export {src} into {ref.repo}/{ref}")


@cli.command()
@click.option(
    "--at", "at", help="Plan as if the run started at HH:MM UTC (default: the window's start)."
)
@click.option(
    "--from-descriptions",
    type=click.Path(dir_okay=False),
    help="Plan offline from a JSON array of DescribeTable Table objects.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html", "datapipeline"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file, not stdout.")
@click.option("--bucket", help="S3 bucket for --format datapipeline (default: the repository's).")
@repo_option
@aws_options
@click.pass_context
def plan(
    ctx: click.Context,
    at: str | None,
    from_descriptions: str | None,
    fmt: str,
    out: str | None,
    bucket: str | None,
    repo: str | None,
    **aws: Any,
) -> None:
    """Plan tonight's run: estimate each table, boost what cannot fit, pack into pipelines."""
    import datetime as dt
    from pathlib import Path

    from hippolyte.core.planning import to_json
    from hippolyte.ops.plan import plan_from_descriptions, plan_target

    settings = _settings(ctx, repository=repo, **aws)
    try:
        start = dt.time.fromisoformat(at) if at else None
    except ValueError:
        raise ConfigError(f"--at {at!r}: expected HH:MM (UTC)") from None
    if from_descriptions:
        result = plan_from_descriptions(settings, Path(from_descriptions), at=start)
    else:
        target = settings.effective_targets()[0]
        repo_url = settings.repository_for(target)
        storage = open_storage(repo_url, conn=target.connection()) if repo_url else None
        result, _ = plan_target(settings, target, storage=storage, at=start)
    doc = to_json(result)
    region = (
        settings.effective_targets()[0].region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    )
    text = _render_plan(doc, fmt=fmt, bucket=bucket, repo=settings.repository, region=region)
    if text is None:
        _print_plan(doc)
    elif out:
        Path(out).write_text(text, encoding="utf-8")
        err_console.print(f"wrote {fmt} plan to {out}")
    else:
        click.echo(text)


def _render_plan(
    doc: dict[str, Any], *, fmt: str, bucket: str | None, repo: str | None, region: str
) -> str | None:
    import datetime as dt

    if fmt == "json":
        return dumps(doc)
    if fmt == "html":
        from hippolyte.core.plan_html import render

        return render(doc)
    if fmt == "datapipeline":
        from hippolyte.core.pipeline_defs import definitions

        prefix = ""
        if not bucket and repo and repo.startswith("s3://"):
            bucket, _, prefix = repo[5:].partition("/")  # into the repository's prefix
        if not bucket:
            raise ConfigError("--format datapipeline needs --bucket or an s3:// repository")
        stamp = manifest.backup_id(dt.datetime.now(dt.UTC))
        return dumps(definitions(doc, bucket=bucket, prefix=prefix, timestamp=stamp, region=region))
    return None


def _is_empty(control: Any, table: str) -> bool:
    from hippolyte.adapters import dynamodb

    return not dynamodb.has_items(control, table)


def _print_plan(doc: dict[str, Any]) -> None:
    con = Console()
    out = Table("pipeline", "table", "starts", "ends", "estimate", "boost", "why")
    for p in doc["pipelines"]:
        for t in p["tables"]:
            b = t["boost"]
            boost = f"{b['old_rcu']} -> {b['new_rcu']} RCU" if b else ""
            out.add_row(
                str(p["index"]),
                t["table"],
                t["starts_at"],
                t["ends_at"],
                f"{t['estimate']['seconds']:,.0f} s",
                boost,
                t["estimate"]["why"],
            )
    con.print(out)
    for s in doc["skipped"]:
        con.print(f"skipped {s['table']}: {s['reason']}", highlight=False)
    for d in doc["decisions"]:
        con.print(d, highlight=False)


@cli.command()
@click.option("--run", "run_id", help="The run to revert (default: every run with open entries).")
@click.option(
    "--force",
    is_flag=True,
    help="Also tables whose Data Pipeline export still runs (it then reads with less capacity).",
)
@repo_option
@json_option
@click.pass_context
def revert(
    ctx: click.Context, run_id: str | None, force: bool, repo: str | None, as_json: bool
) -> None:
    """Put back the read capacity and autoscaling of every table a run boosted. Idempotent.
    Tables still exported by a running Data Pipeline are left to `monitor` unless --force."""
    from hippolyte.ops.revert import revert_run
    from hippolyte.repo.journal import Journal, run_ids

    settings = _settings(ctx, repository=repo)
    storage = _storage(settings)
    runs = [run_id] if run_id else run_ids(storage)
    outcomes = []
    for rid in runs:
        journal = Journal.open(storage, rid, create=False)
        outcomes += [{"run": rid, **o.__dict__} for o in revert_run(journal, force=force)]
    if _json_mode(as_json):
        _out(outcomes)
    else:
        for o in outcomes:
            Console().print(f"{o['run']} {o['table']}: {o['status']} {o['note']}", highlight=False)
        if not outcomes:
            Console().print("nothing to revert")
    pending = [o for o in outcomes if o["status"] == "revert-pending"]
    if pending:
        from hippolyte.core.errors import AwsError

        raise AwsError(
            f"{len(pending)} tables could not be reverted yet (DynamoDB's daily "
            "ration of decreases); run revert again later"
        )


@cli.command()
@repo_option
@aws_options
@json_option
@click.pass_context
def status(ctx: click.Context, repo: str | None, as_json: bool, **aws: Any) -> None:
    """Per table: last committed backup, age, items, bytes, duration, last run; the tables with
    no backup at all. Exit 1 when a selected table has no backup younger than the RPO."""
    import datetime as dt

    from hippolyte.adapters import dynamodb
    from hippolyte.ops.discover import discover as run_discover
    from hippolyte.ops.status import StatusReport, last_run_states, table_status

    settings = _settings(ctx, repository=repo, **aws)
    report = StatusReport(rpo_hours=settings.rpo_hours)
    now = dt.datetime.now(dt.UTC)
    for target in settings.effective_targets():
        storage = _storage(settings, target)
        runs = last_run_states(storage)
        control = dynamodb.control_client(target.connection())
        for sel in run_discover(
            conn=target.connection(),
            rules=settings.selection.rules(),
            max_attempts=settings.max_attempts,
        ):
            report.tables.append(
                table_status(
                    storage,
                    sel,
                    target=target.label,
                    rpo_hours=settings.rpo_hours,
                    last_run=runs,
                    now=now,
                    is_empty=functools.partial(_is_empty, control),
                )
            )
    if _json_mode(as_json):
        _out(
            {
                "rpoHours": report.rpo_hours,
                "tables": report.tables,
                "uncovered": [t.table for t in report.uncovered],
                "late": [t.table for t in report.late],
                "ok": not report.late,
            }
        )
    else:
        out = Table(
            "target",
            "table",
            "selected",
            "last backup",
            "age",
            "items",
            "data",
            "took",
            "last run",
            "RPO",
        )
        for t in report.tables:
            out.add_row(
                t.target,
                t.table,
                "yes" if t.selected else "no",
                t.last_backup or "-",
                f"{t.age_hours:.1f} h" if t.age_hours is not None else "-",
                f"{t.items:,}" if t.items is not None else "-",
                human_bytes(t.bytes),
                f"{t.duration_s:.0f} s" if t.duration_s is not None else "-",
                t.last_run or "-",
                "[green]ok" if t.meets_rpo else ("[red]late" if t.selected else "-"),
            )
        Console().print(out)
        if report.uncovered:
            Console().print(
                "no backup at all: " + ", ".join(t.table for t in report.uncovered), highlight=False
            )
    if report.late:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed(
            f"{len(report.late)} selected tables have no committed backup younger "
            f"than {settings.rpo_hours:g} h: " + ", ".join(t.table for t in report.late)
        )


@cli.command()
@click.option("--run", "run_id", help="The run to check (default: tonight's, per the schedule).")
@click.option("--verify", "check_files", is_flag=True, help="Also re-read every backup's files.")
@click.option("--no-notify", is_flag=True, help="Report only; send no notification.")
@repo_option
@aws_options
@json_option
@click.pass_context
def monitor(
    ctx: click.Context,
    run_id: str | None,
    check_files: bool,
    no_notify: bool,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Put capacity back, check every table of the night's run, notify on failure or when
    nothing ran. Exit 1 when anything failed."""
    from hippolyte.ops.jobs import nightly_monitor

    settings = _settings(ctx, repository=repo, **aws)
    outcome = nightly_monitor(
        settings, run_id=run_id, check_files=check_files, notify=not no_notify
    )
    if _json_mode(as_json):
        _out({"ok": outcome.ok, "reports": outcome.reports, "notifications": outcome.notifications})
    else:
        con = Console()
        for r in outcome.reports:
            if not r.ran:
                con.print(f"[red]nothing ran[/red]: no run record for tonight in {r.repository}")
                continue
            running = f", {len(r.running)} still running" if r.running else ""
            con.print(
                f"run {r.run_id}: {len(r.tables) - len(r.failed) - len(r.running)} ok, "
                f"{len(r.failed)} failed{running}; logs: {r.logs}",
                highlight=False,
            )
            for t in r.tables:
                mark = (
                    "[green]ok  [/green]"
                    if t.ok
                    else "[yellow]RUN [/yellow]"
                    if t.running
                    else "[red]FAIL[/red]"
                )
                con.print(
                    f"  {mark} pipeline {t.pipeline} {t.table}: {escape(t.reason)}", highlight=False
                )
            for line in r.capacity:
                con.print(f"  capacity {line}", highlight=False)
        for n in outcome.notifications:
            con.print(
                f"  notify {n.channel}: {'sent' if n.ok else 'FAILED ' + n.detail}", highlight=False
            )
    if not outcome.ok:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed("the monitor found failures (see above)")


@cli.command()
@click.option(
    "--run-now",
    type=click.Choice(["backup", "monitor"]),
    multiple=True,
    help="Also run this job once at start-up (then follow the schedule).",
)
@click.option("--port", type=click.IntRange(0, 65535), help="Port of /metrics and /healthz.")
@click.option("--host", help="Address of /metrics and /healthz (default 127.0.0.1).")
@repo_option
@aws_options
@click.pass_context
def serve(
    ctx: click.Context,
    run_now: tuple[str, ...],
    port: int | None,
    host: str | None,
    repo: str | None,
    **aws: Any,
) -> None:
    """Run the schedule (backup 00:10, monitor hourly 01:15-10:15 UTC by default), one run at
    a time through a lock in the repository; /metrics and /healthz; JSON logs; SIGTERM stops
    cleanly after reverting capacity."""
    from hippolyte.core.config import Serve
    from hippolyte.ops.logs import json_logging
    from hippolyte.serve.daemon import serve as run

    settings = _settings(ctx, repository=repo, **aws)
    if port is not None or host is not None:
        over = settings.serve.model_dump() | {
            k: v for k, v in (("port", port), ("host", host)) if v is not None
        }
        settings = settings.model_copy(update={"serve": Serve(**over)})
    json_logging()
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        run(
            settings,
            stop=stop,
            run_now=list(run_now),
            on_listen=lambda url: click.echo(f"listening on {url}", err=True),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cli.group()
def deploy() -> None:
    """AWS deployment: a CloudFormation template and a least-privilege IAM policy."""


@deploy.command(name="template")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Template format.",
)
@click.option("--function-code", help="s3://BUCKET/KEY.zip of the packaged function.")
@click.pass_context
def deploy_template(ctx: click.Context, fmt: str, function_code: str | None) -> None:
    """Print the CloudFormation template: Lambda, two schedules, SNS topic, backup bucket,
    least-privilege role (see docs/deploy.md)."""
    from hippolyte.deploy.template import template

    click.echo(template(fmt=fmt, settings=ctx.obj["settings"], function_code=function_code))


@deploy.command(name="iam-policy")
@click.pass_context
def deploy_iam_policy(ctx: click.Context) -> None:
    """Print the least-privilege IAM policy for running the CLI from elsewhere."""
    import json

    from hippolyte.deploy.template import iam_policy

    click.echo(json.dumps(iam_policy(settings=ctx.obj["settings"]), indent=2))
