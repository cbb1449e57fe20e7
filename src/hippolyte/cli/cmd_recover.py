"""Repairing: recover (and recover --undo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape

from hippolyte.cli.main import cli
from hippolyte.cli.options import (
    aws_options,
    err_console,
    json_option,
    print_json,
    repo_option,
    settings_of,
    stop_on_sigterm,
    table_names,
    wants_json,
)
from hippolyte.cli.render import Bars, JsonLines, short_value
from hippolyte.core.errors import ExitCode


@cli.command()
@click.argument("ref", required=False)
@click.option(
    "--table", callback=table_names, help="The live table to repair (default: the backup's own)."
)
@click.option(
    "--from-diff",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Recover the differences of this diff file (`diff --out`) instead of diffing now.",
)
@click.option(
    "--keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Recover only these keys: JSON lines of key attributes in DynamoDB JSON.",
)
@click.option(
    "--partition-key",
    "partition_keys",
    multiple=True,
    metavar="VALUE",
    help="Recover every item of this partition (repeatable).",
)
@click.option(
    "--delete-added",
    is_flag=True,
    help="Also delete the items added since the backup (left alone by default).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show what would be written and deleted; change nothing."
)
@click.option(
    "--write-percent",
    type=click.FloatRange(0.01, 1.0),
    default=0.5,
    show_default=True,
    help="Share of the live table's write capacity the recovery may use.",
)
@click.option(
    "--read-percent",
    type=click.FloatRange(0.01, 1.0),
    default=0.5,
    show_default=True,
    help="Share of the live table's read capacity its reads may use.",
)
@click.option("--workers", type=click.IntRange(1, 256), help="Parallel writers.")
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite items the application changed since they were read (their version is "
    "saved first, so --undo brings it back).",
)
@click.option(
    "--version-attribute",
    metavar="NAME",
    help="The item attribute the application bumps on each write: the whole condition.",
)
@click.option("--resume", is_flag=True, help="Finish the last unfinished recovery (or undo).")
@click.option("--undo", "undo_id", metavar="RECOVERY_ID", help="Take back a recovery.")
@click.option(
    "--tmp-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the diff spills (default: the system's).",
)
@repo_option
@aws_options
@json_option
@click.pass_context
def recover(
    ctx: click.Context,
    ref: str | None,
    table: str | None,
    from_diff: Path | None,
    keys: Path | None,
    partition_keys: tuple[str, ...],
    delete_added: bool,
    dry_run: bool,
    write_percent: float,
    read_percent: float,
    workers: int | None,
    force: bool,
    version_attribute: str | None,
    resume: bool,
    undo_id: str | None,
    tmp_dir: Path | None,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Put back into the live table the items that differ from backup REF: deleted or changed
    since (and, with --delete-added, delete the ones added since). The live version of each
    item is saved under @recoveries/ first; every write is conditional on the item being
    unchanged since it was read. Exit 0 when every selected item is as in the backup, 1 when
    some were skipped (changed by the application meanwhile)."""
    from hippolyte.ops.recover import RecoverParams, Selection, recover, undo

    if (ref is None) == (undo_id is None):
        raise click.UsageError("give a backup REF, or --undo RECOVERY_ID")
    chosen = [bool(from_diff), bool(keys), bool(partition_keys)]
    if sum(chosen) > 1:
        raise click.UsageError("give one of --from-diff, --keys, --partition-key")
    if undo_id is not None and (any(chosen) or table or delete_added):
        raise click.UsageError(
            "--undo takes back what the recovery did: no --table, --from-diff, --keys, "
            "--partition-key or --delete-added"
        )
    settings = settings_of(ctx, repository=repo, workers=workers, **aws)
    params = RecoverParams(
        write_percent=write_percent,
        read_percent=read_percent,
        on_demand_read_units=settings.on_demand_read_units,
        workers=settings.workers,
        delete_added=delete_added,
        force=force,
        dry_run=dry_run,
        resume=resume,
        version_attribute=version_attribute,
        max_attempts=settings.max_attempts,
        tmp_dir=tmp_dir,
    )
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with stop_on_sigterm() as stop:
            if undo_id is not None:
                report = undo(settings, undo_id, params=params, emit=renderer, stop=stop)
            else:
                assert ref is not None
                report = recover(
                    settings,
                    ref,
                    table=table,
                    selection=Selection(
                        from_diff=from_diff, keys=keys, partition_keys=partition_keys
                    ),
                    params=params,
                    emit=renderer,
                    stop=stop,
                )
    finally:
        renderer.close()
    if json_mode:
        doc = report.to_json()
        if dry_run:
            doc["plan"] = [_planned(a) for a in report.plan]
        print_json(doc)
    else:
        _print(report, dry_run=dry_run)
    if not report.ok:
        raise click.exceptions.Exit(ExitCode.FAILED)


