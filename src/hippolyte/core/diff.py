"""Comparing two sets of items, DynamoDB's way. Pure.

Items are matched by their primary key and compared as DynamoDB compares values: attribute
order and the order of a set's members do not matter, numbers compare as numbers (``1.50``
equals ``1.5``, 38 digits exact), binary by its bytes. Items whose bytes are equal are equal
without being parsed (the common case); the others are normalized and compared.

A difference is written as one JSON line (docs/design.md, "The diff file"):
``{"kind": "deleted"|"added"|"changed", "key": {...}, "before": {...}|null,
"after": {...}|null, "attributes": [...]}``, items exactly as read; the last line is
``{"summary": {...}}``.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import orjson

from hippolyte.core.proof import number_text


class Kind(StrEnum):
    DELETED = "deleted"  # in the first side (the backup) only
    ADDED = "added"  # in the second side (live, or the second backup) only
    CHANGED = "changed"


Key = tuple[tuple[str, str], ...]  # (name, S|N|B): the partition key, then the sort key


def key_of(item: Any, key: Key) -> bytes:
    """The key of a parsed item in one canonical spelling (numbers in plain notation, binary
    re-encoded from its bytes): equal keys, equal bytes. ValueError when the item lacks a key
    attribute or has it of another type."""
    texts: list[Any] = []
    for name, kind in key:
        value = item.get(name)
        if not isinstance(value, dict) or kind not in value:
            got = "missing" if value is None else f"of type {next(iter(value), '?')}"
            raise ValueError(f"key attribute {name!r} is {got}, the key schema says {kind}")
        texts.append(key_text(kind, value[kind]))
    return orjson.dumps(texts)


def key_text(kind: str, text: Any) -> Any:
    """One key attribute's value (``"42"`` for ``{"N": "42"}``) in its canonical spelling."""
    if kind == "N":
        return number_text(text)
    if kind == "B":
        return binascii.b2a_base64(_bytes(text), newline=False).decode()
    return text


def key_json(item: Any, key: Key) -> bytes:
    """The item's key attributes in DynamoDB JSON, values as read."""
    return orjson.dumps({name: item[name] for name, _ in key})


def partitions_of(keys: Iterable[bytes], partitions: int, *, divisor: int = 1) -> list[int]:
    """Which of ``partitions`` files each key is spilled to: ``crc32(key) mod partitions``; a
    partition split again uses the hash's next digits (``divisor``: the product of the
    partition counts above it)."""
    crc32 = zlib.crc32
    return [crc32(key) // divisor % partitions for key in keys]


def differing(before: bytes, after: bytes) -> list[str] | None:
    """None when the two items are equal the way DynamoDB compares values; else the names
    of the attributes that differ (present on one side only, or with another value), sorted."""
    if before == after:
        return None
    a, b = orjson.loads(before), orjson.loads(after)
    names = sorted(
        name
        for name in a.keys() | b.keys()
        if name not in a or name not in b or normal(a[name]) != normal(b[name])
    )
    return names or None


def normal(value: Any) -> Any:
    """A DynamoDB attribute value as a Python value with DynamoDB's equality."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"not a DynamoDB value: {value!r}")
    ((tag, v),) = value.items()
    if tag == "N":
        return tag, _decimal(v)
    if tag == "NS":
        return tag, frozenset(_decimal(x) for x in v)
    if tag == "SS":
        return tag, frozenset(v)
    if tag == "B":
        return tag, _bytes(v)
    if tag == "BS":
        return tag, frozenset(_bytes(x) for x in v)
    if tag == "M":
        return tag, {k: normal(x) for k, x in v.items()}
    if tag == "L":
        return tag, [normal(x) for x in v]
    return tag, v  # S, BOOL, NULL


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None


def _bytes(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)  # base64.b64decode(validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not base64: {text[:40]!r}") from None


# -- the diff file --------------------------------------------------------------------------


@dataclass
class Summary:
    before: str  # what the first side is (a backup's location)
    after: str  # the second side (a backup, or "live table T")
    before_items: int = 0
    after_items: int = 0
    deleted: int = 0
    added: int = 0
    changed: int = 0
    identical: int = 0
    attributes: dict[str, int] = field(default_factory=dict)  # changed items per attribute

    @property
    def differences(self) -> int:
        return self.deleted + self.added + self.changed

    def count(self, kind: Kind, attributes: Sequence[str] = ()) -> None:
        if kind == Kind.DELETED:
            self.deleted += 1
        elif kind == Kind.ADDED:
            self.added += 1
        else:
            self.changed += 1
            for name in attributes:
                self.attributes[name] = self.attributes.get(name, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "before": {"source": self.before, "items": self.before_items},
            "after": {"source": self.after, "items": self.after_items},
            "deleted": self.deleted,
            "added": self.added,
            "changed": self.changed,
            "identical": self.identical,
            "changedAttributes": dict(sorted(self.attributes.items())),
        }


def difference_line(
    kind: Kind,
    *,
    key: bytes,
    before: bytes | None,
    after: bytes | None,
    attributes: Sequence[str] = (),
    keys_only: bool = False,
) -> bytes:
    """One line of the diff file; ``before``/``after`` are the items' bytes as read."""
    out = [b'{"kind":"', kind.value.encode(), b'","key":', key]
    if not keys_only:
        out += [b',"before":', before or b"null", b',"after":', after or b"null"]
    out += [b',"attributes":', orjson.dumps(list(attributes)), b"}\n"]
    return b"".join(out)


def summary_line(summary: Summary) -> bytes:
    return orjson.dumps({"summary": summary.to_json()}) + b"\n"
