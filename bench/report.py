"""Showing results: a table on the terminal, bench/results/latest.json, and the marked results
section of bench/README.md (one block per benchmark, so ``--only`` replaces just its own)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from common import Report

START, END = "<!-- results:start -->", "<!-- results:end -->"
_BLOCK = re.compile(r"<!-- bench:(?P<name>[a-z_]+) -->\n.*?<!-- /bench:(?P=name) -->\n",
                    re.DOTALL)


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "MISS")


def table(reports: Sequence[Report]) -> str:
    rows = [("benchmark", "measure", "value", "target", "")]
    for r in reports:
        rows += [(r.name, m.label, m.shown(), m.target, verdict(m.ok)) for m in r.metrics]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(reports: Sequence[Report], *, machine: dict[str, Any]) -> bytes:
    return orjson.dumps({
        "machine": machine,
        "benchmarks": {r.name: {
            "title": r.title, "quick": r.quick, "seconds": r.seconds, "ok": r.ok,
            "metrics": [m.__dict__ for m in r.metrics], "notes": r.notes, "raw": r.raw,
        } for r in reports},
    }, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


def markdown_block(report: Report, *, machine: dict[str, Any]) -> str:
    kind = "quick run" if report.quick else "full run"
    lines = [
        f"<!-- bench:{report.name} -->",
        f"#### {report.title}",
        "",
        f"{machine['date']}; {machine['nproc']} cores of {machine['cpu']}; "
        f"Python {machine['python']}; {kind}, {report.seconds:.0f} s.",
        "",
        "| measure | value | target | |",
        "|---|---:|---|---|",
    ]
    lines += [f"| {m.label} | {m.shown()} | {m.target} | {verdict(m.ok)} |"
              for m in report.metrics]
    if report.notes:
        lines.append("")
        lines += [f"- {note}" for note in report.notes]
    lines += ["", f"<!-- /bench:{report.name} -->"]
    return "\n".join(lines) + "\n"


def update_readme(path: Path, reports: Sequence[Report], *, machine: dict[str, Any],
                  order: Sequence[str]) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise RuntimeError(f"{path} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    section, tail = rest.split(END, 1)
    blocks = {m.group("name"): m.group(0) for m in _BLOCK.finditer(section)}
    blocks.update({r.name: markdown_block(r, machine=machine) for r in reports})
    body = "\n".join(blocks[name] for name in order if name in blocks)
    path.write_text(f"{head}{START}\n{body}{END}{tail}")
