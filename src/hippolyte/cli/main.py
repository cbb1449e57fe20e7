"""The entry point and the command group: every expected failure becomes one line and a
documented exit code."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from hippolyte.cli.options import err_console
from hippolyte.core import config
from hippolyte.core.errors import ExitCode, HippolyteError
from hippolyte.core.version import __version__


def _fail(message: str, code: int) -> None:
    err_console.print(
        f"[red]hippolyte: error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure becomes one line and a documented exit code."""
    try:
        # without standalone mode, click returns a command's ctx.exit(code) instead of exiting
        code = cli.main(args=argv, prog_name="hippolyte", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("interrupted", ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except HippolyteError as exc:
        _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; nothing half-committed", ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hippolyte")
@click.option(
    "--config",
    "config_file",
    envvar=config.ENV_CONFIG,
    help="Config file (default: $HIPPOLYTE_CONFIG, else ./hippolyte.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Hippolyte: paced, lossless, verifiable backups for fleets of DynamoDB tables."""
    ctx.obj = {"settings": config.load(config_file)}