def _planned(action: Any) -> dict[str, Any]:
    return {
        "action": action.verb,
        "key": orjson.loads(action.key),
        "current": None if action.seen is None else orjson.loads(action.seen),
        "restore": None if action.target is None else orjson.loads(action.target),
    }


def _print(report: Any, *, dry_run: bool, width: int = 60) -> None:
    con = Console()
    if dry_run:
        con.print(
            f"[bold]dry run[/bold]: {report.kind} would write {len(report.plan):,} items "
            f"into {escape(report.table)}; nothing changed",
            highlight=False,
        )
        con.print(f"  from {escape(report.backup)}", highlight=False)
        for a in report.plan[:50]:
            _print_action(con, a, width)
        if len(report.plan) > 50:
            con.print(f"  ... {len(report.plan) - 50:,} more (--json lists them all)")
        return
    t = report.tally
    if report.recovery_id is None:
        con.print(f"{escape(report.table)}: nothing differs from {escape(report.backup)}")
        return
    con.print(
        f"[bold]{report.kind} {report.recovery_id}[/bold] of {escape(report.table)}"
        + (" (resumed)" if report.resumed else "")
        + f": put back {t.put_back:,}, deleted {t.deleted:,}, already so {t.already:,}, "
        f"skipped {len(t.skipped):,}" + (f", forced {t.forced:,}" if t.forced else ""),
        highlight=False,
    )
    for s in t.skipped[:20]:
        con.print(
            f"  [yellow]skipped[/] {escape(s.key.decode())}: {escape(s.reason)}", highlight=False
        )
    proof = "[green]proven[/]" if report.proven else "[red]NOT proven[/]"
    con.print(
        f"  {proof}: {report.found.count:,} items read back, digest "
        f"{report.found.hex[:16]} (expected {report.expected.count:,}, "
        f"{report.expected.hex[:16]})",
        highlight=False,
    )
    con.print(f"  saved in {escape(report.repository)}; take it back with:", highlight=False)
    con.print(
        f"  hippolyte recover --undo {report.recovery_id} --repo {escape(report.repository)}",
        highlight=False,
        soft_wrap=True,
    )


def _print_action(con: Console, a: Any, width: int) -> None:
    """One planned action: what the item is now and what it would become (for an item on both
    sides, only the attributes that would change)."""
    from hippolyte.core.diff import differing

    key = escape(a.key.decode())
    if a.target is None:
        con.print(f"[red]delete[/]    {key}", highlight=False)
        con.print(f"          now: {escape(short_value(orjson.loads(a.seen), width))}")
        return
    if a.seen is None:
        con.print(f"[green]re-create[/] {key}", highlight=False)
        con.print(f"          as: {escape(short_value(orjson.loads(a.target), width))}")
        return
    con.print(f"[yellow]put back[/]  {key}", highlight=False)
    now, then = orjson.loads(a.seen), orjson.loads(a.target)
    for name in differing(a.seen, a.target) or []:
        old, new = short_value(now.get(name), width), short_value(then.get(name), width)
        con.print(f"          {escape(name)}: {escape(old)} -> {escape(new)}", highlight=False)
