"""An order-independent digest of a set of items, to prove a restore. Pure.

Each item is put in a canonical form (attributes sorted at every depth, the members of SS,
NS and BS sorted, numbers in plain notation without superfluous zeros) and hashed with
sha256; the digest is the sum of the hashes modulo 2**256, so it is independent of order but
counts duplicates, and two sides can be folded in parallel and combined.
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


def digest_of(items: list[bytes]) -> Digest:
    d = Digest()
    for item in items:
        d.add(item)
    return d


def item_hash(item: bytes) -> int:
    doc = orjson.loads(item)
    if any(m in item for m in _SET_MARKERS):
        _canonical_attrs(doc)
    canon = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.sha256(canon).digest(), "big")


def _canonical_attrs(attrs: dict[str, Any]) -> None:
    """In place (the document was just parsed for this): numbers and set members."""
    for value in attrs.values():
        _canonical(value)


def _canonical(value: dict[str, Any]) -> None:
    for tag, v in value.items():  # exactly one
        if tag == "N":
            value["N"] = number_text(v)
        elif tag == "SS" or tag == "BS":
            v.sort()
        elif tag == "NS":
            value["NS"] = sorted(map(number_text, v))
        elif tag == "M":
            _canonical_attrs(v)
        elif tag == "L":
            for x in v:
                _canonical(x)


def number_text(text: str) -> str:
    """One spelling per value, in plain notation: "1.50", "+1.5" and "15E-1" are all "1.5"."""
    if "e" in text or "E" in text:
        try:
            text = format(Decimal(text), "f")
        except InvalidOperation:
            return text
    sign = text[:1]
    if sign in ("-", "+"):
        text = text[1:]
    whole, _, fraction = text.partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    plain = f"{whole}.{fraction}" if fraction else whole
    return "-" + plain if sign == "-" and plain != "0" else plain
