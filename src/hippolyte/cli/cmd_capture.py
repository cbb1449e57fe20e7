"""capture: the tables' DynamoDB Streams into change sets, between full backups."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hippolyte.cli.main import cli
from hippolyte.cli.options import (
    aws_options,
    err_console,
    json_option,
    print_json,
    repo_option,
    settings_of,
    table_names,
    wants_json,
)
from hippolyte.cli.render import Bars, JsonLines
from hippolyte.core.errors import ConfigError


@cli.command()
@click.argument("tables", nargs=-1, callback=table_names)
@repo_option
@click.option(
    "--flush-seconds",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Commit a change set this often (and at every 64 MB of changes).",
)
@click.option(
    "--enable-stream",
    is_flag=True,
    help="Turn on a NEW_AND_OLD_IMAGES stream on a table that has none (else it is reported "
    "and left unchanged).",
)
@click.option("--once", is_flag=True, help="Stop once every shard is read to its end.")
@aws_options
@json_option
@click.pass_context
def capture(
    ctx: click.Context,
    tables: tuple[str, ...],
    repo: str | None,
    flush_seconds: float,
    enable_stream: bool,
    once: bool,
    as_json: bool,
    **aws: Any,
) -> None:
    """Capture every change of the named tables (default: the selected tables) from their
    DynamoDB Streams into change sets in the repository, until stopped. SIGTERM or Ctrl-C
    commits what was read, checkpoints and exits 0; a restart continues from the checkpoint."""
    from hippolyte.ops.capture import CaptureParams
    from hippolyte.ops.capture import capture as run
    from hippolyte.ops.context import storage_for

    settings = settings_of(ctx, repository=repo, **aws)
    targets = settings.effective_targets()
    if len(targets) > 1:
        raise ConfigError(
            f"capture reads one target's tables (the config has {len(targets)}); "
            "pass --region/--endpoint-url"
        )
    params = CaptureParams(
        flush_seconds=flush_seconds,
        once=once,
        enable_stream=enable_stream,
        max_attempts=settings.max_attempts,
    )
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with _stop_on_signals() as stop:
            results = run(
                list(tables),
                conn=targets[0].connection(),
                storage=storage_for(settings, targets[0]),
                params=params,
                emit=renderer,
                stop=stop,
                rules=settings.selection.rules(),
            )
    finally:
        renderer.close()
    if json_mode:
        print_json({"results": results, "ok": all(r.ok for r in results)})
    else:
        out = Table("table", "changes", "change sets", "gaps", "status", box=None)
        for r in results:
            status = f"[green]{r.status}" if r.ok else f"[red]{r.status}: {escape(r.error or '')}"
            out.add_row(r.table, f"{r.records:,}", str(r.change_sets), str(len(r.gaps)), status)
        Console().print(out)
    if not results or not all(r.ok for r in results):
        ctx.exit(max([r.exit_code for r in results if not r.ok], default=1) or 1)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and Ctrl-C set the stop event: the capture commits what it read and exits 0."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
