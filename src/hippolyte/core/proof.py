"""An order-independent digest of a set of items, to prove a restore. Pure.

Each item is put in a canonical form (attributes sorted at every depth, the distinct members
of SS, NS and BS sorted, numbers in plain notation without superfluous zeros) and hashed with
sha256; the digest is the sum of the hashes modulo 2**256, so it is independent of order but
counts duplicates, and two sides can be folded in parallel and combined.

The restore's check pass, which walks every value of every item to check it anyway, puts each
item in canonical form in that same walk (``formats.base.check_item(canonical=True)``): its
digest then costs a sorted dump and a sha256 (``Digest.add_canonical``). A scanned item is
put in canonical form by ``canonical_json``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import orjson
from msgspec import UNSET, UnsetType

_MOD = 1 << 256


@dataclass
class Digest:
    count: int = 0
    value: int = 0

    def add(self, item: bytes) -> None:
        self.count += 1
        self.value = (self.value + item_hash(item)) % _MOD

    def add_all(self, items: Sequence[bytes | msgspec.Raw]) -> None:
        total = self.value
        for item in items:
            total += int.from_bytes(_sha256(canonical_json(item)).digest(), "big")
        self.count += len(items)
        self.value = total % _MOD

    def add_canonical(self, doc: dict[str, Any]) -> None:
        """An item decoded and put in canonical form (``canonical_item_hash``)."""
        self.count += 1
        self.value = (self.value + canonical_item_hash(doc)) % _MOD

    def merge(self, other: Digest) -> None:
        self.count += other.count
        self.value = (self.value + other.value) % _MOD

    @property
    def hex(self) -> str:
        return f"{self.value:064x}"

    @classmethod
    def from_hex(cls, *, count: int, hex: str) -> Digest:
        return cls(count=count, value=int(hex, 16) % _MOD)


_sha256 = hashlib.sha256


def digest_of(items: Sequence[bytes | msgspec.Raw]) -> Digest:
    d = Digest()
    d.add_all(items)
    return d


def item_hash(item: bytes) -> int:
    return int.from_bytes(_sha256(canonical_json(item)).digest(), "big")


def digest_of_answer(answer: bytes) -> Digest:
    """The digest of the items a DynamoDB answer (Scan, Query) lists under "Items", each cut
    out as it was sent (its other fields are passed over)."""
    return digest_of(_decode_answer(answer).Items)


class _Answer(msgspec.Struct):
    Items: list[msgspec.Raw]


def canonical_json(item: bytes | msgspec.Raw) -> bytes:
    """An item's DynamoDB JSON in canonical form: compact, keys sorted at every depth, every
    string as orjson encodes it, set members sorted, numbers as ``number_text`` writes them.

    msgspec decodes the item into typed values (``_Value``: each tag typed, sets as
    frozensets) and encodes it with keys, struct fields and set members sorted, all in C; then
    only numbers not canonical yet are respelled, found in the encoded bytes, where (the item
    being DynamoDB JSON: a name's value is an object, a string's quotes are escaped) ``"N":"``
    can only start a number. What the types do not take (not DynamoDB JSON, a null, a number
    that is no string) and an NS member to respell go through the walk (``_walked``): the same
    bytes (tests/test_proof_paths.py). Per item of the restore bench's shape (sets, maps and
    lists in each): 15.8 us against the walk's 17.1 when every number is canonical (as
    DynamoDB returns them), 17.5 against 18.3 when a third of the items hold one to respell."""
    try:
        doc = _decode_item(item)
    except msgspec.DecodeError:  # (a ValidationError too)
        return _walked(orjson.loads(bytes(item)))
    return _canonical_encoded(doc)


def _canonical_encoded(doc: dict[str, _Value]) -> bytes:
    canon = _encode_sorted(doc)
    odd = _ODD_NUMBER.search(canon)
    # (the walk of the encoded item is the walk of the item: the same values, sets distinct)
    return canon if odd is None else _respelled(canon, odd) or _walked(orjson.loads(canon))


class _Value(msgspec.Struct, forbid_unknown_fields=True):
    """A DynamoDB attribute value as msgspec decodes it: a tag absent is UNSET (never encoded),
    a null or a value of another type is refused (the walk takes such an item)."""

    S: str | UnsetType = UNSET
    N: str | UnsetType = UNSET
    B: str | UnsetType = UNSET
    BOOL: bool | UnsetType = UNSET
    NULL: bool | UnsetType = UNSET
    M: dict[str, _Value] | UnsetType = UNSET
    L: list[_Value] | UnsetType = UNSET
    SS: frozenset[str] | UnsetType = UNSET  # (a member twice counts once, as in the walk;
    NS: frozenset[str] | UnsetType = UNSET  # DynamoDB and the check pass refuse duplicates)
    BS: frozenset[str] | UnsetType = UNSET


_decode_item = msgspec.json.Decoder(dict[str, _Value]).decode
_decode_answer = msgspec.json.Decoder(_Answer).decode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def canonical_item_hash(doc: dict[str, Any]) -> int:
    """``item_hash`` of an item already decoded and in canonical form but for the order of its
    keys (numbers respelled, sets sorted), as ``formats.base.check_item(canonical=True)``
    leaves it: a sorted dump, hashed."""
    return int.from_bytes(_sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).digest(), "big")


def _respelled(canon: bytes, odd: re.Match[bytes]) -> bytes | None:
    """``canon`` (in which ``odd`` is the first number not canonical) with each N written as
    number_text writes it, in one more pass over what follows; None if an NS member needs it
    too (its set is to be sorted again) or a number holds an escape: the walk takes those."""
    parts: list[bytes] = []
    done = 0
    for match in _ODD_NUMBER.finditer(canon, odd.start()):
        start = match.end()  # (just past the number's opening quote)
        end = canon.index(b'"', start)
        text = canon[start:end]
        if match[0].startswith(b'"NS') or b"\\" in text:
            return None
        parts += (canon[done:start], number_text(text.decode()).encode())
        done = end
    parts.append(canon[done:])
    return b"".join(parts)


# A canonical number, what number_text writes (possessive, so that a number is read once: the
# search over every item costs half the backtracking form's); an N or an NS member not one.
_NUMBER = rb"(?:0|-?+(?:[1-9][0-9]*+(?:\.[0-9]++(?<!0))?+|0\.[0-9]++(?<!0)))"
_is_canonical_number = re.compile(_NUMBER.decode()).fullmatch
_ODD_NUMBER = re.compile(rb'"N(?:S":\[(?:"' + _NUMBER + rb'",)*+|":)"(?!' + _NUMBER + rb'")')


def reference_canonical_json(item: bytes) -> bytes:
    """The canonical form by its definition, a walk over every value of the parsed item: what
    ``canonical_json`` must equal, slower (the tests and bench/bench_restore.py compare them)."""
    return _walked(orjson.loads(item))


def _walked(doc: dict[str, Any]) -> bytes:
    _canonical_values(doc.values())
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _canonical_values(values: Iterable[dict[str, Any]]) -> None:
    """In place (the document was just parsed for this): numbers respelled, set members sorted.
    A value has one tag; the commonest, S and B, are passed over with a lookup each and no call
    (a quarter less CPU than a call per value on the restore bench's items)."""
    for value in values:
        if len(value) != 1:  # not DynamoDB JSON: each tag, as the definition walks it
            _canonical_tags(value)
        elif "S" in value or "B" in value:
            continue
        elif (v := value.get("N")) is not None:
            if _is_canonical_number(v) is None:  # (number_text would return it as it is)
                value["N"] = number_text(v)
        elif (v := value.get("M")) is not None:
            _canonical_values(v.values())
        elif (v := value.get("L")) is not None:
            _canonical_values(v)
        elif (v := value.get("SS")) is not None:
            value["SS"] = sorted(set(v))
        elif (v := value.get("BS")) is not None:
            value["BS"] = sorted(set(v))
        elif (v := value.get("NS")) is not None:
            plain = all(map(_is_canonical_number, v))
            value["NS"] = sorted(set(v if plain else map(number_text, v)))


def _canonical_tags(value: dict[str, Any]) -> None:
    for tag, v in list(value.items()):
        one = {tag: v}
        _canonical_values((one,))
        value[tag] = one[tag]


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
