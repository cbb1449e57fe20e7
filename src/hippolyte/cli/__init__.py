"""The command line: parse, call one operation, render. Each cmd_* module holds a family of
commands; importing them registers the commands on the group."""

from hippolyte.cli import cmd_backup, cmd_diff, cmd_repo, cmd_restore, cmd_service  # noqa: F401
from hippolyte.cli.main import cli, main

__all__ = ["cli", "main"]
