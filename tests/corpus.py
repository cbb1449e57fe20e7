"""Items that break naive backup tools, a hypothesis strategy for any DynamoDB item, and a
normal form to compare items by value (DynamoDB normalizes numbers; sets have no order)."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

Item = dict[str, Any]


def _n(value: Decimal) -> str:
    return format(value, "f") if -30 < value.adjusted() < 30 else str(value)


# --- hypothesis -------------------------------------------------------------------------------

numbers = st.builds(
    lambda digits, exp, neg: Decimal((neg, tuple(int(c) for c in digits), exp)),
    st.text("0123456789", min_size=1, max_size=38).filter(
        lambda d: d.lstrip("0") != "" or d == "0"
    ),
    st.integers(min_value=-60, max_value=60),
    st.integers(0, 1),
).filter(lambda d: d == 0 or (-129 <= d.adjusted() <= 125))
# dynalite (JavaScript) cannot store an attribute named "__proto__"; DynamoDB can.
names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
).filter(lambda n: n != "__proto__")
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
blobs = st.binary(max_size=40)

scalars = st.one_of(
    texts.map(lambda s: {"S": s}),
    numbers.map(lambda d: {"N": _n(d)}),
    blobs.map(lambda b: {"B": b}),
    st.just({"NULL": True}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.sets(texts, min_size=1, max_size=5).map(lambda s: {"SS": sorted(s)}),
    st.sets(numbers.map(lambda d: d.normalize()), min_size=1, max_size=5).map(
        lambda s: {"NS": [_n(d) for d in sorted(s)]}
    ),
    st.sets(blobs, min_size=1, max_size=5).map(lambda s: {"BS": sorted(s)}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(names, inner, max_size=4).map(lambda m: {"M": m}),
    ),
    max_leaves=12,
)
attributes = st.dictionaries(names.filter(lambda n: n != "pk"), values, max_size=6)


# --- a fixed corpus ---------------------------------------------------------------------------


def nasty_items() -> list[Item]:
    big = "x" * (399 * 1024)  # with its name and key, just under the 400 KB item limit
    return [
        {
            "pk": {"S": "numbers"},
            "n38": {"N": "12345678901234567890123456789012345678"},
            "tiny": {"N": "1E-130"},
            "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
            "neg": {"N": "-0.000000000000000000000000000000000001"},
            "zero": {"N": "0"},
        },
        {
            "pk": {"S": "binary"},
            "b": {"B": bytes(range(256))},
            "deep": {
                "M": {
                    "l": {"L": [{"M": {"b": {"B": b"\x00\xff\x00"}}}, {"BS": [b"\x01", b"\x02"]}]}
                }
            },
            "empty_b": {"B": b""},
        },
        {
            "pk": {"S": "sets"},
            "ss": {"SS": ["a", "b", "ü", ""]},
            "ns": {"NS": ["1", "-1", "1.5"]},
            "bs": {"BS": [b"a", b"\x00"]},
        },
        {
            "pk": {"S": "empty"},
            "s": {"S": ""},
            "l": {"L": []},
            "m": {"M": {}},
            "null": {"NULL": True},
            "t": {"BOOL": True},
            "f": {"BOOL": False},
        },
        {
            "pk": {"S": "unicode ✓ 配達 🦆"},
            "名前": {"S": 'Zürich \u2028 \u0000 "quoted" \\ back'},
            "emoji🦆": {"M": {"κλειδί": {"S": "τιμή"}}},
        },
        {"pk": {"S": "big"}, "payload": {"S": big}},
    ]


# --- comparison -------------------------------------------------------------------------------


def normal(value: Any) -> Any:
    """An attribute value (wire JSON with base64, or boto3's with bytes) in a comparable form."""
    ((tag, v),) = value.items()
    if tag == "N":
        return ("N", Decimal(v).normalize())
    if tag == "B":
        return ("B", _bytes(v))
    if tag == "SS":
        return ("SS", frozenset(v))
    if tag == "NS":
        return ("NS", frozenset(Decimal(x).normalize() for x in v))
    if tag == "BS":
        return ("BS", frozenset(_bytes(x) for x in v))
    if tag == "M":
        return ("M", normal_item(v))
    if tag == "L":
        return ("L", tuple(normal(x) for x in v))
    return (tag, v)


def normal_item(item: Item) -> Any:
    return frozenset((k, normal(v)) for k, v in item.items())


def _bytes(v: Any) -> bytes:
    return bytes(v) if isinstance(v, bytes | bytearray) else base64.b64decode(v)


def same_items(a: list[Item], b: list[Item]) -> bool:
    """Equal as multisets of items, by value."""
    from collections import Counter

    return Counter(map(normal_item, a)) == Counter(map(normal_item, b))
