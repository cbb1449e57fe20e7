"""Reading the repository: list, show, verify."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hippolyte.cli.main import cli
from hippolyte.cli.options import (
    aws_options,
    json_option,
    print_json,
    repo_option,
    settings_of,
    table_names,
    wants_json,
)
from hippolyte.cli.render import (
    human_bytes,
    print_show,
)
from hippolyte.ops.context import open_ref, storage_for


@cli.command(name="list")
@click.argument("table", required=False)
@click.option("--recoveries", is_flag=True, help="List the recoveries (`recover`) instead.")
@click.option(
    "--history",
    is_flag=True,
    help="TABLE's restorable instants (full backups + change sets) and gaps only.",
)
@repo_option
@aws_options
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context,
    table: str | None,
    recoveries: bool,
    history: bool,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Backups in the repository: table, id, time, items, bytes, complete or incomplete
    (--recoveries: the recoveries and undos, with their outcome)."""
    from hippolyte.repo.catalog import list_backups

    settings = settings_of(ctx, repository=repo, **aws)
    if recoveries:
        _list_recoveries(settings, table, as_json=as_json)
        return
    if history:
        if table is None:
            raise click.UsageError("--history needs a TABLE")
        _print_history(settings, table, as_json=as_json)
        return
    rows = list_backups(storage_for(settings), table)
    if wants_json(as_json):
        print_json(
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
    if table is not None:
        _print_history(settings, table, as_json=False, quiet=True)


def _print_history(settings: Any, table: str, *, as_json: bool, quiet: bool = False) -> None:
    from hippolyte.ops.pitr import history_report

    doc = history_report(storage_for(settings), table)
    if wants_json(as_json):
        print_json(doc)
        return
    con = Console()
    if not doc["changeSets"]:
        if not quiet:
            con.print(f"{table}: no change sets: only the full backups can be restored")
        return
    con.print(
        f"{table}: {doc['changeSets']} change sets up to {doc['changesUntil']} "
        f"({doc['lagSeconds']} s ago); restorable at any instant of:",
        highlight=False,
    )
    for r in doc["ranges"]:
        con.print(
            f"  {r['from']} -> {r['to']}  (backup {r['backup']} + {r['changeSets']} change sets)",
            highlight=False,
        )
    for g in doc["gaps"]:
        con.print(f"  [yellow]gap[/] {g['from']} -> {g['to']}: {g['cause']}", highlight=False)


def _list_recoveries(settings: Any, table: str | None, *, as_json: bool) -> None:
    from hippolyte.ops.recover import list_recoveries

    rows = [r for r in list_recoveries(settings) if table is None or r.table == table]
    if wants_json(as_json):
        print_json([r.to_json() for r in rows])
        return
    out = Table("recovery id", "kind", "table", "from", "actions", "status", "proven")
    for r in rows:
        out.add_row(
            r.id,
            r.kind,
            r.table,
            r.backup,
            f"{r.planned:,}",
            r.status,
            "-" if r.proven is None else ("[green]yes" if r.proven else "[red]no"),
        )
    Console().print(out)


@cli.command()
@click.argument("ref")
@repo_option
@aws_options
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, repo: str | None, as_json: bool, **aws: Any) -> None:
    """Details of one backup: REF is TABLE/BACKUP_ID or the path/URL of a backup folder."""
    from hippolyte.repo import catalog

    storage, bref = open_ref(settings_of(ctx, **aws), ref, repo=repo)
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
    if wants_json(as_json):
        print_json(doc)
        return
    print_show(doc)


