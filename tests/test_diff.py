"""``hippolyte diff`` end to end on real local servers: a backup against the live table (both
DynamoDB servers), two backups of each format (no server), bad input, and interruption.

Every test drives the CLI, as a user does, and reads the diff file back: the set of
(kind, key) must be exactly the mutations the test made, each changed item naming exactly the
attributes it changed, ``before`` the backed-up item and ``after`` the live one (compared by
value: DynamoDB and the exports spell numbers and order sets as they like).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippolyte.adapters.storage import open_storage
from hippolyte.core.model import BackupRef
from hippolyte.formats.open import open_source
from hippolyte.ops import diff as diff_ops
from hippolyte.ops import diff_spill
from hippolyte.ops.backup import BackupParams, backup_tables
from hippolyte.ops.restore import RestoreParams, restore
from tests.corpus import Item, attributes, nasty_items, normal_item, numbers, texts, values
from tests.format_fixtures import write_datapipeline_export, write_native_export
from tests.helpers import Db, backup_lines, db_for, run
from tests.support.servers import Server, aws_env, free_port
from tests.test_render import terminal_screen

pytestmark = pytest.mark.servers

KEY = (("pk", "S"), ("sk", "N"))
KEY_SPEC = "pk:S,sk:N"
HIPPOLYTE = [sys.executable, "-m", "hippolyte"]
TMP_PREFIX = "hippolyte-diff-"
KINDS = ("deleted ", "added ", "changed ")  # a difference's line on the terminal


# -- a plan of mutations, and what the diff must report -------------------------------------

SHAPED = ("doc", "tags", "nums", "blobs", "added")  # the generated items' own attributes
RESERVED = {"pk", "sk", *SHAPED}
extras = attributes.map(lambda a: {k: v for k, v in a.items() if k not in RESERVED})
ACTIONS = ("keep", "delete", "respell", "update")


def shaped(pk: str, sk: str, extra: Item) -> Item:
    """An item with something to change at every depth: a nested map, a list holding a map
    with binary, and one set of each kind."""
    return {
        "pk": {"S": pk},
        "sk": {"N": sk},
        "doc": {
            "M": {
                "inner": {"M": {"v": {"N": "1"}, "tags": {"SS": ["a", "b"]}}},
                "list": {"L": [{"N": "1"}, {"S": "x"}, {"M": {"b": {"B": b"\x00"}}}]},
            }
        },
        "tags": {"SS": ["red", "green"]},
        "nums": {"NS": ["1", "2.5", "-3"]},
        "blobs": {"BS": [b"\x00", b"\x01"]},
        **extra,
    }


def _doc(item: Item) -> Item:
    inner: Item = item["doc"]["M"]
    return inner


# Each operation changes the item in place and returns the top-level names it changed.
Op = Callable[[Item, Item], set[str]]
OPS: dict[str, Op] = {
    "nested_map": lambda i, v: _set(_doc(i)["inner"]["M"], "v", {"N": "2"}, "doc"),
    "nested_set": lambda i, v: _append(_doc(i)["inner"]["M"]["tags"]["SS"], "c", "doc"),
    "nested_binary": lambda i, v: _set(_doc(i)["list"]["L"][2]["M"], "b", {"B": b"\x01"}, "doc"),
    "list_order": lambda i, v: _reverse(_doc(i)["list"]["L"], "doc"),  # lists are ordered
    "set_add": lambda i, v: _append(i["tags"]["SS"], "blue", "tags"),
    "set_remove": lambda i, v: _remove(i["nums"]["NS"], "2.5", "nums"),
    "binary_member": lambda i, v: _set_at(i["blobs"]["BS"], 1, b"\x02", "blobs"),
    "set_type": lambda i, v: _set(i, "nums", {"SS": list(i["nums"]["NS"])}, "nums"),
    "new_attribute": lambda i, v: _set(i, "added", v, "added"),
    "wrap_extras": lambda i, v: _wrap_extras(i),
    "drop": lambda i, v: _drop(i, "tags"),  # last: the ops above may touch "tags"
}


def _set(m: Item, name: str, value: Any, changed: str) -> set[str]:
    m[name] = value
    return {changed}


def _set_at(seq: list[Any], at: int, value: Any, changed: str) -> set[str]:
    seq[at] = value
    return {changed}


def _append(seq: list[Any], value: Any, changed: str) -> set[str]:
    seq.append(value)
    return {changed}


def _remove(seq: list[Any], value: Any, changed: str) -> set[str]:
    seq.remove(value)
    return {changed}


def _reverse(seq: list[Any], changed: str) -> set[str]:
    seq.reverse()
    return {changed}


def _drop(item: Item, name: str) -> set[str]:
    del item[name]
    return {name}


def _wrap_extras(item: Item) -> set[str]:
    """Every hypothesis-drawn attribute becomes a list holding its old value: always another
    value, whatever it was."""
    names = {n for n in item if n not in RESERVED}
    for name in names:
        item[name] = {"L": [item[name]]}
    return names


def _nasty_update(item: Item) -> set[str]:
    """The hostile corpus's own changes: the 38th digit, a number 130 places after the
    point, one byte of nested binary, set members, empty values, a unicode value, one
    character of a 399 KB string."""
    pk = item["pk"]["S"]
    if pk == "numbers":
        item["n38"] = {"N": "12345678901234567890123456789012345679"}
        item["tiny"] = {"N": "2E-130"}
        return {"n38", "tiny"}
    if pk == "binary":
        item["deep"]["M"]["l"]["L"][0]["M"]["b"] = {"B": b"\x00\xff\x01"}
        item["empty_b"] = {"B": b"\x00"}
        return {"deep", "empty_b"}
    if pk == "sets":
        item["ss"]["SS"].remove("")
        item["bs"]["BS"].append(b"\x01")
        return {"ss", "bs"}
    if pk == "empty":
        item["s"] = {"S": " "}
        item["m"] = {"M": {"k": {"NULL": True}}}
        return {"s", "m"}
    if pk == "big":
        item["payload"] = {"S": item["payload"]["S"][:-1] + "y"}
        return {"payload"}
    name = next(n for n in item if n not in ("pk", "sk") and "S" in item[n])  # unicode
    item[name] = {"S": item[name]["S"] + "!"}
    return {name}


def respelled(value: Item) -> Item:
    """The same value spelled another way: numbers in scientific notation, set members and
    map entries in reverse order. DynamoDB calls it equal."""
    ((tag, v),) = value.items()
    if tag == "N":
        return {"N": f"{Decimal(v):E}"}
    if tag == "NS":
        return {"NS": [f"{Decimal(x):E}" for x in reversed(v)]}
    if tag in ("SS", "BS"):
        return {tag: list(reversed(v))}
    if tag == "M":
        return {"M": respelled_item(v)}
    if tag == "L":
        return {"L": [respelled(x) for x in v]}
    return value


def respelled_item(item: Item) -> Item:
    return {name: respelled(v) for name, v in reversed(item.items())}


def key_of(item: Item, key: Sequence[tuple[str, str]] = KEY) -> Item:
    return {name: item[name] for name, _ in key}


DiffKey = tuple[str, Any]  # (kind, the key's normal form)


@dataclass(frozen=True)
class Expected:
    before: Item | None
    after: Item | None
    attributes: frozenset[str] = frozenset()


@dataclass
class Plan:
    base: list[Item]  # the table when it is backed up
    deletes: list[Item] = field(default_factory=list)  # keys
    puts: list[Item] = field(default_factory=list)  # updates, respellings, new items
    expected: dict[DiffKey, Expected] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.expected if k == kind)

    @property
    def identical(self) -> int:
        return len(self.base) - self.count("deleted") - self.count("changed")

    def after_items(self) -> list[Item]:
        """The table once the plan is applied, items spelled as they were put."""
        now = {normal_item(key_of(i)): i for i in self.base}
        for key in self.deletes:
            del now[normal_item(key)]
        for item in self.puts:
            now[normal_item(key_of(item))] = item
        return list(now.values())

    def apply(self, db: Db, table: str) -> None:
        for key in self.deletes:
            db.client.delete_item(TableName=table, Key=key)
        for item in self.puts:
            db.client.put_item(TableName=table, Item=item)

    def reversed(self) -> dict[DiffKey, Expected]:
        """What diffing the other way round reports."""
        swap = {"deleted": "added", "added": "deleted", "changed": "changed"}
        return {
            (swap[kind], key): Expected(e.after, e.before, e.attributes)
            for (kind, key), e in self.expected.items()
        }


def build_plan(
    *,
    generated: Sequence[tuple[str, str, Item]],  # the key's end, the sort key, attributes
    actions: Sequence[str],
    ops: Sequence[Sequence[str]],
    new_value: Item,
    added: Sequence[Item],
) -> Plan:
    """The hostile corpus and ``generated`` items; one action per item; ``added`` new items."""
    nasty = [{**item, "sk": {"N": "0"}} for item in nasty_items()]
    base = nasty + [shaped(f"g{i}{end}", sk, extra) for i, (end, sk, extra) in enumerate(generated)]
    plan = Plan(base=base)
    for item, action, item_ops in zip(base, actions, ops, strict=True):
        key = key_of(item)
        if action == "delete":
            plan.deletes.append(key)
            plan.expected[("deleted", normal_item(key))] = Expected(item, None)
        elif action == "respell":
            plan.puts.append(respelled_item(item))
        elif action == "update":
            new = copy.deepcopy(item)
            if "doc" in item:
                names = set().union(*(OPS[op](new, new_value) for op in OPS if op in item_ops))
            else:
                names = _nasty_update(new)
            plan.puts.append(new)
            if names:  # wrap_extras alone on an item without extras changes nothing
                plan.expected[("changed", normal_item(key))] = Expected(item, new, frozenset(names))
    for j, extra in enumerate(added):
        item = {"pk": {"S": f"new-{j}"}, "sk": {"N": str(j)}, **extra}
        plan.puts.append(item)
        plan.expected[("added", normal_item(key_of(item)))] = Expected(None, item)
    return plan


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    generated = draw(
        st.lists(st.tuples(texts, numbers.map(lambda d: f"{d:f}"), extras), min_size=2, max_size=6)
    )
    n = len(nasty_items()) + len(generated)
    return build_plan(
        generated=generated,
        actions=draw(st.lists(st.sampled_from(ACTIONS), min_size=n, max_size=n)),
        ops=draw(
            st.lists(
                st.lists(st.sampled_from(list(OPS)), min_size=1, unique=True),
                min_size=n,
                max_size=n,
            )
        ),
        new_value=draw(values),
        added=draw(st.lists(extras, max_size=3)),
    )


def fixed_plan() -> Plan:
    """Every action, and every operation alone on an item of its own (so that a diff blind
    to one kind of change fails), then all of them on one item."""
    extra: Item = {"e": {"S": "x"}, "n": {"N": "-0.25"}, "f": {"M": {"a": {"NS": ["1", "10"]}}}}
    alone = [("", f"{i}.5", extra) for i in range(len(OPS))]
    generated: list[tuple[str, str, Item]] = [
        *alone,
        (' "quoted" \\ back \u2028 \x00 ✓', "-7", extra),
        ("", "12345678901234567890123456789012345678", {}),
        ("\t\n", "0.001", {}),
        ("", "1E+100", {"g": {"BOOL": False}}),
        ("🦆", "-1E-100", {}),
    ]
    nasty = ["update", "update", "respell", "delete", "update", "update"]  # as nasty_items()
    actions = [*nasty, *["update"] * len(OPS), "update", "respell", "update", "delete", "keep"]
    ops: list[Sequence[str]] = [()] * len(nasty) + [[op] for op in OPS]
    ops += [list(OPS), (), ("wrap_extras",), (), ()]  # the third: nothing to wrap
    added = [{"x": {"SS": ["only", "new"]}}, {}]
    return build_plan(
        generated=generated,
        actions=actions,
        ops=ops,
        new_value={"M": {"z": {"B": b"\xff"}}},
        added=added,
    )


# -- running the diff and reading what it wrote ---------------------------------------------


@dataclass
class DiffFile:
    lines: list[dict[str, Any]]  # the differences
    summary: dict[str, Any]


def read_diff(path: Path) -> DiffFile:
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert docs and list(docs[-1]) == ["summary"], docs[-1:]
    assert all("summary" not in d for d in docs[:-1])
    return DiffFile(lines=docs[:-1], summary=docs[-1]["summary"])


def assert_reports(
    diff: DiffFile,
    expected: dict[DiffKey, Expected],
    *,
    before_items: int,
    identical: int,
    keys_only: bool = False,
    key: Sequence[tuple[str, str]] = KEY,
) -> None:
    """Exactly the ``expected`` differences, each once, and a summary that adds up."""
    got: dict[DiffKey, dict[str, Any]] = {}
    for line in diff.lines:
        k = (line["kind"], normal_item(line["key"]))
        assert k not in got, f"reported twice: {line['kind']} {line['key']}"
        got[k] = line
    assert set(got) == set(expected), _explain(got, expected)
    for k, line in got.items():
        want = expected[k]
        assert line["attributes"] == sorted(want.attributes), (line["key"], line["attributes"])
        if keys_only:
            assert sorted(line) == ["attributes", "key", "kind"]
            continue
        for side in ("before", "after"):
            item = getattr(want, side)
            if item is None:
                assert line[side] is None, (side, line["key"])
            else:
                assert normal_item(line[side]) == normal_item(item), (side, line["key"])
                assert normal_item(line["key"]) == normal_item(key_of(line[side], key))
    kinds = Counter(kind for kind, _ in expected)
    changed = Counter(
        a for (kind, _), e in expected.items() if kind == "changed" for a in e.attributes
    )
    s = diff.summary
    assert (s["deleted"], s["added"], s["changed"]) == (
        kinds["deleted"],
        kinds["added"],
        kinds["changed"],
    )
    assert s["identical"] == identical
    assert s["before"]["items"] == before_items
    assert s["after"]["items"] == before_items - kinds["deleted"] + kinds["added"]
    assert s["identical"] + s["changed"] + s["deleted"] == s["before"]["items"]
    assert s["identical"] + s["changed"] + s["added"] == s["after"]["items"]
    assert s["changedAttributes"] == dict(sorted(changed.items()))


def _explain(got: dict[DiffKey, Any], expected: dict[DiffKey, Any]) -> str:
    def show(keys: set[DiffKey]) -> list[str]:
        return sorted(f"{kind} {dict(key)}" for kind, key in keys)

    return (
        f"unexpected: {show(set(got) - set(expected))}; missing: {show(set(expected) - set(got))}"
    )


def backup(db: Db, table: str, repo: Path) -> str:
    """Back ``table`` up into ``repo``; the backup's path, a REF diff takes."""
    return str(_backup_ref(db, table, repo)[1])


