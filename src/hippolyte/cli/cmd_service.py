"""Running Hippolyte: demo, serve, deploy."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from hippolyte.cli.main import cli
from hippolyte.cli.options import (
    aws_options,
    err_console,
    json_option,
    print_json,
    repo_option,
    settings_of,
    wants_json,
)
from hippolyte.cli.render import Bars, JsonLines, print_demo_summary


@cli.command()
@click.option(
    "--dir",
    "workdir",
    default="demo-repo",
    show_default=True,
    help="Where the demo's repository goes.",
)
@click.option(
    "--items",
    type=click.IntRange(min=10),
    default=3000,
    show_default=True,
    help="Items in the main sample table (at least 10).",
)
@json_option
@click.pass_context
def demo(ctx: click.Context, workdir: str, items: int, as_json: bool) -> None:
    """Start the embedded DynamoDB Local, create sample tables, plan and run tonight's job,
    verify, restore each backup into a new table and prove it, show the status, run the
    monitor with its notification going to a local webhook, then play a bad deploy on a
    sample table, show `diff` finding exactly it and `recover` putting it back; print what
    was done."""
    from hippolyte.ops.demo import run_demo

    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        summary = run_demo(workdir=workdir, items=items, emit=renderer)
    finally:
        renderer.close()
    if json_mode:
        print_json(summary)
    else:
        print_demo_summary(summary)
    proven = all(p["proven"] for p in summary["restores"])
    if not (
        proven
        and summary["monitor"]["ok"]
        and summary["diff"]["matches"]
        and summary["recover"]["ok"]
        and summary["history"]["ok"]
    ):
        from hippolyte.core.errors import BackupFailed

        raise BackupFailed("the demo found a problem (see above)")


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

    settings = settings_of(ctx, repository=repo, **aws)
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
