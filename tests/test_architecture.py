"""The layout is the architecture. Each folder of src/hippolyte is a layer and imports point
down only; the front-ends import no other front-end, and only the CLI, the top, starts them
(`hippolyte serve`, `hippolyte deploy`); there is no import circle; every command is
documented. The rules are by folder, so a new module is checked without being listed."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import click
import pytest

from hippolyte.cli import cli

SRC = Path(__file__).resolve().parents[1] / "src" / "hippolyte"
# Lowest first: a layer may import its own folder and the layers before it.
LAYERS = ("core", "adapters", "repo", "formats", "engines", "ops")
FRONT_ENDS = ("serve", "aws_lambda", "deploy")  # above ops, siblings: none imports another
TOP = "cli"  # may import every layer and front-end; nothing imports it
# The package's face: `from hippolyte import backup, ...` and `python -m hippolyte`.
FACE = {"hippolyte": "hippolyte.core.version", "hippolyte.__main__": "hippolyte.cli"}
# core is pure: the standard library, plus validation (pydantic), cron syntax checked in the
# config (croniter) and JSON encoding and decoding of values (orjson, msgspec). No boto3, no
# click, no rich.
CORE_THIRD_PARTY = {"pydantic", "croniter", "orjson", "msgspec"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(path: Path, known: Iterable[str]) -> set[str]:
    """Every module named by an import anywhere in the file (function bodies included);
    ``from pkg import sub`` counts as an import of ``pkg.sub`` when that is a module."""
    known = set(known)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or {node.module}
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(graph: dict[str, set[str]]) -> list[str]:
    """What breaks the folder rules, one line each: ``a -> b: why``."""
    bad = []
    for mod, targets in graph.items():
        for target in sorted(t for t in targets if t.split(".")[0] == "hippolyte"):
            if FACE.get(mod) and target.startswith(FACE[mod]):
                continue
            src, dst = layer(mod), layer(target)
            if dst == TOP and src != TOP:
                bad.append(f"{mod} -> {target}: nothing imports the CLI")
            elif dst in FRONT_ENDS and src not in (dst, TOP):
                bad.append(f"{mod} -> {target}: only the CLI imports a front-end")
            elif target == "hippolyte":
                bad.append(f"{mod} -> {target}: import from the layer that owns it")
            elif src in LAYERS and dst not in LAYERS[: LAYERS.index(src) + 1]:
                below = ", ".join(LAYERS[: LAYERS.index(src) + 1])
                bad.append(f"{mod} -> {target}: {src} may import only {below}")
        if layer(mod) == "core":
            for target in targets:
                top = target.split(".")[0]
                if top != "hippolyte" and top not in sys.stdlib_module_names | CORE_THIRD_PARTY:
                    bad.append(f"{mod} -> {target}: core imports only the standard library")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def the_graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, mods) - {m} for m, p in mods.items()}


def test_every_module_lives_in_a_layer() -> None:
    homes = (*LAYERS, *FRONT_ENDS, TOP)
    loose = [m for m in modules() if layer(m) not in homes and m not in FACE]
    assert not loose, f"modules outside every layer: {loose}"


def test_imports_point_down_only() -> None:
    assert violations(the_graph()) == []


def test_no_import_circle() -> None:
    assert circles(the_graph()) == []


def test_the_rules_catch_what_they_forbid() -> None:
    bad = {
        "hippolyte.core.model": {"boto3", "hippolyte.repo.manifest"},
        "hippolyte.adapters.aws": {"hippolyte.engines.local"},
        "hippolyte.ops.backup": {"hippolyte.cli.render"},
        "hippolyte.ops.demo": {"hippolyte.serve.daemon"},
        "hippolyte.serve.daemon": {"hippolyte.aws_lambda"},
        "hippolyte.engines.local": {"hippolyte.core.model", "hippolyte.repo.manifest"},
    }
    assert len(violations(bad)) == 6
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_test_code_stays_out_of_the_package() -> None:
    mods = modules()
    for mod, path in mods.items():
        leaked = {t for t in imports_of(path, mods) if t.split(".")[0] in {"tests", "pytest"}}
        assert not leaked, f"{mod} imports {leaked}"


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (SRC.parents[1] / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        assert f"hippolyte {name}" in readme, f"README does not show `hippolyte {name}`"


@pytest.mark.parametrize("module", ["hippolyte.core.planning", "hippolyte.repo.manifest"])
def test_decisions_import_no_aws(module: str) -> None:
    mods = modules()
    names = imports_of(mods[module], mods)
    assert not {n for n in names if n.startswith(("boto3", "botocore", "click", "rich"))}


def test_every_command_with_a_repository_reaches_it_as_the_aws_cli_would() -> None:
    """An S3 repository may need a profile, a region or an endpoint: every command that takes
    --repo also takes --region, --profile and --endpoint-url."""
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        if "--repo" in options:
            missing = {"--region", "--profile", "--endpoint-url"} - options
            assert not missing, f"hippolyte {name} lacks {sorted(missing)}"


def test_the_public_api_resolves() -> None:
    import hippolyte

    for name in hippolyte.__all__:
        assert getattr(hippolyte, name) is not None, name
    with pytest.raises(AttributeError):
        hippolyte.no_such_operation  # noqa: B018
