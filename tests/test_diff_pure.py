"""diff's matching and equality (core/diff.py), without a server: DynamoDB's equality, checked
against an independent normal form (tests/corpus.normal_item), over generated items."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hippolyte.adapters.dynamodb import encode_item
from hippolyte.core.diff import (
    Kind,
    Summary,
    difference_line,
    differing,
    key_of,
    normal,
    summary_line,
)
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
