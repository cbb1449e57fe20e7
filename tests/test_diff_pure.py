"""diff's matching and equality (core/diff.py), without a server: DynamoDB's equality, checked
against an independent normal form (tests/corpus.normal_item), over generated items."""

from __future__ import annotations

import datetime as dt
import io
import random
import tempfile
import zlib
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippolyte.adapters.dynamodb import encode_item
from hippolyte.adapters.storage import open_storage
from hippolyte.core.diff import (
    Kind,
    Summary,
    difference_line,
    differing,
    key_of,
    normal,
    summary_line,
)
from hippolyte.core.model import TableInfo
from hippolyte.engines.segment import DataFileWriter
from hippolyte.formats.base import KeySchema, Source
from hippolyte.formats.open import open_source
from hippolyte.ops import diff_read, diff_stream
from hippolyte.ops.diff import DiffParams, diff_backups
from hippolyte.repo import writer
from tests.corpus import attributes, nasty_items, normal_item, values

KEY = (("pk", "S"), ("n", "N"))


def respelled(value: Any, rnd: random.Random) -> Any:
    """The same DynamoDB value spelled differently: numbers with other notation, sets and
    maps in another order."""
    ((tag, v),) = value.items()
    if tag == "N":
        return {"N": _respell(v, rnd)}
    if tag == "NS":
        members = [_respell(x, rnd) for x in v]
        rnd.shuffle(members)
        return {"NS": members}
    if tag in ("SS", "BS"):
        members = list(v)
        rnd.shuffle(members)
        return {tag: members}
    if tag == "M":
        names = list(v)
        rnd.shuffle(names)
        return {"M": {n: respelled(v[n], rnd) for n in names}}
    if tag == "L":
        return {"L": [respelled(x, rnd) for x in v]}
    return value


def _respell(text: str, rnd: random.Random) -> str:
    d = Decimal(text)
    return rnd.choice([text, f"{d:E}", format(d, "f") + ("" if "." in format(d, "f") else ".0")])


def _wire(item: dict[str, Any]) -> bytes:
    return encode_item(item)


@settings(max_examples=200, deadline=None)
@given(attributes, st.randoms(use_true_random=False))
def test_a_respelled_item_is_identical(attrs: dict[str, Any], rnd: random.Random) -> None:
    before = orjson.loads(_wire(attrs))
    names = list(before)
    rnd.shuffle(names)
    after = {n: respelled(before[n], rnd) for n in names}
    assert differing(orjson.dumps(before), orjson.dumps(after)) is None


@settings(max_examples=200, deadline=None)
@given(attributes, values, st.data())
def test_a_changed_attribute_is_named(attrs: dict[str, Any], new: Any, data: Any) -> None:
    before = orjson.loads(_wire(attrs))
    name = data.draw(st.sampled_from([*before, "added-attribute"]))
    after = {**before, name: orjson.loads(_wire({"x": new}))["x"]}
    same = name in before and normal_item({"x": attrs[name]}) == normal_item({"x": new})
    expected = None if same else [name]
    assert differing(orjson.dumps(before), orjson.dumps(after)) == expected
    removed = {k: v for k, v in before.items() if k != name}
    if name in before:
        assert differing(orjson.dumps(before), orjson.dumps(removed)) == [name]


def test_the_hostile_corpus_compares_exactly() -> None:
    items = [orjson.loads(_wire(i)) for i in nasty_items()]
    for item in items:
        raw = orjson.dumps(item)
        assert differing(raw, raw) is None
        assert differing(raw, orjson.dumps(dict(reversed(item.items())))) is None
    # 38 significant digits: the last one counts
    a, b = "1234567890123456789012345678901234567.8", "1234567890123456789012345678901234567.9"
    assert normal({"N": a}) != normal({"N": b})
    assert normal({"N": "1.50"}) == normal({"N": "15E-1"}) == normal({"N": "+1.5"})
    assert normal({"B": "AAE="}) != normal({"B": "AAI="})
    assert normal({"SS": ["", "a"]}) == normal({"SS": ["a", ""]})
    assert normal({"L": [{"S": "a"}, {"S": "b"}]}) != normal({"L": [{"S": "b"}, {"S": "a"}]})


def test_keys_have_one_spelling() -> None:
    one = key_of({"pk": {"S": "a"}, "n": {"N": "1.50"}}, KEY)
    assert one == key_of({"pk": {"S": "a"}, "n": {"N": "15E-1"}, "x": {"S": "y"}}, KEY)
    assert one != key_of({"pk": {"S": "a"}, "n": {"N": "1.51"}}, KEY)
    assert key_of({"b": {"B": "AAE="}}, (("b", "B"),)) != key_of(
        {"b": {"B": "AAI="}}, (("b", "B"),)
    )
    with pytest.raises(ValueError, match="'n' is missing"):
        key_of({"pk": {"S": "a"}}, KEY)
    with pytest.raises(ValueError, match="'pk' is of type N, the key schema says S"):
        key_of({"pk": {"N": "1"}, "n": {"N": "1"}}, KEY)


def test_the_diff_file_lines() -> None:
    key, item = b'{"pk":{"S":"a"}}', b'{"pk":{"S":"a"},"v":{"N":"1"}}'
    line = difference_line(Kind.CHANGED, key=key, before=item, after=item, attributes=["v"])
    assert orjson.loads(line) == {
        "kind": "changed",
        "key": {"pk": {"S": "a"}},
        "before": orjson.loads(item),
        "after": orjson.loads(item),
        "attributes": ["v"],
    }
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    short = orjson.loads(
        difference_line(Kind.ADDED, key=key, before=None, after=item, keys_only=True)
    )
    assert short == {"kind": "added", "key": {"pk": {"S": "a"}}, "attributes": []}
    summary = Summary(before="b", after="live table t", before_items=3, after_items=2)
    for kind, names in [(Kind.DELETED, []), (Kind.CHANGED, ["v", "w"]), (Kind.CHANGED, ["v"])]:
        summary.count(kind, names)
    doc = orjson.loads(summary_line(summary))["summary"]
    assert (doc["deleted"], doc["added"], doc["changed"]) == (1, 0, 2)
    assert doc["changedAttributes"] == {"v": 2, "w": 1} and summary.differences == 3


