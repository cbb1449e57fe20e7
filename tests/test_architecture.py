"""The layout is the architecture: pure decision code stays free of boto3 and the CLI, and
every command is documented."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from hippolyte.cli import cli

SRC = Path(__file__).resolve().parents[1] / "src" / "hippolyte"
PURE = [
    "model",
    "errors",
    "events",
    "manifest",
    "selection",
    "pacing",
    "config",
    "retry",
    "planning",
    "packing",
    "proof",
    "restore_plan",
    "journal",
    "formatting",
]
FORBIDDEN = (
    "boto3",
    "botocore",
    "click",
    "rich",
    "hippolyte.cli",
    "hippolyte.adapters",
    "hippolyte.ops",
    "hippolyte.engines",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_aws_and_no_cli(module: str) -> None:
    bad = {n for n in _imports(SRC / f"{module}.py") if n.startswith(FORBIDDEN)}
    assert not bad, f"{module}.py imports {sorted(bad)}"


def test_nothing_but_the_cli_imports_the_cli() -> None:
    for path in SRC.rglob("*.py"):
        if path.name in {"cli.py", "__main__.py"}:
            continue
        assert "hippolyte.cli" not in _imports(path), path


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (SRC.parents[1] / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        assert f"hippolyte {name}" in readme, f"README does not show `hippolyte {name}`"