def _backup_ref(db: Db, table: str, repo: Path) -> tuple[BackupRef, Path]:
    storage = open_storage(str(repo))
    (result,) = backup_tables(
        [table], conn=db.conn, storage=storage, params=BackupParams(), emit=lambda e: None
    )
    assert result.ok, result.error
    return result.ref, repo / result.ref.table / result.ref.backup_id


def endpoint(server: Server) -> list[str]:
    return ["--endpoint-url", server.endpoint_url]


def closed_port() -> list[str]:
    """An endpoint where nothing listens: a diff that made any AWS call would fail."""
    return ["--endpoint-url", f"http://127.0.0.1:{free_port()}"]


def events(err: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@contextlib.contextmanager
def temporary_table(db: Db, **spec: Any) -> Iterator[str]:
    """A table dropped after use: DynamoDB Local refuses a table past 80,000 provisioned
    units in all (40 tables of Db.table's), and every test module shares the session's."""
    name = db.table(**spec)
    try:
        yield name
    finally:
        db.client.delete_table(TableName=name)


@pytest.fixture
def many_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spill into hundreds of partition files even for a small table, so that every key must
    land in the same partition on both sides (however each side spells it)."""
    monkeypatch.setattr(diff_spill, "PARTITION_BYTES", 1024)


# -- 1. a backup against its live table, on both servers ------------------------------------


@pytest.fixture
def db(ddb_server: Server) -> Db:
    return db_for(ddb_server)


# Hypothesis draws the plan (the generated items' values and sort keys, one action per item,
# the operations of each update, the new items): what it finds shrinks to a small plan. Each
# example creates its own table and repository on the session's server, hence few examples.
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans())
def test_live_diff_reports_exactly_the_mutations(
    db: Db,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    many_partitions: None,
    plan: Plan,
) -> None:
    tmp = tmp_path_factory.mktemp("diff")
    with temporary_table(db, key=KEY, items=plan.base) as table:
        _round_trip(db, table, tmp, capsys, plan)


def _round_trip(
    db: Db, table: str, tmp: Path, capsys: pytest.CaptureFixture[str], plan: Plan
) -> None:
    ref = backup(db, table, tmp / "repo")
    backed_up = files_under(tmp / "repo")
    spill = tmp / "spill"
    common = [*endpoint(db.server), "--tmp-dir", str(spill), "--segments", "3"]

    code, _, err = run(capsys, "diff", ref, "--live", "--out", str(tmp / "same.jsonl"), *common)
    assert code == 0, err
    assert_reports(
        read_diff(tmp / "same.jsonl"), {}, before_items=len(plan.base), identical=len(plan.base)
    )

    plan.apply(db, table)
    code, _, err = run(capsys, "diff", ref, "--live", "--out", str(tmp / "d.jsonl"), *common)
    assert code == (1 if plan.expected else 0), err
    assert_reports(
        read_diff(tmp / "d.jsonl"),
        plan.expected,
        before_items=len(plan.base),
        identical=plan.identical,
    )
    assert list(spill.iterdir()) == []
    assert files_under(tmp / "repo") == backed_up  # a diff writes nothing but its file


def test_same_items_spelled_differently_by_two_servers_are_identical(
    dynalite: Server, dynamodb_local: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DynamoDB Local sorts set members and reorders attributes; dynalite keeps them as put.
    A backup from one is identical to the same items on the other, live or backed up."""
    items = fixed_plan().base
    src, dst = db_for(dynalite), db_for(dynamodb_local)
    ref_a, folder_a = _backup_ref(src, src.table(key=KEY, items=items), tmp_path / "repo")
    out = tmp_path / "d.jsonl"
    with temporary_table(dst, key=KEY, items=[respelled_item(i) for i in items]) as other:
        ref_b, folder_b = _backup_ref(dst, other, tmp_path / "repo")
        code, _, err = run(
            capsys, "diff", str(folder_a), "--live", other, "--out", str(out), *endpoint(dst.server)
        )
    assert code == 0, err
    assert_reports(read_diff(out), {}, before_items=len(items), identical=len(items))
    storage = open_storage(str(tmp_path / "repo"))
    lines_a, lines_b = backup_lines(storage, ref_a), backup_lines(storage, ref_b)
    assert len(set(lines_a) - set(lines_b)) >= 4  # the bytes differ: equality is by value
    code, _, err = run(capsys, "diff", str(folder_a), str(folder_b), "--out", str(out))
    assert code == 0, err
    assert_reports(read_diff(out), {}, before_items=len(items), identical=len(items))


# -- 2. another live table, --keys-only, --json, the terminal -------------------------------


def test_live_other_table_keys_only_and_json(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    plan = fixed_plan()
    table = db.table(key=KEY, items=plan.base)
    ref = backup(db, table, tmp_path / "repo")
    copy_name = f"{table}-restored"
    report = restore(
        open_source(
            open_storage(str(Path(ref).parent.parent)), f"{table}/{Path(ref).name}/", location=ref
        ),
        conn=db.conn,
        table=copy_name,
        description=None,
        params=RestoreParams(state_dir=tmp_path / "state"),
        emit=lambda e: None,
    )
    assert report.proven
    n = len(plan.base)

    code, out, err = run(capsys, "diff", ref, "--live", copy_name, "--json", *endpoint(dynalite))
    assert code == 0, err
    (line,) = out.splitlines()
    assert orjson.loads(line)["summary"]["after"] == {
        "source": f"live table {copy_name}",
        "items": n,
    }

    plan.apply(db, copy_name)
    full, keys = tmp_path / "full.jsonl", tmp_path / "keys.jsonl"
    code, _, err = run(
        capsys, "diff", ref, "--live", copy_name, "--out", str(full), *endpoint(dynalite)
    )
    assert code == 1, err
    assert_reports(read_diff(full), plan.expected, before_items=n, identical=plan.identical)
    code, _, err = run(
        capsys,
        "diff",
        ref,
        "--live",
        copy_name,
        "--keys-only",
        "--out",
        str(keys),
        *endpoint(dynalite),
    )
    assert code == 1, err
    assert_reports(
        read_diff(keys), plan.expected, before_items=n, identical=plan.identical, keys_only=True
    )
    # the same lines in the same order, without the items
    stripped = [
        {k: v for k, v in d.items() if k not in ("before", "after")} for d in read_diff(full).lines
    ]
    assert read_diff(keys).lines == stripped

    # --json: the diff file on stdout, byte for byte; progress as JSON lines on stderr
    code, out, err = run(capsys, "diff", ref, "--live", copy_name, "--json", *endpoint(dynalite))
    assert code == 1, err
    assert out.encode() == full.read_bytes()
    started = [e for e in events(err) if e["event"] == "read_started"]
    assert [(e["table"], e["exact"]) for e in started] == [
        (ref, True),
        (f"live {copy_name}", False),
    ]
    assert started[0]["expected_items"] == n
    assert all(line.startswith("{") for line in err.splitlines())

    # the backup's own table was not touched: against it, nothing changed
    code, _, err = run(capsys, "diff", ref, *endpoint(dynalite), "--out", str(full))
    assert code == 0, err
    assert read_diff(full).lines == []


def on_terminal(argv: list[str], *, env: dict[str, str]) -> tuple[int, list[str]]:
    """Exit code and the screen of ``argv`` run on a 300-column pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 300, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"}
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    code = proc.wait(timeout=60)
    return code, terminal_screen(b"".join(chunks).decode(errors="replace"))


def test_terminal_shows_summary_and_first_differences(dynalite: Server, tmp_path: Path) -> None:
    db = db_for(dynalite)
    items = [
        {"pk": {"S": f"k{i}"}, "sk": {"N": "0"}, "x": {"N": str(i)}, "y": {"S": "y"}}
        for i in range(8)
    ]
    items.append({"pk": {"S": "big"}, "sk": {"N": "0"}, "payload": {"S": "p" * 1000}})
    table = db.table(key=KEY, items=items)
    ref = backup(db, table, tmp_path / "repo")
    db.client.delete_item(TableName=table, Key={"pk": {"S": "k1"}, "sk": {"N": "0"}})
    for pk in ("n1", "n2"):
        db.client.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"N": "0"}})
    db.client.put_item(
        TableName=table, Item={"pk": {"S": "k2"}, "sk": {"N": "0"}, "x": {"N": "99"}}
    )
    db.client.put_item(
        TableName=table,
        Item={"pk": {"S": "big"}, "sk": {"N": "0"}, "payload": {"S": "p" * 999 + "q"}},
    )
    env = {**os.environ, **aws_env(dynalite)}
    options = [*endpoint(dynalite), "--tmp-dir", str(tmp_path / "spill")]
    diff = [*HIPPOLYTE, "diff", ref, *options]

    code, screen = on_terminal(diff, env=env)
    assert code == 1, screen
    text = "\n".join(screen)
    assert any(f"({len(items)} items) -> live table {table} (10 items)" in s for s in screen), text
    assert "  deleted since 1   added since 2   changed 2   identical 6" in screen, text
    (attrs,) = [s for s in screen if s.startswith("  changed attributes: ")]
    assert sorted(attrs.removeprefix("  changed attributes: ").split(", ")) == [
        "payload (1)",
        "x (1)",
        "y (1)",
    ]
    shown = [s.split()[0] for s in screen if s.startswith(KINDS)]
    assert sorted(shown) == ["added", "added", "changed", "changed", "deleted"], text
    assert '           x: {"N":"2"} -> {"N":"99"}' in screen, text
    assert '           y: {"S":"y"} -> (absent)' in screen, text
    (payload,) = [s for s in screen if s.startswith("           payload: ")]
    old, new = payload.removeprefix("           payload: ").split(" -> ")
    assert old.startswith('{"S":"ppp') and old.endswith("…") and len(old) <= 60, payload
    assert new.startswith('{"S":"ppp') and new.endswith("…") and len(new) <= 60, payload
    assert not any("more" in s for s in screen)

    out = tmp_path / "all.jsonl"
    code, screen = on_terminal([*diff, "--limit", "2", "--out", str(out)], env=env)
    assert code == 1, screen
    shown = [s for s in screen if s.startswith(KINDS)]
    assert len(shown) == 2, screen
    assert f"  ... 3 more; all of them in {out}" in screen, screen
    assert len(read_diff(out).lines) == 5

    now = backup(db, table, tmp_path / "repo")
    code, screen = on_terminal([*HIPPOLYTE, "diff", now, *options], env=env)
    assert code == 0, screen
    assert "  deleted since 0   added since 0   changed 0   identical 10" in screen, screen
    assert screen[-1].strip() == "identical", screen
    assert list((tmp_path / "spill").iterdir()) == []


def test_the_scan_says_the_budget_it_uses(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    items = [{"pk": {"S": "a"}, "sk": {"N": "1"}}]
    ref = backup(db, db.table(key=KEY, items=items), tmp_path / "repo")
    table = db.table(key=KEY, items=items, rcu=1)
    code, _, err = run(
        capsys, "diff", ref, "--live", table, "--read-percent", "0.01", *endpoint(dynalite)
    )
    assert code == 0, err
    (step,) = [e["text"] for e in events(err) if e["event"] == "step"]
    found = re.search(r"at most ([0-9.,]+) read units/s \(([0-9.]+)% of its capacity\)", step)
    assert found, step
    units, percent = float(found[1]), float(found[2])
    assert units > 0 and units == pytest.approx(1 * percent / 100), step


# -- 3. backup against backup, every format, no server --------------------------------------


def test_two_backups_of_ours_need_no_server(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = db_for(dynalite)
    plan = fixed_plan()
    table = db.table(key=KEY, items=plan.base)
    first = backup(db, table, tmp_path / "repo")
    plan.apply(db, table)
    second = backup(db, table, tmp_path / "repo")
    db.client.delete_table(TableName=table)
    backed_up = files_under(tmp_path / "repo")
    out = tmp_path / "d.jsonl"
    n = len(plan.base)

    code, _, err = run(capsys, "diff", first, second, "--out", str(out), *closed_port())
    assert code == 1, err
    assert_reports(read_diff(out), plan.expected, before_items=n, identical=plan.identical)
    assert read_diff(out).summary["after"]["source"] == second

    code, _, err = run(capsys, "diff", second, first, "--out", str(out), *closed_port())
    assert code == 1, err
    assert_reports(
        read_diff(out),
        plan.reversed(),
        before_items=len(plan.after_items()),
        identical=plan.identical,
    )

    code, _, err = run(capsys, "diff", second, second, "--out", str(out), *closed_port())
    assert code == 0, err
    assert files_under(tmp_path / "repo") == backed_up


def test_native_exports_compare_by_value(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], many_partitions: None
) -> None:
    """The second export spells the untouched items its own way (numbers, keys included, in
    scientific notation; sets and attributes reversed) and has moto's bare layout."""
    plan = fixed_plan()
    storage = open_storage(str(tmp_path / "exports"))
    a = tmp_path / "exports" / write_native_export(storage, "a/", plan.base)
    later = [respelled_item(i) for i in plan.after_items()]
    b = tmp_path / "exports" / write_native_export(storage, "b/", later, with_manifests=False)
    out = tmp_path / "d.jsonl"
    n = len(plan.base)

    code, _, err = run(capsys, "diff", str(a), str(b), "--out", str(out), *closed_port())
    assert code == 2 and "--key" in err.splitlines()[-1], err
    assert not out.exists()

    code, _, err = run(
        capsys, "diff", str(a), str(b), "--key", KEY_SPEC, "--out", str(out), *closed_port()
    )
    assert code == 1, err
    assert_reports(read_diff(out), plan.expected, before_items=n, identical=plan.identical)

    # the live table holds the same items, spelled by the server: identical to export b
    db = db_for(dynalite)
    table = db.table(key=KEY, items=plan.after_items())
    code, _, err = run(
        capsys,
        "diff",
        str(b),
        "--live",
        table,
        "--schema-from",
        table,
        "--out",
        str(out),
        *endpoint(dynalite),
    )
    assert code == 0, err
    assert_reports(read_diff(out), {}, before_items=len(later), identical=len(later))


def test_datapipeline_exports_and_ours_against_them(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = fixed_plan()
    storage = open_storage(str(tmp_path / "dp"))
    write_datapipeline_export(storage, "a/", plan.base, items_per_file=4)
    later = [respelled_item(i) for i in plan.after_items()]
    write_datapipeline_export(storage, "b/", later, items_per_file=3)
    a, b = tmp_path / "dp" / "a", tmp_path / "dp" / "b"
    out = tmp_path / "d.jsonl"
    n = len(plan.base)

    code, _, err = run(
        capsys, "diff", str(a), str(b), "--key", KEY_SPEC, "--out", str(out), *closed_port()
    )
    assert code == 1, err
    assert_reports(read_diff(out), plan.expected, before_items=n, identical=plan.identical)

    # our backup of the same items, against either export: its own key schema is enough
    db = db_for(dynalite)
    ours = backup(db, db.table(key=KEY, items=plan.base), tmp_path / "repo")
    code, _, err = run(capsys, "diff", ours, str(a), "--out", str(out), *closed_port())
    assert code == 0, err
    assert_reports(read_diff(out), {}, before_items=n, identical=n)
    code, _, err = run(capsys, "diff", ours, str(b), "--out", str(out), *closed_port())
    assert code == 1, err
    assert_reports(read_diff(out), plan.expected, before_items=n, identical=plan.identical)


def test_binary_and_number_keys_match_however_spelled(
    dynalite: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], many_partitions: None
) -> None:
    """A key of binary and number: the export spells the numbers in scientific notation, the
    server in plain notation; the items are matched by value all the same."""
    key = (("id", "B"), ("n", "N"))
    keys = [
        (bytes(range(256)), "1.5"),
        (b"\x00", "-0.001"),
        (b"\xff" * 3, "12345678901234567890123456789012345678"),
        (b"a", "0"),
        (b"a", "1E+100"),
        (b"a", "-1E-130"),
    ]
    items = [{"id": {"B": b}, "n": {"N": n}, "v": {"S": "v"}} for b, n in keys]
    db = db_for(dynalite)
    table = db.table(key=key, items=items)
    storage = open_storage(str(tmp_path / "x"))
    export = tmp_path / "x" / write_native_export(storage, "", [respelled_item(i) for i in items])
    out = tmp_path / "d.jsonl"
    diff = ["diff", str(export), "--live", table, "--key", "id:B,n:N", "--out", str(out)]

    code, _, err = run(capsys, *diff, *endpoint(dynalite))
    assert code == 0, err
    assert_reports(read_diff(out), {}, before_items=6, identical=6, key=key)

    changed = {**items[0], "v": {"S": "w"}}
    added = {"id": {"B": b"a"}, "n": {"N": "2"}}
    db.client.put_item(TableName=table, Item=changed)
    db.client.put_item(TableName=table, Item=added)
    db.client.delete_item(TableName=table, Key=key_of(items[2], key))
    code, _, err = run(capsys, *diff, *endpoint(dynalite))
    assert code == 1, err
    expected = {
        ("changed", normal_item(key_of(changed, key))): Expected(items[0], changed, frozenset("v")),
        ("added", normal_item(key_of(added, key))): Expected(None, added),
        ("deleted", normal_item(key_of(items[2], key))): Expected(items[2], None),
    }
    assert_reports(read_diff(out), expected, before_items=6, identical=4, key=key)


# -- 4. bad input: one line, a documented exit code, nothing written ------------------------


@dataclass
class Setup:
    db: Db
    table: str
    repo: Path
    ref: str  # the backup's path

    @property
    def backup_id(self) -> str:
        return Path(self.ref).name


@pytest.fixture(scope="module")
def setup(dynalite: Server, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    db = db_for(dynalite)
    items = [{"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}, "v": {"S": "v"}} for i in range(30)]
    table = db.table(key=KEY, items=items)
    repo = tmp_path_factory.mktemp("bad-input") / "repo"
    return Setup(db=db, table=table, repo=repo, ref=backup(db, table, repo))


def fails_cleanly(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    setup: Setup,
    *args: str,
    code: int,
    says: Sequence[str],
    watched: Sequence[Path] = (),
) -> str:
    """Run a diff that must fail: ``code``, one error line holding every ``says``, and
    nothing written: no diff file, an empty temporary folder, the backups and the server's
    tables as they were. Returns the error line."""
    out = tmp_path / "out" / "d.jsonl"
    out.parent.mkdir(exist_ok=True)
    spill = tmp_path / "spill"
    folders = [setup.repo, *watched]
    before = [files_under(f) for f in folders]
    tables = table_names(setup.db)
    got, stdout, err = run(capsys, "diff", *args, "--out", str(out), "--tmp-dir", str(spill))
    assert got == code, err
    (line,) = [s for s in err.splitlines() if not s.startswith('{"event":')]
    assert line.startswith("hippolyte: error: ") and err.endswith(line + "\n"), err
    for text in says:
        assert text in line, line
    assert stdout == ""
    assert list(out.parent.iterdir()) == []
    assert not spill.exists() or list(spill.iterdir()) == []
    assert [files_under(f) for f in folders] == before
    assert table_names(setup.db) == tables
    return line


def table_names(db: Db) -> list[str]:
    pages = db.client.get_paginator("list_tables").paginate()
    return [name for page in pages for name in page["TableNames"]]


def copied(setup: Setup, tmp_path: Path) -> Path:
    """A copy of the setup's backup to damage."""
    folder = tmp_path / "copy" / setup.table / setup.backup_id
    shutil.copytree(setup.ref, folder)
    return folder


def test_missing_refs_exit_3(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], dynalite: Server
) -> None:
    missing = f"{setup.table}/2020-01-01-00-00-00"
    common = endpoint(dynalite)
    fails_cleanly(
        capsys, tmp_path, setup, missing, "--repo", str(setup.repo), *common, code=3, says=[missing]
    )
    nowhere = str(tmp_path / "nowhere")
    fails_cleanly(capsys, tmp_path, setup, nowhere, *common, code=3, says=[nowhere])
    fails_cleanly(capsys, tmp_path, setup, setup.ref, nowhere, *common, code=3, says=[nowhere])
    fails_cleanly(capsys, tmp_path, setup, nowhere, setup.ref, *common, code=3, says=[nowhere])


def test_missing_live_table_exits_3(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], dynalite: Server
) -> None:
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        setup.ref,
        "--live",
        "no-such-table",
        *endpoint(dynalite),
        code=3,
        says=["'no-such-table'"],
    )
    # the backup's own table, deleted since
    db = setup.db
    gone = db.table(key=KEY, items=[{"pk": {"S": "a"}, "sk": {"N": "1"}}])
    ref = backup(db, gone, tmp_path / "repo2")
    db.client.delete_table(TableName=gone)
    db.client.get_waiter("table_not_exists").wait(TableName=gone, WaiterConfig={"Delay": 0.2})
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        ref,
        *endpoint(dynalite),
        code=3,
        says=[f"'{gone}'"],
        watched=[tmp_path / "repo2"],
    )


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ((("id", "N"),), ["'id' (N) where the backup has 'pk' (S)"]),
        ((("pk", "S"),), ["nothing where the backup has 'sk' (N)"]),
        ((("pk", "N"), ("sk", "N")), ["'pk' (N) where the backup has 'pk' (S)"]),
        ((("pk", "S"), ("when", "N")), ["'when' (N) where the backup has 'sk' (N)"]),
        ((("pk", "S"), ("sk", "S")), ["'sk' (S) where the backup has 'sk' (N)"]),
        (KEY, []),  # the same key: no error (the control)
    ],
)
def test_live_table_with_another_key_exits_2_naming_the_attribute(
    setup: Setup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dynalite: Server,
    key: tuple[tuple[str, str], ...],
    says: list[str],
) -> None:
    other = setup.db.table(key=key)
    if not says:
        code, _, err = run(
            capsys,
            "diff",
            setup.ref,
            "--live",
            other,
            *endpoint(dynalite),
            "--keys-only",
            "--out",
            str(tmp_path / "d"),
        )
        assert code == 1, err  # every backed-up item is missing from the empty table
        assert read_diff(tmp_path / "d").summary["deleted"] == 30
        return
    line = fails_cleanly(
        capsys, tmp_path, setup, setup.ref, "--live", other, *endpoint(dynalite), code=2, says=says
    )
    assert f"'{other}'" in line


