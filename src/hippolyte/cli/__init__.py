"""The command line: parse, call one operation, render. Each cmd_* module holds a family of
commands; importing them registers the commands on the group."""

from hippolyte.cli import (  # noqa: F401
    cmd_backup,
    cmd_capture,
    cmd_copy,
    cmd_dashboard,
    cmd_diff,
    cmd_drill,
    cmd_recover,
    cmd_repo,
    cmd_restore,
    cmd_service,
)
from hippolyte.cli.main import cli, main

__all__ = ["cli", "main"]
