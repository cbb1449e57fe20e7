"""Deterministic ~1 KB items of every DynamoDB type, and DynamoDB's own size of an item.

Items are built in the wire format (DynamoDB JSON, binary as base64 text). Every item has the
table's key: ``pk`` (S, ``item-0000000042``) and ``sk`` (B, 8 big-endian bytes of the item's
index followed by non-UTF-8 bytes), so keys are unique and binary keys get exercised. The rest of
an item comes from a pool of templates: strings with unicode and JSON escapes, numbers up to 38
digits, binary, the three set types, nested maps and lists with binary inside, NULL and BOOL.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from decimal import Decimal
from functools import cache
from typing import Any

Wire = dict[str, Any]  # one attribute value or item in DynamoDB JSON

TEMPLATES = 1024  # distinct non-key bodies; item g uses template g % TEMPLATES
SK_SUFFIX = b"\xff\x00\xfe"  # not valid UTF-8: a binary key that must stay binary
KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "B"},
]

_WORDS = ["backup", "Zürich", "配達", "🦆", "naïve", "τιμή", "ключ", "\"quoted\"", "back\\slash",
          "tab\there", "line\nbreak", "\u2028", "plain", "ascii", "ß", "日本語"]


# -- keys --------------------------------------------------------------------------------------

def pk_of(index: int) -> str:
    return f"item-{index:010d}"


def sk_of(index: int) -> bytes:
    return struct.pack(">Q", index) + SK_SUFFIX


def index_of_sk(sk: bytes) -> int:
    if len(sk) != 8 + len(SK_SUFFIX) or not sk.endswith(SK_SUFFIX):
        raise ValueError(f"not a bench sort key: {sk!r}")
    return int(struct.unpack(">Q", sk[:8])[0])


def key_json(index: int) -> bytes:
    """The key attributes of item ``index`` as the opening of an item's JSON object."""
    sk = base64.b64encode(sk_of(index))
    return b'{"pk":{"S":"item-%010d"},"sk":{"B":"%s"}' % (index, sk)


KEY_SIZE = len("pk") + len(pk_of(0)) + len("sk") + len(sk_of(0))


# -- templates ---------------------------------------------------------------------------------

def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _number(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return str(rng.randrange(-10**6, 10**6))
    if kind == 1:  # 38 significant digits, the most DynamoDB keeps
        return str(rng.randrange(10**37, 10**38))
    if kind == 2:
        return str(Decimal(rng.randrange(1, 10**12)).scaleb(-rng.randrange(1, 20)))
    return f"-{rng.randrange(1, 10**9)}.{rng.randrange(0, 10**6):06d}"


def _blob(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode()


def _nested(rng: random.Random) -> Wire:
    return {"M": {
        "name": {"S": _text(rng, 3)},
        "count": {"N": _number(rng)},
        "blob": {"B": _blob(rng, rng.randrange(1, 48))},
        "list": {"L": [
            {"B": _blob(rng, rng.randrange(0, 24))},
            {"S": _text(rng, 2)},
            {"N": _number(rng)},
            {"BOOL": rng.random() < 0.5},
            {"NULL": True},
            {"M": {"deep": {"B": _blob(rng, 12)}, "ns": {"NS": ["1", "2.5", "-3"]}}},
        ]},
        "empty": {"M": {}},
    }}


def _template(rng: random.Random) -> Wire:
    item: Wire = {
        "title": {"S": _text(rng, rng.randrange(3, 12))},
        "n_small": {"N": _number(rng)},
        "n_big": {"N": str(rng.randrange(10**37, 10**38))},
        "n_dec": {"N": _number(rng)},
        "blob": {"B": _blob(rng, rng.randrange(16, 160))},
        "tags": {"SS": sorted({_text(rng, 1) + str(i) for i in range(rng.randrange(1, 6))})},
        "scores": {"NS": sorted({str(rng.randrange(-999, 10**9)) for _ in range(4)})},
        "chunks": {"BS": sorted({_blob(rng, rng.randrange(1, 32)) for _ in range(3)})},
        "doc": _nested(rng),
        "history": {"L": [{"S": _text(rng, 2)}, {"N": _number(rng)}, {"B": _blob(rng, 8)}]},
        "gone": {"NULL": True},
        "active": {"BOOL": rng.random() < 0.5},
        "ünïcødé 名前": {"S": _text(rng, 2)},
    }
    target = rng.randrange(700, 1400)
    room = target - KEY_SIZE - item_size(item)
    if room > 16:
        item["payload"] = {"S": "".join(rng.choice("abcdefghij0123456789") for _ in range(room))}
    return item


@cache
def templates() -> tuple[Wire, ...]:
    rng = random.Random(20261122)
    return tuple(_template(rng) for _ in range(TEMPLATES))


@cache
def template_bodies() -> tuple[bytes, ...]:
    """Each template's JSON after the key: ``,"title":...}`` (1 in 8 with ASCII escapes)."""
    out = []
    for i, t in enumerate(templates()):
        text = json.dumps(t, ensure_ascii=i % 8 == 0, separators=(",", ":"))
        out.append(b"," + text[1:].encode())
    return tuple(out)


@cache
def template_sizes() -> tuple[int, ...]:
    """DynamoDB size of each whole item (template + key)."""
    return tuple(KEY_SIZE + item_size(t) for t in templates())


def item_json(index: int) -> bytes:
    return key_json(index) + template_bodies()[index % TEMPLATES]


def item_wire(index: int) -> Wire:
    return {"pk": {"S": pk_of(index)}, "sk": {"B": base64.b64encode(sk_of(index)).decode()},
            **templates()[index % TEMPLATES]}


def to_client(value: Wire) -> Wire:
    """Wire format -> botocore's input format (binary as bytes), for writing with a client."""
    return {name: _client_value(v) for name, v in value.items()}


def _client_value(av: Wire) -> Wire:
    ((tag, val),) = av.items()
    if tag == "B":
        return {"B": base64.b64decode(val)}
    if tag == "BS":
        return {"BS": [base64.b64decode(b) for b in val]}
    if tag == "M":
        return {"M": to_client(val)}
    if tag == "L":
        return {"L": [_client_value(v) for v in val]}
    return {tag: val}


# -- DynamoDB's size of an item (what read capacity pays for) ----------------------------------

def item_size(item: Wire) -> int:
    """Bytes as DynamoDB sizes an item: names + values, per AWS's published rules."""
    return sum(len(name.encode()) + _value_size(v) for name, v in item.items())


def _number_size(text: str) -> int:
    mantissa = text.lower().lstrip("-").split("e")[0].replace(".", "")
    digits = len(mantissa.strip("0")) or 1
    return (digits + 1) // 2 + 1


def _value_size(av: Wire) -> int:
    ((tag, val),) = av.items()
    if tag == "S":
        return len(val.encode())
    if tag == "N":
        return _number_size(val)
    if tag == "B":
        return len(base64.b64decode(val))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(len(s.encode()) for s in val)
    if tag == "NS":
        return sum(_number_size(n) for n in val)
    if tag == "BS":
        return sum(len(base64.b64decode(b)) for b in val)
    if tag == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in val.items())
    if tag == "L":
        return 3 + sum(1 + _value_size(v) for v in val)
    raise ValueError(f"unknown attribute type {tag!r}")


def table_size(items: int) -> int:
    """DynamoDB size of items 0..items-1."""
    sizes = template_sizes()
    full, rest = divmod(items, TEMPLATES)
    return full * sum(sizes) + sum(sizes[:rest])
