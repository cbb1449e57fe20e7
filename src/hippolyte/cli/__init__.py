"""The command line: parse, call one operation, render."""

from hippolyte.cli.commands import cli, main

__all__ = ["cli", "main"]
