"""formats.base.check_item checks every value of an item as DynamoDB would, at every depth,
and names the path of the first bad one; everything DynamoDB accepts passes. Pure."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hippolyte.formats.base import KeySchema, check_item, check_values
from tests.corpus import attributes, names, nasty_items
from tests.format_fixtures import wire

BAD: list[tuple[Any, str]] = [
    ({"N": "abc"}, '"N" value "abc" is not a number'),
    ({"N": ""}, '"N" value "" is not a number'),
    ({"N": " 1"}, '"N" value " 1" is not a number'),
    ({"N": "1,5"}, '"N" value "1,5" is not a number'),
    ({"N": "NaN"}, '"N" value "NaN" is not a number'),
    ({"N": "-Infinity"}, '"N" value "-Infinity" is not a number'),
    ({"N": "0x1F"}, '"N" value "0x1F" is not a number'),
    ({"N": "\u0663"}, '"N" value "\u0663" is not a number'),  # an Arabic-Indic 3
    ({"N": "1e200"}, '"N" value "1e200" is out of DynamoDB\'s range'),
    ({"N": "-1E+126"}, '"N" value "-1E+126" is out of DynamoDB\'s range'),
    ({"N": "1E-131"}, '"N" value "1E-131" is out of DynamoDB\'s range'),
    (
        {"N": "1e999999999999999999999"},
        '"N" value "1e999999999999999999999" is out of DynamoDB\'s range',
    ),
    ({"N": "1" * 39}, f'"N" value "{"1" * 36}... has 39 significant digits, more than 38'),
    ({"N": "0.000" + "7" * 39}, f'"N" value "0.000{"7" * 31}... has 39 significant digits'),
    ({"N": 1}, '"N" value must be a string, got a number'),
    ({"S": 1}, '"S" value must be a string, got a number'),
    ({"S": None}, '"S" value must be a string, got null'),
    ({"B": "not base64!"}, '"B" value "not base64!" is not base64'),
    ({"B": "AAA"}, '"B" value "AAA" is not base64'),
    ({"B": "\u00e9t\u00e9"}, '"B" value "\u00e9t\u00e9" is not base64'),
    ({"B": ["AA=="]}, '"B" value must be a base64 string, got a list'),
    ({"BOOL": "true"}, '"BOOL" value must be true or false, got "true"'),
    ({"BOOL": 1}, '"BOOL" value must be true or false, got 1'),
    ({"NULL": False}, '"NULL" value must be true, got false'),
    ({"NULL": None}, '"NULL" value must be true, got null'),
    ({"SS": []}, '"SS" value is an empty set'),
    ({"NS": []}, '"NS" value is an empty set'),
    ({"BS": []}, '"BS" value is an empty set'),
    ({"SS": ["a", "b", "a"]}, '"SS" value holds "a" twice'),
    ({"NS": ["1", "2", "1.0"]}, '"NS" value holds "1.0" twice'),
    ({"NS": ["1E+2", "100"]}, '"NS" value holds "100" twice'),
    ({"BS": ["AA==", "AQ==", "AA=="]}, '"BS" value holds "AA==" twice'),
    ({"SS": "a"}, '"SS" value must be a list, got a string'),
    ({"SS": ["a", 1]}, '"SS" member must be a string, got a number'),
    ({"NS": ["1", "x"]}, '"NS" value "x" is not a number'),
    ({"NS": ["1", 2]}, '"NS" value must be a string, got a number'),
    ({"BS": ["AA==", "?"]}, '"BS" value "?" is not base64'),
    ({"M": []}, '"M" value must be an object, got a list'),
    ({"L": {}}, '"L" value must be a list, got an object'),
    ({}, "expected one type tag, got []"),
    ({"S": "a", "N": "1"}, 'expected one type tag, got ["N","S"]'),
    ({"X": "1"}, 'unknown type tag "X"'),
    ({"s": "1"}, 'unknown type tag "s"'),
    ("x", "expected one type tag, got a string"),
    (None, "expected one type tag, got null"),
    ([{"S": "x"}], "expected one type tag, got a list"),
]

Step = str | int  # a map key, or an index in a list
steps = st.lists(st.one_of(names, st.integers(0, 3)), max_size=4)


def nested(bad: Any, path: list[Step]) -> Any:
    """``bad`` at ``path`` inside good values, each container holding good members too."""
    for step in reversed(path):
        if isinstance(step, int):
            bad = {"L": [{"N": str(i)} for i in range(step)] + [bad, {"S": "after"}]}
        else:
            good = {k: {"BOOL": True} for k in ("", "a", "zz") if k != step}
            bad = {"M": {**good, step: bad}}
    return bad


def path_text(name: str, path: list[Step]) -> str:
    return name + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)


@pytest.mark.parametrize(("bad", "what"), BAD, ids=[repr(b)[:40] for b, _ in BAD])
@settings(max_examples=25)
@given(name=names, path=steps, before=attributes)
@example(name="a", path=[], before={})
@example(name="a", path=["b", 2], before={})
def test_a_bad_value_is_refused_naming_its_path(
    bad: Any, what: str, name: str, path: list[Step], before: dict[str, Any]
) -> None:
    attrs = {**wire({k: v for k, v in before.items() if k != name}), name: nested(bad, path)}
    expected = f"attribute {orjson.dumps(path_text(name, path)).decode()}: {what}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_values(attrs)
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_item(orjson.dumps(attrs), None)


def test_the_example_of_the_docstring() -> None:
    item = b'{"k":{"S":"1"},"a":{"M":{"b":{"L":[{"N":"1"},{"S":"x"},{"N":"abc"}]}}}}'
    with pytest.raises(ValueError) as exc:
        check_item(item, None)
    assert str(exc.value) == 'attribute "a.b[2]": "N" value "abc" is not a number'


def test_the_first_bad_value_is_named() -> None:
    attrs = {"a": {"S": "ok"}, "b": {"L": [{"N": "1"}, {"N": "x"}, {"N": "y"}]}, "c": {"N": "z"}}
    with pytest.raises(ValueError, match=re.escape('"b[1]": "N" value "x"')):
        check_values(attrs)


def test_long_values_and_odd_names_are_shown_cut_and_quoted() -> None:
    with pytest.raises(ValueError) as exc:
        check_values({'a "quoted"\n name': {"M": {"\t": {"N": "9" * 100}}}})
    message = str(exc.value)
    assert message.startswith('attribute "a \\"quoted\\"\\n name.\\t": "N" value "999')
    assert "..." in message and len(message) < 150


@given(attributes)
def test_every_value_dynamodb_accepts_passes(attrs: dict[str, Any]) -> None:
    item = wire(attrs)
    check_values(item)
    assert check_item(orjson.dumps(item), None) == item


def test_the_hostile_corpus_passes() -> None:
    schema = KeySchema(attributes=(("pk", "S"),))
    for item in nasty_items():
        assert check_item(orjson.dumps(wire(item)), schema) == wire(item)


GOOD_NUMBERS = [
    "0",
    "-0",
    "0.0",
    "0E-500",
    "007",
    "+1",
    ".5",
    "1.",
    "-1.5e3",
    "12345678901234567890123456789012345678",
    "-1234567890123456789012345678901234567.8",
    "0.00000000000000000000000000000000000000000001",
    "1" + "0" * 125,  # 1E+125: one significant digit
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "99999999999999999999999999999999999999E+88",
]


@pytest.mark.parametrize("number", GOOD_NUMBERS)
def test_numbers_at_dynamodb_limits_pass(number: str) -> None:
    check_values({"n": {"N": number}, "s": {"NS": [number]}, "l": {"L": [{"N": number}]}})


def dynamodb_accepts(text: str) -> bool:
    """DynamoDB's rule for a number, told independently of the code under test."""
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text):
        return False
    try:
        sign, digits, exponent = Decimal(text).as_tuple()
    except InvalidOperation:
        return False
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).lstrip("0")
    if not significant:
        return True  # zero
    trailing = len(significant) - len(significant.rstrip("0"))
    magnitude = exponent + len(significant) - 1  # of the first significant digit
    return len(significant) - trailing <= 38 and -130 <= magnitude <= 125