@cli.command()
@click.argument("ref", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every backup in the repository.")
@click.option(
    "--items",
    is_flag=True,
    help="Also check every item as a restore would before writing, and record it "
    "(proof.json), so that the backup's first restore only hashes its files.",
)
@repo_option
@aws_options
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    ref: str | None,
    all_: bool,
    items: bool,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Re-read every file and check checksums and counts against the manifests."""
    from hippolyte.ops.restore_check import check_items
    from hippolyte.repo.changes import CHANGES
    from hippolyte.repo.verify import verify as run
    from hippolyte.repo.verify import verify_all

    if bool(ref) == all_:
        raise click.UsageError("give either REF or --all")
    settings = settings_of(ctx, repository=repo, **aws)
    if all_:
        storage = storage_for(settings)
        reports = verify_all(storage, workers=settings.workers, read_files=not items)
    else:
        storage, bref = open_ref(settings, ref or "", repo=repo)
        reports = [run(storage, bref, workers=settings.workers, read_files=not items)]
    for r in reports:  # --items: the check pass reads each file, once, instead of verify
        if items and r.ok and not r.ref.backup_id.startswith(CHANGES):
            r.problems += check_items(storage, r.ref, workers=settings.workers)
    if wants_json(as_json):
        print_json(
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
@click.argument("tables", nargs=-1, callback=table_names)
@click.option("--keep-last", type=click.IntRange(0), help="Keep the N newest backups.")
@click.option("--keep-hourly", type=click.IntRange(0), help="Keep the newest of N hours.")
@click.option("--keep-daily", type=click.IntRange(0), help="Keep the newest of N days.")
@click.option("--keep-weekly", type=click.IntRange(0), help="Keep the newest of N ISO weeks.")
@click.option("--keep-monthly", type=click.IntRange(0), help="Keep the newest of N months.")
@click.option("--keep-yearly", type=click.IntRange(0), help="Keep the newest of N years.")
@click.option("--keep-within", metavar="DURATION", help="Keep all within DURATION (7d, 36h, 1y2m).")
@click.option(
    "--incomplete-after",
    type=click.FloatRange(min=0),
    default=48,
    show_default=True,
    help="Remove incomplete backups older than this many hours.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be kept and removed; remove nothing.")
@repo_option
@aws_options
@json_option
@click.pass_context
def forget(
    ctx: click.Context,
    tables: tuple[str, ...],
    keep_last: int | None,
    keep_hourly: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
    keep_within: str | None,
    incomplete_after: float,
    dry_run: bool,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Remove the backups and change sets the keep rules do not keep (restic's forget): each
    kept one is listed with its reasons; the newest complete backup of a table, and the change
    sets a kept backup's restorable range uses, are always kept."""
    import datetime as dt

    from hippolyte.core.errors import ConfigError
    from hippolyte.core.retention import KeepPolicy
    from hippolyte.ops.forget import configured
    from hippolyte.ops.forget import forget as run

    settings = settings_of(ctx, repository=repo, **aws)
    given: dict[str, Any] = dict(
        keep_last=keep_last,
        keep_hourly=keep_hourly,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
        keep_monthly=keep_monthly,
        keep_yearly=keep_yearly,
        keep_within=keep_within,
    )
    policy: Any
    if all(v is None for v in given.values()) and settings.retention is not None:
        policy = configured(settings.retention)  # [retention] in the config
    else:
        try:
            policy = KeepPolicy(**given)
        except ValueError as exc:
            raise ConfigError(f"forget: {exc}") from None
    report = run(
        storage_for(settings),
        policy,
        tables=tables,
        dry_run=dry_run,
        incomplete_after=dt.timedelta(hours=incomplete_after),
    )
    if wants_json(as_json):
        print_json(
            {**report.decision.to_json(), "dryRun": dry_run, "removedFiles": report.removed_files}
        )
        return
    con = Console()
    for e in report.decision.entries:
        colour = "green" if e.action == "keep" else "red"
        con.print(
            f"[{colour}]{e.action:<6}[/] {e.table} {e.kind} {e.id}: {'; '.join(e.reasons)}",
            highlight=False,
        )
    for lost in report.decision.lost:
        con.print(
            f"[yellow]lost[/] {lost.table}: instants {lost.start.isoformat()} -> "
            f"{lost.end.isoformat()} (with backup {lost.backup})",
            highlight=False,
        )
    removed = len(report.decision.removed("backup")) + len(report.decision.removed("changes"))
    con.print(
        f"{'would remove' if dry_run else 'removed'} {removed:,} backups and change sets"
        + ("" if dry_run else f" ({report.removed_files:,} files)"),
        highlight=False,
    )
