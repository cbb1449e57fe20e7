"""``hippolyte copy``: committed backups and change sets to another repository."""

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
    wants_json,
)
from hippolyte.cli.render import Bars, JsonLines, human_bytes
from hippolyte.ops.context import storage_for


@cli.command(name="copy")
@click.argument("refs", nargs=-1, metavar="[TABLE[/BACKUP_ID] ...]")
@click.option("--to", "to", required=True, help="Destination repository: a path or s3://...")
@repo_option
@click.option("--to-profile", help="AWS profile for the destination (default: the source's).")
@click.option("--to-region", help="AWS region of the destination (default: the source's).")
@click.option("--to-endpoint-url", help="S3 endpoint of the destination (default: AWS's).")
@click.option("--to-role-arn", help="IAM role to assume for the destination account.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Files sent at once (and as many parts of big files).",
)
@aws_options
@json_option
@click.pass_context
def copy_cmd(
    ctx: click.Context,
    refs: tuple[str, ...],
    to: str,
    repo: str | None,
    to_profile: str | None,
    to_region: str | None,
    to_endpoint_url: str | None,
    to_role_arn: str | None,
    workers: int,
    as_json: bool,
    **aws: Any,
) -> None:
    """Copy committed backups and change sets (all, or TABLE's, or TABLE/BACKUP_ID) to
    another repository, each file verified on arrival and each backup committed there with
    _SUCCESS last; those already there are skipped, a stopped copy resumes."""
    from hippolyte.core.model import Connection
    from hippolyte.ops.copy import copy, open_destination

    settings = settings_of(ctx, repository=repo, **aws)
    source = storage_for(settings)
    own = settings.effective_targets()[0].connection()
    conn = Connection(
        region=to_region or own.region,
        profile=to_profile or own.profile,
        role_arn=to_role_arn or own.role_arn,
    )
    dest = open_destination(to, conn=conn, endpoint_url=to_endpoint_url)
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with stop_on_sigterm() as stop:
            report = copy(source, dest, refs=refs, workers=workers, emit=renderer, stop=stop)
    finally:
        renderer.close()
    if json_mode:
        print_json(report.to_json())
    else:
        con = Console()
        for r in report.results:
            colour = {"copied": "green", "skipped": "dim", "failed": "red"}[r.action]
            what = f"{r.files:,} files, {human_bytes(r.bytes)}" if r.action == "copied" else ""
            con.print(
                f"[{colour}]{r.action:<7}[/] {r.unit.name} {what} {r.error or ''}".rstrip(),
                highlight=False,
            )
    failed = [r for r in report.results if r.action == "failed"]
    if failed:
        ctx.exit(failed[0].exit_code or 1)
