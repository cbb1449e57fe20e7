"""Backing up: discover, backup, plan, revert, status, monitor."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hippolyte.cli.main import cli
from hippolyte.cli.options import (
    aws_options,
    err_console,
    instant,
    json_option,
    print_json,
    repo_option,
    settings_of,
    stop_on_sigterm,
    table_names,
    wants_json,
)
from hippolyte.cli.render import (
    Bars,
    JsonLines,
    dumps,
    human_bytes,
    print_plan,
    print_results,
)
from hippolyte.core.config import Settings
from hippolyte.core.errors import ConfigError
from hippolyte.ops.context import storage_for, storage_if_any


@cli.command()
@aws_options
@json_option
@click.pass_context
def discover(ctx: click.Context, as_json: bool, **aws: Any) -> None:
    """List the selected tables (billing, RCU, size, items) and why others are left out."""
    from hippolyte.ops.discover import discover as run

    settings = settings_of(ctx, **aws)
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
    if wants_json(as_json):
        print_json(rows)
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
@click.argument("tables", nargs=-1, callback=table_names)
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
@click.option(
    "--incremental",
    is_flag=True,
    help="Instead of a full backup: export each table's changes since its last backup or "
    "change set (DynamoDB's incremental export; PITR tables, s3:// repository) and commit "
    "them as change sets.",
)
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
    incremental: bool,
    as_json: bool,
    **aws: Any,
) -> None:
    """Back up the named tables; without names (or with --all), run tonight's plan: every
    selected table, pipelines in parallel, boosting and reverting capacity as planned.
    With --incremental, commit each table's changes since its last backup as change sets."""
    from hippolyte.ops.context import backup_params

    if tables and all_:
        raise click.UsageError("give TABLE names or --all, not both")
    if incremental:
        if dry_run or export_at or engine:
            raise click.UsageError("--incremental takes no --dry-run, --at or --engine")
        settings = settings_of(ctx, repository=repo, **aws)
        _incremental(settings, tables, as_json=as_json)
        return
    if tables and dry_run:
        raise click.UsageError("--dry-run applies to the planned run (--all)")
    settings = settings_of(
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
    params = replace(backup_params(settings), at=instant(export_at), fallback=not no_fallback)
    if export_at and settings.engine not in ("export", "auto"):
        raise click.UsageError("--at needs --engine export (or auto)")
    if dry_run:
        from hippolyte.ops.jobs import planned_actions

        for line in planned_actions(settings):
            click.echo(line)
        return
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    runs: list[Any] = []
    try:
        with stop_on_sigterm() as stop:
            if tables:  # one target (checked above)
                from hippolyte.ops.backup import backup_tables

                results = backup_tables(
                    list(tables),
                    conn=targets[0].connection(),
                    storage=storage_for(settings, targets[0]),
                    params=params,
                    emit=renderer,
                    stop=stop,
                )
            else:
                from hippolyte.ops.jobs import nightly_backup

                runs = nightly_backup(settings, params=params, emit=renderer, stop=stop)
                results = [r for run in runs for r in run.results]
    finally:
        renderer.close()
    if json_mode:
        print_json(
            {
                "results": results,
                "ok": all(r.ok for r in results),
                "runs": [{"run": r.run_id, "capacity": r.capacity} for r in runs],
            }
        )
    else:
        print_results(results)
    failed = [r for r in results if not r.ok]
    if failed:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed(
            f"{len(failed)} of {len(results)} table backups failed: "
            + "; ".join(f"{r.table}: {r.error}" for r in failed)
        )


def _incremental(settings: Settings, tables: tuple[str, ...], *, as_json: bool) -> None:
    """backup --incremental: named tables (one target), else every selected table with PITR."""
    from hippolyte.ops.incremental import incremental_backup, incremental_selected

    targets = settings.effective_targets()
    if tables and len(targets) > 1:
        raise ConfigError(
            "tables named on the command line need exactly one target "
            f"(the config has {len(targets)}); pass --region/--endpoint-url"
        )
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with stop_on_sigterm() as stop:
            if tables:
                results = incremental_backup(
                    list(tables),
                    conn=targets[0].connection(),
                    storage=storage_for(settings, targets[0]),
                    emit=renderer,
                    stop=stop,
                    max_attempts=settings.max_attempts,
                )
            else:
                results = incremental_selected(settings, emit=renderer, stop=stop)
    finally:
        renderer.close()
    if json_mode:
        print_json({"results": results, "ok": all(r.ok for r in results)})
    else:
        out = Table("table", "change sets", "changes", "time", "status", box=None)
        for r in results:
            spans = ", ".join(f"[{s['from']}, {s['to']})" for s in r.sets) or "-"
            status = "[red]failed: " if not r.ok else "[green]ok" + (": " if r.note else "")
            out.add_row(
                r.table,
                spans,
                f"{r.changes:,}",
                f"{r.duration_s:.1f}s",
                status + escape(r.error or r.note or ""),
            )
        Console().print(out)
    failed = [r for r in results if not r.ok]
    if failed:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed(
            f"{len(failed)} of {len(results)} incremental backups failed: "
            + "; ".join(f"{r.table}: {r.error}" for r in failed)
        )


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

    settings = settings_of(ctx, repository=repo, **aws)
    try:
        start = dt.time.fromisoformat(at) if at else None
    except ValueError:
        raise ConfigError(f"--at {at!r}: expected HH:MM (UTC)") from None
    if from_descriptions:
        result = plan_from_descriptions(settings, Path(from_descriptions), at=start)
    else:
        target = settings.effective_targets()[0]
        storage = storage_if_any(settings, target)
        result, _ = plan_target(settings, target, storage=storage, at=start)
    doc = to_json(result)
    text = _render_plan(doc, fmt=fmt, settings=settings, bucket=bucket)
    if text is None:
        print_plan(doc)
    elif out:
        Path(out).write_text(text, encoding="utf-8")
        err_console.print(f"wrote {fmt} plan to {out}")
    else:
        click.echo(text)


def _render_plan(
    doc: dict[str, Any], *, fmt: str, settings: Settings, bucket: str | None
) -> str | None:
    if fmt == "json":
        return dumps(doc)
    if fmt == "html":
        from hippolyte.core.plan_html import render

        return render(doc)
    if fmt == "datapipeline":
        from hippolyte.ops.plan import pipeline_definitions

        return dumps(pipeline_definitions(settings, doc, bucket=bucket))
    return None


@cli.command()
@click.option("--run", "run_id", help="The run to revert (default: every run with open entries).")
@click.option(
    "--force",
    is_flag=True,
    help="Also tables whose Data Pipeline export still runs (it then reads with less capacity).",
)
@repo_option
@aws_options
@json_option
@click.pass_context
def revert(
    ctx: click.Context,
    run_id: str | None,
    force: bool,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Put back the read capacity and autoscaling of every table a run boosted. Idempotent.
    Tables still exported by a running Data Pipeline are left to `monitor` unless --force.
    Each table is reached as the run recorded it; --region/--profile/--endpoint-url/--role-arn,
    when given, replace the recorded values (and reach the repository)."""
    from hippolyte.ops.revert import revert_run
    from hippolyte.repo.journal import Journal, run_ids
    from hippolyte.repo.runs import has_plan

    settings = settings_of(ctx, repository=repo, **aws)
    storage = storage_for(settings)
    runs = [run_id] if run_id else run_ids(storage)
    given = {k: v for k, v in aws.items() if v is not None}
    outcomes = []
    for rid in runs:
        # a run that boosted nothing (or was killed before its first boost) has no journal
        journal = Journal.open(storage, rid, create=has_plan(storage, rid))
        done = revert_run(journal, force=force, target=given)
        outcomes += [{"run": rid, **o.__dict__} for o in done]
    if wants_json(as_json):
        print_json(outcomes)
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
    no backup at all; for a table with change sets, how far its changes reach, their lag and
    the gaps since its newest full backup; how many backups [retention] keeps and the oldest
    restorable time; what each [[copies]] destination lacks. Exit 1 when a selected table has
    no backup younger than the RPO, a table's changes have such a gap or lag more than
    capture_lag_seconds, or a copy lacks a backup older than the RPO (or cannot be read)."""
    from hippolyte.cli.render import print_status, status_doc
    from hippolyte.ops.status import fleet_status

    settings = settings_of(ctx, repository=repo, **aws)
    report = fleet_status(settings)
    if wants_json(as_json):
        print_json(status_doc(report))
    else:
        print_status(report)
    problems = []
    if report.late:
        problems.append(
            f"{len(report.late)} selected tables have no committed backup younger "
            f"than {settings.rpo_hours:g} h: " + ", ".join(t.table for t in report.late)
        )
    if report.broken_changes:
        problems.append(
            f"the changes of {len(report.broken_changes)} tables have a gap since their newest "
            f"full backup or lag more than {settings.capture_lag_seconds:g} s: "
            + ", ".join(t.table for t in report.broken_changes)
        )
    for c in report.late_copies:
        problems.append(
            f"copies to {c.destination}: "
            + (c.error or f"{c.late} backups older than {settings.rpo_hours:g} h are missing")
        )
    if problems:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed("; ".join(problems))


@cli.command()
@click.option("--run", "run_id", help="The run to check (default: tonight's, per the schedule).")
@click.option(
    "--verify",
    "check_files",
    is_flag=True,
    help="Also re-read every backup's files and check every item as a restore would "
    "(recorded: the backup's first restore then only hashes its files).",
)
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
    """Put capacity back, check every table of the night's run and the change sets of those
    that have any (a gap since the newest full backup, a lag over capture_lag_seconds), notify
    on failure or when nothing ran. Exit 1 when anything failed."""
    from hippolyte.cli.render import print_monitor
    from hippolyte.ops.jobs import nightly_monitor

    settings = settings_of(ctx, repository=repo, **aws)
    outcome = nightly_monitor(
        settings, run_id=run_id, check_files=check_files, notify=not no_notify
    )
    if wants_json(as_json):
        print_json(
            {"ok": outcome.ok, "reports": outcome.reports, "notifications": outcome.notifications}
        )
    else:
        print_monitor(outcome)
    if not outcome.ok:
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed("the monitor found failures (see above)")
