"""Reading backups back: restore, convert."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

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
from hippolyte.cli.render import (
    Bars,
    JsonLines,
)
from hippolyte.core.errors import ConfigError
from hippolyte.ops.context import open_backup, storage_for
from hippolyte.ops.convert import schema_for

# DynamoDB's per-table quota is 40,000 units unless AWS raises it for the account; a raised
# quota is honoured up to this, and anything larger is taken for a typo.
MAX_LOAD_CAPACITY = 1_000_000


@cli.command()
@click.argument("ref")
@click.option(
    "--table",
    "table",
    required=True,
    callback=table_names,
    help="Name of the table to restore into.",
)
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
    type=click.IntRange(1, MAX_LOAD_CAPACITY),
    default=1000,
    show_default=True,
    help="Temporary RCU/WCU of a provisioned target while loading and proving (up to the "
    "account's per-table quota: 40,000 unless AWS raised it).",
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
@click.option(
    "--at",
    metavar="TIME",
    help="The table as it was at TIME (ISO 8601, e.g. 2026-11-28T14:03:07Z): REF is then a "
    "table (its newest full backup before TIME) or a full backup, plus its change sets.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "load", "import", "dask"]),
    help="load: paced BatchWriteItem; import: DynamoDB's ImportTable (a new table from an S3 "
    "repository, no write capacity used); dask: the load's passes as tasks on a Dask cluster "
    "(--scheduler); auto (default, or [restore] engine): import for a new table from S3 over "
    "the size threshold, else load.",
)
@click.option("--scheduler", help="The Dask scheduler for --engine dask: tcp://HOST:PORT.")
@click.option("--dry-run", is_flag=True, help="Print the engine, the reason and the costs only.")
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
    at: str | None,
    engine: str | None,
    scheduler: str | None,
    dry_run: bool,
    as_json: bool,
    **aws: Any,
) -> None:
    """Restore a backup (ours, a DynamoDB export, or a Data Pipeline export) into a new table,
    then prove it: item count and digest of the new table against the backup. The engine,
    why, and both engines' estimated costs are printed first."""
    from pathlib import Path

    from hippolyte.ops import restore_import
    from hippolyte.ops.restore import RestoreParams
    from hippolyte.ops.restore import restore as run

    if schema_from and key_spec:
        raise click.UsageError("give --schema-from or --key, not both")
    settings = settings_of(ctx, workers=workers, repository=repo, **aws)
    target = settings.effective_targets()[0]
    if at is not None:
        if "@" in ref:
            raise click.UsageError("give REF@TIME or --at TIME, not both")
        from hippolyte.ops.pitr import parse_at

        parse_at(at)  # a time, with its zone, before anything else
        ref = f"{ref}@{at}"
    source = open_backup(settings, ref, repo=settings.repository)
    description = schema_for(settings, schema_from=schema_from, key_spec=key_spec, table=table)
    params = RestoreParams(
        write_percent=write_percent,
        write_capacity=write_capacity,
        workers=settings.workers,
        max_attempts=settings.max_attempts,
        resume=resume,
        into_existing=into_existing,
        state_dir=Path(state_dir) if state_dir else None,
    )
    json_mode = wants_json(as_json)
    choice = restore_import.plan(
        source,
        conn=target.connection(),
        table=table,
        params=params,
        description=description,
        settings=settings.restore,
        requested=engine,
        replays_changes="@" in ref,
    )
    if dry_run or not json_mode:
        _print_plan(choice, json_mode=json_mode)
    if dry_run:
        return
    renderer = JsonLines() if json_mode else Bars(err_console)
    import_arn = None
    try:
        with stop_on_sigterm() as stop:
            common: dict[str, Any] = dict(
                conn=target.connection(),
                table=table,
                params=params,
                description=description,
                emit=renderer,
                stop=stop,
            )
            if choice.engine == "dask":
                from hippolyte.ops.restore_dask import restore_over_dask

                where = scheduler or settings.scheduler
                if not where:
                    raise ConfigError("--engine dask needs --scheduler tcp://HOST:PORT")
                report = restore_over_dask(source, scheduler=where, **common)
            elif choice.engine == "import":
                report, import_arn = restore_import.restore_by_import(source, **common)
            else:
                report = run(source, **common)
    finally:
        renderer.close()
    doc = {
        "table": report.table,
        "source": report.source,
        **choice.to_json(),
        "importArn": import_arn,
        "itemsWritten": report.items_written,
        "proof": {
            "ok": report.proven,
            "backup": {"items": report.backup.count, "digest": report.backup.hex},
            "table": {"items": report.restored.count, "digest": report.restored.hex},
        },
        "notes": report.notes,
    }
    if json_mode:
        print_json(doc)
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
            + (f" (import {import_arn})" if import_arn else "")
        )


def _print_plan(choice: Any, *, json_mode: bool) -> None:
    if json_mode:
        print_json(choice.to_json())
        return
    costs = choice.to_json()["estimatedCost"]
    Console(stderr=True).print(
        f"engine  {choice.engine}: {choice.reason}\n"
        f"cost    import ~${costs['importUsd']:,.4f}; load ~${costs['loadUsd']:,.4f} "
        f"({costs['loadWriteUnits']:,} write units at on-demand prices; estimated)",
        highlight=False,
    )


@cli.command()
@click.argument("src")
@repo_option
@click.option(
    "--table-name",
    required=True,
    callback=table_names,
    help="Table name the backup is filed under.",
)
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
    settings = settings_of(ctx, repository=repo, **aws)
    target = settings.effective_targets()[0]
    source = open_backup(settings, src, repo=None)
    if source.kind == "hippolyte":
        raise ConfigError(f"{src} is already a Hippolyte backup")
    description = schema_for(settings, schema_from=schema_from, key_spec=key_spec, table=table_name)
    assert description is not None  # exactly one of --schema-from and --key (checked above)
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        ref = run(
            source,
            dest=storage_for(settings, target),
            table_name=table_name,
            schema_description=description,
            emit=renderer,
        )
    finally:
        renderer.close()
    if json_mode:
        print_json({"ref": str(ref), "repository": ref.repo, "kind": source.kind})
    else:
        Console().print(f"converted {source.kind} export {src} into {ref.repo}/{ref}")