@given(st.text("0123456789.+-eE \u0663", max_size=45) | st.from_regex(r"\A-?[0-9]{30,45}\Z"))
@example("1" * 38)
@example("1" * 38 + "0")
@example("0." + "1" * 37)
@example("0." + "1" * 38)
def test_a_number_passes_if_and_only_if_dynamodb_accepts_it(text: str) -> None:
    try:
        check_values({"n": {"N": text}})
    except ValueError:
        assert not dynamodb_accepts(text), text
    else:
        assert dynamodb_accepts(text), text


def test_key_attributes_are_checked_too() -> None:
    schema = KeySchema(attributes=(("pk", "S"), ("sk", "B")))
    check_item(b'{"pk":{"S":"a"},"sk":{"B":"AA=="}}', schema)
    for item, what in [
        (b'{"sk":{"B":"AA=="}}', "key attribute 'pk' is missing"),
        (b'{"pk":{"N":"1"},"sk":{"B":"AA=="}}', "key attribute 'pk' is N, the schema says S"),
        (b'{"pk":{"S":""},"sk":{"B":"AA=="}}', "key attribute 'pk' is empty"),
        (b'{"pk":{"S":"a"},"sk":{"B":""}}', "key attribute 'sk' is empty"),
        (b'{"pk":{"S":"a"},"sk":{"B":"A"}}', 'attribute "sk": "B" value "A" is not base64'),
        (b'{"pk":{"S":"a"},"sk":{"B":"AA=="},"":{"N":"-"}}', 'attribute "": "N" value "-"'),
    ]:
        with pytest.raises(ValueError, match=re.escape(what)):
            check_item(item, schema)
