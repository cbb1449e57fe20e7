"""An order-independent digest of a set of items, to prove a restore. Pure.

Each item is put in a canonical form (attributes sorted at every depth, the members of SS,
NS and BS sorted, numbers normalized) and hashed with sha256; the digest is the sum of the
hashes modulo 2**256, so it is independent of order but counts duplicates, and two sides can
be folded in parallel and combined.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

_MOD = 1 << 256
_SET_MARKERS = (b'"SS":', b'"NS":', b'"BS":', b'"N":')


@dataclass
class Digest:
    count: int = 0
    value: int = 0

    def add(self, item: bytes) -> None:
        self.count += 1
        self.value = (self.value + item_hash(item)) % _MOD

    def merge(self, other: Digest) -> None:
        self.count += other.count
        self.value = (self.value + other.value) % _MOD

    @property
    def hex(self) -> str:
        return f"{self.value:064x}"


def item_hash(item: bytes) -> int:
    doc = orjson.loads(item)
    if any(m in item for m in _SET_MARKERS):
        doc = {k: _canonical(v) for k, v in doc.items()}
    canon = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.sha256(canon).digest(), "big")


def _canonical(value: dict[str, Any]) -> dict[str, Any]:
    ((tag, v),) = value.items()
    if tag == "N":
        return {"N": _number(v)}
    if tag in ("SS", "BS"):
        return {tag: sorted(v)}
    if tag == "NS":
        return {"NS": sorted(_number(x) for x in v)}
    if tag == "M":
        return {"M": {k: _canonical(x) for k, x in v.items()}}
    if tag == "L":
        return {"L": [_canonical(x) for x in v]}
    return value


def _number(text: str) -> str:
    try:
        d = Decimal(text).normalize()
    except InvalidOperation:
        return text
    return "0" if d.is_zero() else str(d)
