"""Comparing: diff."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import click

from hippolyte.cli.main import cli
from hippolyte.cli.options import (
    aws_options,
    err_console,
    json_option,
    print_json,
    repo_option,
    settings_of,
    stop_on_sigterm,
    table_names,
    wants_json,
)
from hippolyte.cli.render import Bars, JsonLines, print_diff
from hippolyte.core.errors import ConfigError, ExitCode


@cli.command()
@click.argument("ref")
@click.argument("ref2", required=False)
@click.option(
    "--live",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[TABLE]",
    callback=table_names,
    help="Against the live table: the backup's own (the default with one REF) or TABLE.",
)
@repo_option
@click.option(
    "--read-percent",
    type=click.FloatRange(0.01, 1.0),
    default=0.5,
    show_default=True,
    help="Share of the live table's read capacity the Scan may use.",
)
@click.option("--segments", type=click.IntRange(1, 1000), help="Parallel Scan segments.")
@click.option("--workers", type=click.IntRange(1, 256), help="Threads scanning the live table.")
@click.option("--keys-only", is_flag=True, help="Write keys, not the items before and after.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write every difference to FILE as JSON lines (the input of `recover`).",
)
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Differences shown on the terminal.",
)
@click.option("--schema-from", help="Take the key schema from this existing table.")
@click.option("--key", "key_spec", help="Key schema for exports without one: pk:S[,sk:N].")
@click.option(
    "--tmp-dir",
    type=click.Path(file_okay=False),
    help="Where both sides are spilled while comparing (default: the system's).",
)
@aws_options
@json_option
@click.pass_context
def diff(
    ctx: click.Context,
    ref: str,
    ref2: str | None,
    live: str | None,
    repo: str | None,
    read_percent: float,
    segments: int | None,
    workers: int | None,
    keys_only: bool,
    out: str | None,
    limit: int,
    schema_from: str | None,
    key_spec: str | None,
    tmp_dir: str | None,
    as_json: bool,
    **aws: Any,
) -> None:
    """Compare a backup with the live table (REF alone, or --live), or two backups (REF REF2),
    item by item: deleted since, added since, changed (with the attributes that differ).
    Exit 0 when identical, 1 when they differ."""
    from hippolyte.ops.diff import DiffParams, diff_refs

    if ref2 is not None and live is not None:
        raise click.UsageError("give REF2 or --live, not both")
    if schema_from and key_spec:
        raise click.UsageError("give --schema-from or --key, not both")
    settings = settings_of(ctx, repository=repo, workers=workers, **aws)
    params = DiffParams(
        read_percent=read_percent,
        on_demand_read_units=settings.on_demand_read_units,
        segments=segments,
        workers=settings.workers,
        page_attempts=settings.max_attempts,
        keys_only=keys_only,
        limit=limit,
        tmp_dir=Path(tmp_dir) if tmp_dir else None,
    )
    json_mode = wants_json(as_json)
    renderer = JsonLines() if json_mode else Bars(err_console)
    try:
        with stop_on_sigterm() as stop, _diff_file(out, to_stdout=json_mode) as sink:
            result = diff_refs(
                settings,
                ref,
                ref2,
                live=live,
                schema_from=schema_from,
                key_spec=key_spec,
                params=params,
                out=sink,
                emit=renderer,
                stop=stop,
            )
    finally:
        renderer.close()
    if not json_mode:
        print_diff(result, out=out)
    elif out is not None:  # the differences went to FILE: stdout still gets one document
        print_json({"summary": result.summary.to_json(), "out": out})
    if not result.identical:
        raise click.exceptions.Exit(ExitCode.FAILED)


@contextlib.contextmanager
def _diff_file(path: str | None, *, to_stdout: bool) -> Iterator[BinaryIO | None]:
    """The diff file: FILE, else stdout in JSON mode, else none. A diff that fails, or is
    killed, leaves no FILE behind: it is written as an anonymous file in FILE's folder (Linux's
    O_TMPFILE: a kill leaves nothing) given its name at the end, else beside it as
    .FILE.partial, renamed at the end."""
    if path is None:
        yield sys.stdout.buffer if to_stdout else None
        return
    target = Path(path)
    try:
        fd = _anonymous(target.parent)
    except OSError as exc:
        raise ConfigError(
            f"--out {path}: cannot write in {target.parent} ({exc.strerror})"
        ) from None
    if fd is None:
        with _partial(target) as f:
            yield f
        return
    with os.fdopen(fd, "w+b") as f:
        yield f
        f.flush()
        _name(f, target)


def _name(f: BinaryIO, target: Path) -> None:
    """The anonymous file ``f`` as ``target``, in one step: linked to a temporary name, then
    renamed. Where /proc cannot link it (some sandboxes say EXDEV), copied to .FILE.partial."""
    named = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    named.unlink(missing_ok=True)
    try:
        os.link(f"/proc/self/fd/{f.fileno()}", named)
    except OSError:
        f.seek(0)
        with _partial(target) as copy:
            shutil.copyfileobj(f, copy, 1 << 20)
        return
    named.replace(target)


def _anonymous(folder: Path) -> int | None:
    """A file with no name in ``folder``, open for writing; None where the system or the
    file system has no O_TMPFILE."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not Path("/proc/self/fd").is_dir():
        return None
    try:
        return os.open(folder, flag | os.O_RDWR, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


@contextlib.contextmanager
def _partial(target: Path) -> Iterator[BinaryIO]:
    partial = target.with_name(f".{target.name}.partial")
    try:
        f = open(partial, "wb")  # noqa: SIM115 - closed below, before the rename
    except OSError as exc:
        raise ConfigError(
            f"--out {target}: cannot write in {target.parent} ({exc.strerror})"
        ) from None
    try:
        with f:
            yield f
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
