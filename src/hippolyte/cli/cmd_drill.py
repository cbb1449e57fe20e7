"""Restore drills: prove that backups restore, and how fast."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

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
from hippolyte.cli.render import Bars, JsonLines


@cli.command()
@click.argument("tables", nargs=-1, callback=table_names)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Drill N tables of the repository, chosen at random, weighted to those not drilled "
    "longest (among TABLES when given).",
)
@click.option("--target-endpoint-url", help="Restore into this DynamoDB endpoint instead.")
@click.option("--target-region", help="Restore into this region instead.")
@click.option("--target-profile", help="Restore with this AWS profile instead.")
@click.option("--keep", is_flag=True, help="Keep the scratch tables (they are deleted otherwise).")
@click.option(
    "--write-capacity",
    type=click.IntRange(1, 40000),
    default=1000,
    show_default=True,
    help="Temporary RCU/WCU of a provisioned scratch table while loading and proving.",
)
@click.option("--no-notify", is_flag=True, help="Send no notification of a failed drill.")
@repo_option
@aws_options
@json_option
@click.pass_context
def drill(
    ctx: click.Context,
    tables: tuple[str, ...],
    sample: int | None,
    target_endpoint_url: str | None,
    target_region: str | None,
    target_profile: str | None,
    keep: bool,
    write_capacity: int,
    no_notify: bool,
    repo: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Restore drill: restore the newest committed backup of each TABLE (or of a --sample)
    into a scratch table <table>-drill-<id> tagged hippolyte:drill=<id>, prove it against
    the backup, record the restore's seconds per GB (the RTO) in @drills/<id>/drill.json,
    then delete the scratch table (only a table this drill created and tagged). A failed
    drill is notified. Exit 1 when a table is not proven, 2 for a sample larger than the
    fleet, 3 when a TABLE has no committed backup."""
    from hippolyte.ops.drill import DrillParams, notify
    from hippolyte.ops.drill import drill as run

    if not tables and sample is None:
        raise click.UsageError("name the TABLES to drill, or give --sample N")
    settings = settings_of(ctx, repository=repo, **aws)
    params = DrillParams(
        sample=sample,
        keep=keep,
        endpoint_url=target_endpoint_url,
        region=target_region,
        profile=target_profile,
        write_capacity=write_capacity,
        workers=settings.workers,
        max_attempts=settings.max_attempts,
    )
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with stop_on_sigterm() as stop:
            record = run(settings, tables=tables, params=params, emit=renderer, stop=stop)
    finally:
        renderer.close()
    sent = [] if no_notify else notify(settings, record)
    if json_mode:
        print_json(_doc(record, sent))
    else:
        _print(record, sent)
    if not record.ok:
        from hippolyte.core.errors import BackupFailed

        failed = record.failed
        raise BackupFailed(
            f"drill {record.id}: {len(failed)} of {len(record.tables)} tables not proven: "
            + "; ".join(f"{t.table}: {t.error}" for t in failed)
        )


def _doc(record: Any, sent: list[Any]) -> dict[str, Any]:
    from hippolyte.core.model import to_plain

    return {
        "drill": record.id,
        "at": record.at.isoformat(),
        "repository": record.repository,
        "target": record.target,
        "ok": record.ok,
        "tables": [to_plain(t) for t in record.tables],
        "notifications": [to_plain(n) for n in sent],
    }


def _print(record: Any, sent: list[Any]) -> None:
    con = Console()
    out = Table("table", "backup", "proof", "items", "seconds", "s/GB", "scratch table")
    for t in record.tables:
        out.add_row(
            t.table,
            t.backup or "-",
            "[green]identical" if t.ok else f"[red]FAILED: {t.error}",
            f"{t.items:,}",
            f"{t.seconds:.1f}",
            f"{t.seconds_per_gb:g}" if t.seconds_per_gb is not None else "-",
            f"{t.scratch}: " + ("deleted" if t.deleted else f"kept ({t.kept})"),
        )
    con.print(out)
    con.print(f"drill {record.id} into {record.target}: recorded in @drills/{record.id}/")
    for n in sent:
        con.print(f"notified {n.channel}: {'ok' if n.ok else n.detail}", highlight=False)
