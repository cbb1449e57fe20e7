"""Bad input, everywhere: every command with malformed arguments and config values gets one
line naming what is wrong and the documented exit code, and nothing is written or changed:
the repository's files (names and bytes) and the live table's items are the same before and
after each case. On dynalite, with a real repository holding a committed backup."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.helpers import db_for, run
from tests.support.servers import Server

pytestmark = pytest.mark.servers


@dataclass(frozen=True)
class World:
    repo: Path
    table: str
    ref: str
    endpoint: str
    tmp: Path


@pytest.fixture(scope="module")
def world(dynalite: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bad-input")
    db = db_for(dynalite)
    table = db.table(items=[{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}} for i in range(25)])
    repo = tmp / "repo"
    capsys = None  # the CLI is run in-process below with its own capture
    del capsys
    from hippolyte import cli

    try:
        cli.main(["backup", table, "--repo", str(repo), "--endpoint-url", dynalite.endpoint_url,
                  "--region", "us-east-1", "--json"])  # fmt: skip
    except SystemExit as exc:
        assert not exc.code, exc.code
    (bid,) = os.listdir(repo / table)
    yield World(repo=repo, table=table, ref=f"{table}/{bid}", endpoint=dynalite.endpoint_url,
                tmp=tmp)  # fmt: skip


def _fingerprint(world: World, dynalite: Server) -> tuple[dict[str, str], list[bytes], list[str]]:
    files = {
        str(p.relative_to(world.repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in world.repo.rglob("*")
        if p.is_file()
    }
    client = db_for(dynalite).client
    items = sorted(
        orjson.dumps(i, option=orjson.OPT_SORT_KEYS)
        for page in client.get_paginator("scan").paginate(TableName=world.table)
        for i in page["Items"]
    )
    tables = sorted(client.list_tables()["TableNames"])
    return files, items, tables


# (id, config text or None, arguments (with {repo}, {table}, {ref}, {endpoint}, {tmp}),
#  exit code, what the one line must say)
CASES: list[tuple[str, str | None, list[str], int, str]] = [
    # numbers: wrong types, negative, huge
    ("backup-workers-text", None, ["backup", "{table}", "--workers", "many"], 2, "'many'"),
    (
        "backup-read-percent-negative",
        None,
        ["backup", "{table}", "--read-percent", "-0.5"],
        2,
        "-0.5",
    ),
    (
        "backup-read-percent-huge",
        None,
        ["backup", "{table}", "--read-percent", "1e308"],
        2,
        "read_percent",
    ),
    ("backup-segments-zero", None, ["backup", "{table}", "--segments", "0"], 2, "segments"),
    (
        "restore-write-capacity-huge",
        None,
        ["restore", "{ref}", "--table", "x-new", "--write-capacity", "99999999999"],
        2,
        "write-capacity",
    ),
    (
        "restore-write-percent-text",
        None,
        ["restore", "{ref}", "--table", "x-new", "--write-percent", "half"],
        2,
        "'half'",
    ),
    ("diff-limit-negative", None, ["diff", "{ref}", "--limit", "-3"], 2, "limit"),
    ("forget-keep-last-negative", None, ["forget", "--keep-last", "-1"], 2, "keep-last"),
    (
        "forget-keep-within-unknown",
        None,
        ["forget", "--keep-within", "3 fortnights"],
        2,
        "fortnights",
    ),
    ("forget-no-rule", None, ["forget"], 2, "no keep rule"),
    ("copy-workers-zero", None, ["copy", "--to", "{tmp}/dr", "--workers", "0"], 2, "workers"),
    (
        "capture-flush-negative",
        None,
        ["capture", "{table}", "--flush-seconds", "-5", "--once"],
        2,
        "flush-seconds",
    ),
    # names: unicode, control characters, too long
    ("backup-control-char-table", None, ["backup", "bad\x07name"], 2, "bad\\x07name"),
    ("backup-unicode-table", None, ["backup", "tablé"], 2, "tablé"),
    ("restore-target-too-long", None, ["restore", "{ref}", "--table", "t" * 300], 2, "table name"),
    ("restore-target-control", None, ["restore", "{ref}", "--table", "new\nline"], 2, "table name"),
    # references escaping the repository
    ("restore-ref-dotdot", None, ["restore", "../{ref}", "--table", "x-new"], 2, ".."),
    ("verify-ref-dotdot", None, ["verify", "{table}/../../etc"], 2, ".."),
    ("show-ref-absolute", None, ["show", "/etc/passwd"], 2, "passwd"),
    ("diff-ref-dotdot", None, ["diff", "{table}/..", "--live"], 2, ".."),
    (
        "recover-keys-missing",
        None,
        ["recover", "{ref}", "--keys", "{tmp}/no-such-file"],
        2,
        "no-such-file",
    ),
    ("copy-to-itself", None, ["copy", "--to", "{repo}"], 2, "is the source"),
    (
        "copy-unknown-backup",
        None,
        ["copy", "{table}/2020-01-01-00-00-00", "--to", "{tmp}/dr2"],
        3,
        "2020-01-01-00-00-00",
    ),
    # repository URLs
    (
        "repo-query-string",
        None,
        ["list", "--repo", "s3://bucket/prefix?versionId=1"],
        2,
        "versionId",
    ),
    ("repo-bad-scheme", None, ["list", "--repo", "ftp://host/x"], 2, "ftp://host/x"),
    ("repo-s3-dotdot", None, ["list", "--repo", "s3://bucket/a/../b"], 2, "s3://bucket/a/../b"),
    # config files
    ("config-is-a-directory", "DIR", ["status"], 2, "config"),
    ("config-unreadable", "UNREADABLE", ["status"], 2, "config"),
    ("config-not-toml", "workers = [", ["status"], 2, "not valid TOML"),
    ("config-unknown-key", "wrokers = 4\n", ["status"], 2, "'wrokers'"),
    ("config-wrong-type", 'workers = "four"\n', ["status"], 2, "workers"),
    ("config-negative", "rpo_hours = -1\n", ["status"], 2, "rpo_hours"),
    ("config-huge", "workers = 100000000000000000000\n", ["status"], 2, "workers"),
    (
        "config-lock-mode",
        '[object_lock]\nmode = "ETERNAL"\ndays = 3\n',
        ["status"],
        2,
        "object_lock.mode",
    ),
    ("config-copy-regex", '[[copies]]\nto = "/x"\ntables = ["("]\n', ["status"], 2, "copies"),
    ("config-control-char", 'repository = "/tmp/a\\u0007b"\n', ["list"], 2, "repository"),
    (
        "config-retention-regex",
        '[retention]\nkeep_last = 1\n[[retention.tables]]\nmatch = "["\n',
        ["forget"],
        2,
        "match",
    ),
    # other arguments
    (
        "restore-at-not-a-time",
        None,
        ["restore", "{table}", "--at", "yesterday-ish", "--table", "x-new"],
        2,
        "yesterday-ish",
    ),
    (
        "restore-key-spec",
        None,
        ["restore", "{ref}", "--table", "x-new", "--key", "pk:Q"],
        2,
        "pk:Q",
    ),
    ("revert-unknown-run", None, ["revert", "--run", "../../x"], 2, "../../x"),
    ("plan-at-not-a-time", None, ["plan", "--at", "25:99"], 2, "25:99"),
]


@pytest.mark.parametrize(("config", "args", "code", "says"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])  # fmt: skip
def test_bad_input_gets_one_line_the_documented_code_and_changes_nothing(
    world: World,
    dynalite: Server,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    config: str | None,
    args: list[str],
    code: int,
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./hippolyte.toml, and nothing written where we stand
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", world.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr("hippolyte.adapters.aws._sessions", {})
    values = {"repo": str(world.repo), "table": world.table, "ref": world.ref,
              "endpoint": world.endpoint, "tmp": str(tmp_path)}  # fmt: skip
    argv = [a.format(**values) for a in args]
    if config is None and "--repo" not in argv and argv[0] != "plan":
        argv += ["--repo", str(world.repo)]
    prefix: list[str] = []
    if config is not None:
        cfg = tmp_path / "hippolyte.toml"
        if config == "DIR":
            cfg.mkdir()
        elif config == "UNREADABLE":
            cfg.write_text("workers = 2\n")
            cfg.chmod(0)
        else:
            cfg.write_text(config)
        prefix = ["--config", str(cfg)]
    before = _fingerprint(world, dynalite)
    got, out, err = run(capsys, *prefix, *argv)
    if config == "UNREADABLE" and os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    assert got == code, (argv, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 3 and "Traceback" not in err, err  # one message (click may add usage)
    assert says in err, (says, err)
    assert _fingerprint(world, dynalite) == before  # nothing written, nothing changed
    assert not any((tmp_path / d).exists() for d in ("dr", "dr2"))