def test_corrupt_backup_file_exits_4_naming_it(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], dynalite: Server
) -> None:
    folder = copied(setup, tmp_path)
    victim = sorted((folder / "data").iterdir())[-1]
    data = bytearray(victim.read_bytes())
    data[-12] ^= 0x01
    victim.write_bytes(bytes(data))
    for args in ([str(folder)], [setup.ref, str(folder)], [str(folder), setup.ref]):
        fails_cleanly(
            capsys,
            tmp_path,
            setup,
            *args,
            *endpoint(dynalite),
            code=4,
            says=[victim.name],
            watched=[folder],
        )


def test_bad_line_of_an_export_exits_4_naming_file_and_line(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], dynalite: Server
) -> None:
    items = [{"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}, "v": {"S": "v"}} for i in range(30)]
    storage = open_storage(str(tmp_path / "dp"))
    keys = write_datapipeline_export(storage, "x/", items, items_per_file=10)
    victim = tmp_path / "dp" / keys[1]
    lines = victim.read_bytes().splitlines()
    lines[2] = b'{"pk":{"s":"k12"},"sk":{"n":"12"},"bad":{"zz":1}}'
    victim.write_bytes(b"\n".join(lines) + b"\n")
    export = str(tmp_path / "dp" / "x")
    says = [f"{victim.name} line 3", "'bad'"]
    watched = [tmp_path / "dp"]
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        setup.ref,
        export,
        *closed_port(),
        code=4,
        says=says,
        watched=watched,
    )
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        export,
        "--live",
        setup.table,
        "--key",
        KEY_SPEC,
        *endpoint(dynalite),
        code=4,
        says=says,
        watched=watched,
    )
    lines[2] = b'{"pk":{"s":"k12"},"v":{"s":"v"}}'  # no sort key
    victim.write_bytes(b"\n".join(lines) + b"\n")
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        setup.ref,
        export,
        *closed_port(),
        code=4,
        says=[f"{victim.name} line 3", "'sk'"],
        watched=watched,
    )


