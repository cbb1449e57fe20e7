"""The proof's fast paths give the bytes of its plain walk, item for item: the canonical form
from bytes (msgspec, C) and the one from an item the check pass decoded (sets sorted there)."""

from __future__ import annotations

from random import Random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hippolyte.adapters.dynamodb import encode_item
from hippolyte.core import proof
from hippolyte.formats.base import check_item
from tests.corpus import Item, attributes, nasty_items
from tests.test_pure import _shuffled


def walked(wire: bytes) -> bytes:
    """The canonical form as the proof defines it: parse, walk every value (every number
    through number_text, every set's distinct members sorted), sorted dump."""

    def canonical(value: dict[str, Any]) -> None:
        for tag, v in value.items():
            if tag == "N":
                value["N"] = proof.number_text(v)
            elif tag in ("SS", "BS"):
                value[tag] = sorted(set(v))
            elif tag == "NS":
                value["NS"] = sorted(set(map(proof.number_text, v)))
            elif tag == "M":
                for x in v.values():
                    canonical(x)
            elif tag == "L":
                for x in v:
                    canonical(x)

    doc = orjson.loads(wire)
    for value in doc.values():
        canonical(value)
    canon = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    assert proof.reference_canonical_json(wire) == canon
    return canon


@given(attributes, st.randoms(use_true_random=False))
def test_the_fast_canonical_form_is_the_walked_one(attrs: Item, rnd: Random) -> None:
    """Numbers in every spelling (1.50, 15E-1), sets in any order, escapes, nesting."""
    wire = encode_item({"pk": {"S": "k"}, **attrs})
    shuffled = _shuffled(wire, rnd)
    assert proof.canonical_json(wire) == walked(wire) == walked(shuffled)
    assert proof.canonical_json(shuffled) == walked(shuffled)


@given(attributes, st.randoms(use_true_random=False))
def test_the_checked_items_digest_is_the_items_digest(attrs: Item, rnd: Random) -> None:
    """What the check pass digests (its own decode, sets sorted by the check) is item_hash."""
    shuffled = _shuffled(encode_item({"pk": {"S": "k"}, **attrs}), rnd)
    whole, checked = proof.Digest(), proof.Digest()
    whole.add(shuffled)
    checked.add_canonical(check_item(shuffled, None, canonical=True))
    assert (checked.count, checked.value) == (whole.count, whole.value)


def test_the_hostile_corpus() -> None:
    for item in nasty_items():
        wire = encode_item(item)
        assert proof.canonical_json(wire) == walked(wire)
        assert proof.canonical_item_hash(check_item(wire, None, canonical=True)) == proof.item_hash(
            wire
        )


@pytest.mark.parametrize(
    "item",
    [
        {"n": {"N": "1.50"}, "m": {"M": {"x": {"N": "+15E-1"}}}},  # respelled in place
        {"s": {"NS": ["10", "9", "1.0E1"]}},  # an NS member to respell: the walk
        {"s": {"NS": ["-3", "1", "2.5"]}, "t": {"SS": ["b", "a", "a]"]}},
        {"s": {"SS": ['q"uote', "back\\slash", "new\nline", "]"]}},
        {"s": {"BS": ["AQ==", "AA=="]}, "l": {"L": [{"NS": ["2", "1"]}, {"N": "007"}]}},
        {"x": {"Q": "an unknown tag"}},  # not DynamoDB JSON: the walk, as before
        {"x": {"S": "a", "N": "1.0"}},  # two tags
        {"x": {"SS": ["b", "a"], "N": "1.0", "BOOL": True}, "y": {"L": [{}]}},
        {"x": {}},
        {"x": {"N": 5}},
        {"x": {"S": None}},  # a null is not a tag left out
        {"s": {"SS": ["b", "a", "b"]}, "n": {"NS": ["1", "1.0", "2"]}},  # a member twice
        {"N": {"M": {"N": {"N": "1.0"}}}, "S": {"SS": ["b", "a"]}},  # names that are tags
    ],
)
def test_odd_items_take_the_walk_or_agree_with_it(item: dict[str, Any]) -> None:
    wire = orjson.dumps(item)
    spaced = orjson.dumps(item, option=orjson.OPT_INDENT_2)  # another server's spacing
    try:
        expected = walked(wire)
    except TypeError:  # not DynamoDB JSON ({"N": 5}): the fast path need not fail too
        return
    assert proof.canonical_json(wire) == proof.canonical_json(spaced) == expected


def test_a_number_spelled_another_way_is_the_same_item() -> None:
    a = orjson.dumps({"n": {"N": "1.5"}, "s": {"NS": ["1", "2"]}})
    b = orjson.dumps({"s": {"NS": ["2.0", "1E0"]}, "n": {"N": "15E-1"}})
    assert proof.item_hash(a) == proof.item_hash(b)
    assert proof.item_hash(a) != proof.item_hash(orjson.dumps({"n": {"N": "1.5"}}))
