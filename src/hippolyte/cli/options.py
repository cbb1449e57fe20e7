"""What the commands share: the AWS and repository options, the settings with the command
line over the config, JSON or terminal output, SIGTERM as a clean stop."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from hippolyte.cli.render import dumps
from hippolyte.core.config import Settings
from hippolyte.core.errors import ConfigError, Interrupted

err_console = Console(stderr=True)


def table_names(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: every table name given is one DynamoDB accepts (exit 2 otherwise)."""
    from hippolyte.core.model import check_table_name

    for name in value if isinstance(value, tuple) else (value,):
        if name:  # None or "": not given (diff --live alone)
            try:
                check_table_name(name)
            except ConfigError as exc:
                raise click.BadParameter(exc.message, ctx=ctx, param=param) from None
    return value


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


def settings_of(ctx: click.Context, **overrides: Any) -> Settings:
    base: Settings = ctx.obj["settings"]
    return base.with_overrides(**overrides)


def wants_json(as_json: bool) -> bool:
    return as_json or not sys.stdout.isatty()


def print_json(obj: Any) -> None:
    click.echo(dumps(obj))


def instant(text: str | None) -> dt.datetime | None:
    """``--at``: an ISO 8601 time, UTC unless it names its zone."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--at {text!r}: expected an ISO 8601 time, e.g. 2026-11-22T00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class stop_on_sigterm:
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