def test_not_a_number_in_an_export_is_named_by_file_and_line(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [{"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}, "v": {"S": "v"}} for i in range(30)]
    storage = open_storage(str(tmp_path / "dp"))
    (key,) = write_datapipeline_export(storage, "x/", items)
    victim = tmp_path / "dp" / key
    lines = victim.read_bytes().splitlines()
    lines[4] = b'{"pk":{"s":"k4"},"sk":{"n":"4"},"v":{"n":"not a number"}}'
    victim.write_bytes(b"\n".join(lines) + b"\n")
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        setup.ref,
        str(tmp_path / "dp" / "x"),
        *closed_port(),
        code=4,
        says=[f"{victim.name} line 5"],
        watched=[tmp_path / "dp"],
    )


def test_incomplete_backups_are_refused(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], dynalite: Server
) -> None:
    folder = copied(setup, tmp_path)
    (folder / "_SUCCESS").unlink()
    for args in ([str(folder)], [setup.ref, str(folder)]):
        fails_cleanly(
            capsys,
            tmp_path,
            setup,
            *args,
            *endpoint(dynalite),
            code=4,
            says=[str(folder), "incomplete"],
            watched=[folder],
        )
    storage = open_storage(str(tmp_path / "dp"))
    write_datapipeline_export(
        storage, "x/", [{"pk": {"S": "a"}, "sk": {"N": "1"}}], with_success=False
    )
    export = str(tmp_path / "dp" / "x")
    fails_cleanly(
        capsys,
        tmp_path,
        setup,
        setup.ref,
        export,
        *closed_port(),
        code=4,
        says=[export, "incomplete"],
        watched=[tmp_path / "dp"],
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["REF2", "--live"], "REF2 or --live"),
        (["REF2", "--key", "pk:S", "--schema-from", "t"], "--schema-from or --key"),
        (["REF2", "--key", "pk"], "--key 'pk'"),
        (["--read-percent", "2"], "--read-percent"),
    ],
)
def test_usage_errors_exit_2(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    args = [setup.ref if a == "REF2" else a for a in args]
    code, out, err = run(
        capsys,
        "diff",
        setup.ref,
        *args,
        *closed_port(),
        "--out",
        str(tmp_path / "d"),
        "--tmp-dir",
        str(tmp_path / "spill"),
    )
    assert code == 2, err
    assert says in err and "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []


def test_out_in_a_missing_folder_is_one_line(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no" / "such" / "d.jsonl"
    code, stdout, err = run(
        capsys,
        "diff",
        setup.ref,
        setup.ref,
        "--out",
        str(out),
        "--tmp-dir",
        str(tmp_path / "spill"),
        *closed_port(),
    )
    assert "Traceback" not in err
    assert code == 2, err
    (line,) = [s for s in err.splitlines() if not s.startswith('{"event":')]
    assert line.startswith("hippolyte: error: ") and str(out.parent) in line
    spill = tmp_path / "spill"  # refused before anything was read: not even created
    assert not spill.exists() or list(spill.iterdir()) == []


# -- 5. interruption: nothing left behind ---------------------------------------------------


@dataclass
class Slow:
    ref: str  # a backup of the items, taken from a fast table
    table: str  # the same items in a table of 1 RCU: its scan takes a minute
    fast: str


@pytest.fixture(scope="module")
def slow(dynamodb_local: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slow]:
    # DynamoDB Local: dynalite (Node) exits when a client is killed in the middle of a request
    db = db_for(dynamodb_local)
    items = [
        {"pk": {"S": f"k{i:03d}"}, "sk": {"N": str(i)}, "v": {"S": "x" * 4000}} for i in range(60)
    ]
    with (
        temporary_table(db, key=KEY, items=items) as fast,
        temporary_table(db, key=KEY, items=items, rcu=1) as table,
    ):
        ref = backup(db, fast, tmp_path_factory.mktemp("slow") / "repo")
        yield Slow(ref=ref, table=table, fast=fast)


def start_diff(
    server: Server,
    slow: Slow,
    *,
    out: Path,
    tmp_dir: Path | None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The slow diff in a process, returned once it scans the live table."""
    args = [*HIPPOLYTE, "diff", slow.ref, "--live", slow.table, "--read-percent", "0.01"]
    args += [*endpoint(server), "--out", str(out), "--json"]
    args += ["--tmp-dir", str(tmp_dir)] if tmp_dir else []
    proc = subprocess.Popen(
        args,
        env={**os.environ, **aws_env(server), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl-C as a terminal delivers it, even when the suite runs as a background job of a
        # shell without job control (which starts it, and so every child, ignoring SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        for line in iter(proc.stderr.readline, b""):
            doc = orjson.loads(line) if line.startswith(b"{") else {}
            if doc.get("event") == "read_started" and doc["table"] == f"live {slow.table}":
                return proc
        raise AssertionError(f"the diff ended before scanning: {proc.wait()}")
    finally:
        watchdog.cancel()


def spill_folders(base: Path, pid: int) -> list[Path]:
    found = list(base.iterdir())
    assert [p.name.startswith(f"{TMP_PREFIX}{pid}-") for p in found] == [True], found
    return found


@pytest.mark.parametrize("how", ["sigint-tmp-dir", "sigterm-TMPDIR"])
def test_interrupted_diff_leaves_nothing(
    dynamodb_local: Server, slow: Slow, tmp_path: Path, how: str
) -> None:
    sig = signal.SIGINT if how.startswith("sigint") else signal.SIGTERM
    spill, out = tmp_path / "spill", tmp_path / "out" / "d.jsonl"
    spill.mkdir()
    out.parent.mkdir()
    if how.endswith("TMPDIR"):  # without --tmp-dir: the system's temporary folder
        proc = start_diff(dynamodb_local, slow, out=out, tmp_dir=None, env={"TMPDIR": str(spill)})
    else:
        proc = start_diff(dynamodb_local, slow, out=out, tmp_dir=spill)
    (folder,) = spill_folders(spill, proc.pid)
    # the backup's side may be spilled already (a small one is read first) or not yet (one of
    # OVERLAP_MIN_BYTES or more is read while the table is scanned): either way, removed below
    assert folder.is_dir()
    assert list(out.parent.iterdir()) == []  # the diff file has no name until it is done

    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    # one line (after click's blank line on Ctrl-C): the diff was interrupted, however
    lines = [s for s in stderr.decode().splitlines() if s and not s.startswith('{"event":')]
    assert len(lines) == 1, stderr.decode()
    (line,) = lines
    assert line.startswith("hippolyte: error: "), stderr
    assert "interrupted" in line and "segment" not in line, line
    assert b"Traceback" not in stderr and stdout == b""
    assert list(spill.iterdir()) == []
    assert list(out.parent.iterdir()) == []


def test_killed_diff_folder_is_swept_by_the_next(
    dynamodb_local: Server, slow: Slow, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spill, out = tmp_path / "spill", tmp_path / "out" / "d.jsonl"
    out.parent.mkdir()
    proc = start_diff(dynamodb_local, slow, out=out, tmp_dir=spill)
    proc.kill()
    proc.communicate(timeout=30)
    (left,) = spill_folders(spill, proc.pid)
    assert any(left.iterdir())
    assert list(out.parent.iterdir()) == []  # an anonymous diff file: a kill leaves nothing

    alive = spill / f"{TMP_PREFIX}{os.getpid()}-a-living-diff"  # this process's: not swept
    alive.mkdir()
    (alive / "before-00000").write_bytes(b"x")
    unrelated = spill / "not-a-diff"
    unrelated.mkdir()
    code, _, err = run(
        capsys,
        "diff",
        slow.ref,
        "--live",
        slow.fast,
        *endpoint(dynamodb_local),
        "--tmp-dir",
        str(spill),
        "--out",
        str(out),
    )
    assert code == 0, err
    assert sorted(spill.iterdir()) == sorted([alive, unrelated])
    assert (alive / "before-00000").read_bytes() == b"x"
    assert [p.name for p in out.parent.iterdir()] == ["d.jsonl"]


def test_out_without_anonymous_files_is_written_beside_then_renamed(
    setup: Setup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where O_TMPFILE is missing, FILE is written as .FILE.partial, renamed at the end."""
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    seen: list[list[str]] = []
    real_replace = Path.replace

    def replace(self: Path, target: Any) -> Path:
        seen.append(sorted(p.name for p in self.parent.iterdir()))
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    out = tmp_path / "out" / "d.jsonl"
    out.parent.mkdir()
    code, _, err = run(capsys, "diff", setup.ref, setup.ref, "--out", str(out), *closed_port())
    assert code == 0, err
    assert seen == [[".d.jsonl.partial"]]
    assert [p.name for p in out.parent.iterdir()] == ["d.jsonl"]
    assert b'"summary"' in out.read_bytes()


def test_overlapped_read_reports_exactly_the_mutations(
    dynalite: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backup of OVERLAP_MIN_BYTES or more is read while the table is scanned (two sides of
    one run_all): the same exact result."""
    monkeypatch.setattr(diff_ops, "OVERLAP_MIN_BYTES", 0)
    groups: list[str] = []
    real_run_all = diff_ops.run_all

    def run_all(*args: Any, **kwargs: Any) -> Any:
        groups.append(kwargs["name"])
        return real_run_all(*args, **kwargs)

    monkeypatch.setattr(diff_ops, "run_all", run_all)
    db, plan = db_for(dynalite), fixed_plan()
    with temporary_table(db, key=KEY, items=plan.base) as table:
        _round_trip(db, table, tmp_path, capsys, plan)
    assert groups == ["hippolyte-diff-side"] * 2  # both diffs, each read in two sides


def test_overlapped_read_of_a_corrupt_backup_stops_the_scan(
    dynamodb_local: Server,
    slow: Slow,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backup's side fails at once: the scan of the slow table (a minute) stops, one line
    names the file, and the temporary folder and --out are left empty."""
    monkeypatch.setattr(diff_ops, "OVERLAP_MIN_BYTES", 0)
    ref = Path(slow.ref)
    folder = tmp_path / "copy" / ref.parent.name / ref.name
    shutil.copytree(ref, folder)
    victim = sorted((folder / "data").iterdir())[-1]
    data = bytearray(victim.read_bytes())
    data[-12] ^= 0x01
    victim.write_bytes(bytes(data))
    spill, out = tmp_path / "spill", tmp_path / "out" / "d.jsonl"
    out.parent.mkdir()
    began = time.monotonic()
    code, _, err = run(
        capsys,
        "diff",
        str(folder),
        "--live",
        slow.table,
        "--read-percent",
        "0.01",
        *endpoint(dynamodb_local),
        "--tmp-dir",
        str(spill),
        "--out",
        str(out),
    )
    took = time.monotonic() - began
    assert code == 4, err
    (line,) = [s for s in err.splitlines() if not s.startswith('{"event":')]
    assert line.startswith("hippolyte: error: ") and victim.name in line, line
    started = [e["table"] for e in events(err) if e["event"] == "read_started"]
    assert f"live {slow.table}" in started, started  # the scan had begun
    assert took < 20, f"the scan went on: {took:.1f} s"
    assert list(spill.iterdir()) == []
    assert list(out.parent.iterdir()) == []


def test_json_with_out_prints_the_summary_document(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.jsonl"
    code, stdout, err = run(
        capsys, "diff", setup.ref, setup.ref, "--out", str(out), "--json", *closed_port()
    )
    assert code == 0, err
    doc = orjson.loads(stdout)
    assert doc["out"] == str(out) and doc["summary"]["identical"] > 0
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == [
        {"summary": doc["summary"]}
    ]
