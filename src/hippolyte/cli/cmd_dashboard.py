"""`hippolyte dashboard`: the page `serve` shows at `/`, written to one self-contained file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from hippolyte.cli.main import cli
from hippolyte.cli.options import aws_options, err_console, repo_option, settings_of


@cli.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Write the page to this file (one self-contained HTML file).",
)
@click.option(
    "--discover",
    is_flag=True,
    help="Also list the account's tables (needs AWS credentials): coverage shows the "
    "tables with no backup and those excluded, with why.",
)
@repo_option
@aws_options
@click.pass_context
def dashboard(ctx: click.Context, out: str, discover: bool, repo: str | None, **aws: Any) -> None:
    """Write the dashboard: the fleet against its RPO with each table's trend, the runs, the
    newest plan's Gantt and the coverage, read from the repository's catalog and run records.
    Exit 5 if the repository cannot be read."""
    from hippolyte.core.dashboard_html import render
    from hippolyte.core.errors import RepositoryError
    from hippolyte.ops.dashboard import gather
    from hippolyte.ops.dashboard_coverage import discover_all

    settings = settings_of(ctx, repository=repo, **aws)
    found = discover_all(settings) if discover else None
    doc = gather(settings, now=dt.datetime.now(dt.UTC), discovered=found)
    if doc["unreadable"]:
        bad = doc["unreadable"]
        raise RepositoryError("; ".join(e for e in doc["errors"] if any(u in e for u in bad)))
    page = render(doc)
    Path(out).write_text(page, encoding="utf-8")
    for error in doc["errors"]:
        err_console.print(f"[yellow]warning:[/yellow] {error}", highlight=False, soft_wrap=True)
    if not doc["tables"]:
        err_console.print("the repository holds no backup yet", highlight=False)
    err_console.print(
        f"wrote the dashboard ({len(doc['tables'])} tables, {len(page) // 1000} KB) to {out}",
        highlight=False,
    )