# -- two backups matched as they stream (ops/diff_stream), against spilling everything -------

STREAM_SCHEMA = {
    "TableName": "t",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
}


def _write_ours(root: Path, lines: list[bytes], *, files: int, hour: int) -> Source:
    """A committed backup of ours, each line in the file of its key's hash (as a segment)."""
    storage = open_storage(str(root))
    at = dt.datetime(2026, 1, 1, hour, tzinfo=dt.UTC)
    ref = writer.allocate(storage, table="t", at=at)
    out = [
        DataFileWriter(storage, prefix=ref.prefix, key=f"data/{i:05d}-00000.json.gz")
        for i in range(files)
    ]
    for w in range(files):
        out[w].write_items([x for x in lines if zlib.crc32(x[: x.index(b"}")]) % files == w])
    info = TableInfo.from_description({**STREAM_SCHEMA, "ItemCount": len(lines)})
    writer.commit(
        storage,
        ref=ref,
        info=info,
        extras={},
        files=[w.commit() for w in out],
        start=at,
        end=at,
        run={},
        consumed=0.0,
        source={},
    )
    return open_source(storage, ref.prefix, location=f"t/{ref.backup_id}")


def _line(pk: str, v: str) -> bytes:
    return b'{"pk":{"S":"%s"},"v":{"N":"%s"},"pad":{"S":"%s"}}' % (
        pk.encode(),
        v.encode(),
        b"x" * 40,
    )


@st.composite
def stream_pairs(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """Two sides of one table: the second with items deleted, changed, respelled (the same
    number in another notation: identical), added, and moved (a few places, or far)."""
    n = draw(st.integers(0, 120))
    before = [_line(f"k{i}", str(i)) for i in range(n)]
    after: list[bytes] = []
    for i, line in enumerate(before):
        action = draw(st.sampled_from(["keep"] * 6 + ["delete", "change", "respell"]))
        if action == "keep":
            after.append(line)
        elif action == "change":
            after.append(_line(f"k{i}", str(i + 1)))
        elif action == "respell":
            after.append(_line(f"k{i}", f"{i}.0"))
    for _ in range(draw(st.integers(0, 3))):
        if after:
            at, to = draw(st.integers(0, len(after) - 1)), draw(st.integers(0, len(after) - 1))
            after.insert(to, after.pop(at))
    for j in range(draw(st.integers(0, 10))):
        after.insert(draw(st.integers(0, len(after))), _line(f"new{j}", "7"))
    return before, after


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pair=stream_pairs(),
    files=st.integers(1, 3),
    held=st.sampled_from([0, 200, 1 << 20]),
    give_up=st.sampled_from([0, 5, 1 << 30]),
    batch=st.sampled_from([1, 7, 1000]),
)
def test_streamed_match_is_exactly_the_spilled_diff(
    monkeypatch: pytest.MonkeyPatch,
    pair: tuple[list[bytes], list[bytes]],
    files: int,
    held: int,
    give_up: int,
    batch: int,
) -> None:
    """Whatever the order and however little may wait for its twin, streaming the two sides
    reports byte for byte what spilling every item does (GIVE_UP_AFTER -1: all spilled)."""
    before_lines, after_lines = pair
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        before = _write_ours(root / "repo", before_lines, files=files, hour=0)
        after = _write_ours(root / "repo", after_lines, files=files, hour=1)
        schema = KeySchema.from_description(STREAM_SCHEMA)
        params = DiffParams(tmp_dir=root / "spill", limit=1000)
        got, expected = io.BytesIO(), io.BytesIO()
        monkeypatch.setattr(diff_read, "BATCH", batch)  # the batches the sides are read in
        monkeypatch.setattr(diff_stream, "HELD_BYTES", held)
        monkeypatch.setattr(diff_stream, "GIVE_UP_AFTER", give_up)
        diff_backups(before, after, schema=schema, params=params, out=got)
        monkeypatch.setattr(diff_stream, "GIVE_UP_AFTER", -1)
        diff_backups(before, after, schema=schema, params=params, out=expected)
    assert got.getvalue() == expected.getvalue()
    lines = [orjson.loads(x) for x in got.getvalue().splitlines()]
    summary = lines[-1]["summary"]
    assert summary["before"]["items"] == len(before_lines)
    assert summary["after"]["items"] == len(after_lines)
    keys_before = {orjson.loads(x)["pk"]["S"]: x for x in before_lines}
    keys_after = {orjson.loads(x)["pk"]["S"]: x for x in after_lines}
    kinds = Counter(d["kind"] for d in lines[:-1])
    assert kinds["deleted"] == len(keys_before.keys() - keys_after.keys())
    assert kinds["added"] == len(keys_after.keys() - keys_before.keys())
    changed = {
        k
        for k in keys_before.keys() & keys_after.keys()
        if orjson.loads(keys_before[k])["v"]["N"] != orjson.loads(keys_after[k])["v"]["N"]
        and Decimal(orjson.loads(keys_before[k])["v"]["N"])
        != Decimal(orjson.loads(keys_after[k])["v"]["N"])
    }
    assert kinds["changed"] == len(changed)
    assert summary["identical"] == len(keys_before.keys() & keys_after.keys()) - len(changed)
