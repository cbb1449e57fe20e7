"""Putting items back into a live table: what to do with each key, and the condition that makes
each write safe. Pure.

A recovery is a list of ``Action``s, one per key: the item to put back (``target``, the
backup's; ``None`` to delete the key) and the item as the recovery saw it live (``seen``,
``None`` when absent). Every write is conditional on the item still being ``seen``, so an item
the application changed in between is never overwritten: ``condition_for`` builds that
condition, either on each top-level attribute (``#a = :v``, DynamoDB compares maps, lists and
sets by value) or, where a server cannot compare a map or a list, on each leaf of the item by
its document path plus the size and type of every map and list.

Conditions cannot name an attribute the recovery never saw: an attribute *added* since the
read is not detected unless the table has a version attribute (``--version-attribute``),
which is then the whole condition.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from hippolyte.core.diff import Key, Kind, differing, key_json, key_of

RECORD_FORMAT = "hippolyte-recovery/1"
ACTION_FORMAT = "hippolyte-recovery-actions/1"
MAX_EXPRESSION_BYTES = 4096  # DynamoDB: the longest expression string
MAX_OPERATORS = 300  # DynamoDB: comparators, functions and AND in one expression
ID_FORMAT = "%Y-%m-%d-%H-%M-%S"


class Outcome(StrEnum):
    PUT_BACK = "put_back"  # written as in the backup
    DELETED = "deleted"  # deleted (it was added since the backup)
    ALREADY = "already"  # found as in the backup already (a resumed run, or someone else)
    CHANGED_SINCE = "changed_since"  # the application changed it after the recovery read it
    UNCHECKABLE = "uncheckable"  # no condition can be expressed for it (see the reason)


SKIPPED = frozenset({Outcome.CHANGED_SINCE, Outcome.UNCHECKABLE})


@dataclass(frozen=True, kw_only=True)
class Action:
    key: bytes  # DynamoDB JSON of the key attributes
    target: bytes | None  # the item to put back; None: delete the key
    seen: bytes | None  # the live item as read before writing; None: absent

    @property
    def verb(self) -> str:
        return "put" if self.target is not None else "delete"

    def line(self) -> bytes:
        """One line of a recovery's actions file (docs/design.md, "Recoveries")."""
        return b"".join(
            [
                b'{"key":',
                self.key,
                b',"seen":',
                self.seen or b"null",
                b',"target":',
                self.target or b"null",
                b"}\n",
            ]
        )

    def undone(self) -> Action:
        """The action that puts the key back as the recovery found it."""
        return Action(key=self.key, target=self.seen, seen=self.target)


def parse_action(line: bytes, *, where: str) -> Action:
    try:
        doc = orjson.loads(line)
        key, seen, target = doc["key"], doc["seen"], doc["target"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: not a recovery action ({exc})") from None
    return Action(
        key=orjson.dumps(key),
        seen=None if seen is None else orjson.dumps(seen),
        target=None if target is None else orjson.dumps(target),
    )


def needed(target: bytes | None, seen: bytes | None) -> bool:
    """Whether the live item differs from the state to put back."""
    if target is None or seen is None:
        return target is not seen
    return target != seen and differing(target, seen) is not None


def recovery_id(at: dt.datetime, token: str | None = None) -> str:
    """``YYYY-MM-dd-HH-mm-ss-xxxx``: sorts by time; the suffix keeps two in one second apart."""
    return f"{at.astimezone(dt.UTC).strftime(ID_FORMAT)}-{token or secrets.token_hex(2)}"


def is_recovery_id(value: str) -> bool:
    head, _, token = value.rpartition("-")
    try:
        dt.datetime.strptime(head, ID_FORMAT)
    except ValueError:
        return False
    return len(token) == 4 and all(c in "0123456789abcdef" for c in token)


# -- what to recover ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DiffEntry:
    kind: Kind
    key: bytes
    before: bytes | None  # the backup's item
    after: bytes | None  # the live item, when the diff was made


def parse_diff_file(
    lines: Iterable[bytes], *, where: str
) -> tuple[list[DiffEntry], dict[str, Any]]:
    """A diff file's differences and its summary; ValueError naming the line otherwise."""
    held = list(lines)
    summary = diff_summary(held, where=where)
    return list(diff_entries(held, where=where)), summary


def diff_summary(lines: Iterable[bytes], *, where: str) -> dict[str, Any]:
    """Read a whole diff file, checking every line; its summary (the last line)."""
    summary: dict[str, Any] | None = None
    n = 0
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if summary is not None:
            raise ValueError(f"{where} line {n}: a difference after the summary line")
        doc = _object(line, where=f"{where} line {n}")
        if "summary" in doc:
            if not isinstance(doc["summary"], dict):
                raise ValueError(f"{where} line {n}: the summary is not an object")
            summary = doc["summary"]
            continue
        _diff_entry(doc, where=f"{where} line {n}")
    if summary is None:
        raise ValueError(
            f"{where}: no summary line after {n} lines (not a diff file, or a cut one)"
        )
    return summary


def diff_entries(lines: Iterable[bytes], *, where: str) -> Iterator[DiffEntry]:
    """The differences of a diff file, one at a time (``diff_summary`` checked it first)."""
    for n, line in enumerate(lines, start=1):
        if line.strip():
            doc = _object(line, where=f"{where} line {n}")
            if "summary" not in doc:
                yield _diff_entry(doc, where=f"{where} line {n}")


def _object(line: bytes, *, where: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not a JSON object")
    return doc


def _diff_entry(doc: dict[str, Any], *, where: str) -> DiffEntry:
    try:
        kind = Kind(str(doc.get("kind")))
    except ValueError:
        raise ValueError(f'{where}: "kind" must be deleted, added or changed') from None
    key = doc.get("key")
    if not isinstance(key, dict) or not key:
        raise ValueError(f'{where}: "key" must be an object of key attributes')
    if "before" not in doc or "after" not in doc:
        raise ValueError(
            f"{where}: no items before and after (a --keys-only diff): "
            "make the diff without --keys-only, or pass its keys with --keys"
        )
    before, after = doc["before"], doc["after"]
    wanted = {
        Kind.DELETED: (True, False),
        Kind.ADDED: (False, True),
        Kind.CHANGED: (True, True),
    }[kind]
    if (before is not None, after is not None) != wanted or not all(
        isinstance(v, dict) for v in (before, after) if v is not None
    ):
        raise ValueError(f"{where}: a {kind.value} difference with the wrong items before/after")
    return DiffEntry(
        kind=kind,
        key=orjson.dumps(key),
        before=None if before is None else orjson.dumps(before),
        after=None if after is None else orjson.dumps(after),
    )


def check_diff_summary(summary: dict[str, Any], *, backup: str, table: str, where: str) -> None:
    """A diff file must have been made of this backup against this live table."""
    source = (summary.get("before") or {}).get("source")
    against = (summary.get("after") or {}).get("source")
    if source != backup:
        raise ValueError(f"{where} was made from {source!r}, not from {backup!r}")
    if against != f"live table {table}":
        raise ValueError(f"{where} compares with {against!r}, not with live table {table!r}")


def actions_from_diff(entries: Iterable[DiffEntry], *, delete_added: bool) -> Iterator[Action]:
    """What the recovery saw is the diff's ``after``."""
    for e in entries:
        if e.kind != Kind.ADDED or delete_added:
            yield Action(key=e.key, target=e.before, seen=e.after)


def parse_key_line(line: bytes, spec: Key, *, where: str) -> bytes:
    """One line of a --keys file: the key attributes in DynamoDB JSON; its canonical key."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not a JSON object of key attributes")
    extra = sorted(set(doc) - {name for name, _ in spec})
    if extra:
        raise ValueError(f"{where}: {extra[0]!r} is not a key attribute of the table")
    try:
        return key_of(doc, spec)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def action_for(
    *, spec: Key, target: bytes | None, seen: bytes | None, delete_added: bool
) -> Action | None:
    """The action for one key, or None when there is nothing to do."""
    if target is None and not delete_added:
        return None
    if not needed(target, seen):
        return None
    item = orjson.loads(target if target is not None else seen or b"{}")
    return Action(key=key_json(item, spec), target=target, seen=seen)


# -- the condition of one write ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Condition:
    expression: str
    names: dict[str, str]
    values: dict[str, Any]  # DynamoDB JSON


class Uncheckable(ValueError):
    """No condition within DynamoDB's limits can say the item is unchanged."""


def condition_for(
    seen: bytes | None, *, spec: Key, version_attribute: str | None = None, flat: bool = False
) -> Condition:
    """The condition that the item is still ``seen``: absent -> the key attribute does not
    exist; else equality of every attribute (or of ``version_attribute`` alone, when the item
    has it). ``flat``: compare leaves by path (for servers that cannot compare a map or list).
    Raises Uncheckable when the condition would exceed DynamoDB's expression limits."""
    builder = _Builder()
    if seen is None:
        builder.terms.append(f"attribute_not_exists({builder.name(spec[0][0])})")
        return builder.condition()
    item: dict[str, Any] = orjson.loads(seen)
    if version_attribute and version_attribute in item:
        names = [version_attribute]
    else:
        names = sorted(item)
    for name in names:
        path = builder.name(name)
        if flat:
            builder.leaves(path, item[name])
        else:
            builder.equal(path, item[name])
    return builder.condition()


@dataclass
class _Builder:
    terms: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    _by_name: dict[str, str] = field(default_factory=dict)

    def name(self, name: str) -> str:
        if name not in self._by_name:
            self._by_name[name] = f"#n{len(self._by_name)}"
            self.names[self._by_name[name]] = name
        return self._by_name[name]

    def value(self, value: Any) -> str:
        ref = f":v{len(self.values)}"
        self.values[ref] = value
        return ref

    def equal(self, path: str, value: Any) -> None:
        self.terms.append(f"{path} = {self.value(value)}")

    def leaves(self, path: str, value: Any) -> None:
        ((tag, inner),) = value.items()
        if tag == "M":
            self._container(path, "M", len(inner))
            for member in sorted(inner):
                self.leaves(f"{path}.{self.name(member)}", inner[member])
        elif tag == "L":
            self._container(path, "L", len(inner))
            for i, member in enumerate(inner):
                self.leaves(f"{path}[{i}]", member)
        else:
            self.equal(path, value)

    def _container(self, path: str, tag: str, size: int) -> None:
        self.terms.append(f"attribute_type({path}, {self.value({'S': tag})})")
        self.terms.append(f"size({path}) = {self.value({'N': str(size)})}")

    def condition(self) -> Condition:
        expression = " AND ".join(self.terms)
        operators = 2 * len(self.terms) - 1
        if operators > MAX_OPERATORS or len(expression.encode()) > MAX_EXPRESSION_BYTES:
            raise Uncheckable(
                f"checking that it is unchanged takes {len(self.terms)} comparisons, more than "
                f"one DynamoDB condition holds ({MAX_OPERATORS} operators, "
                f"{MAX_EXPRESSION_BYTES} bytes): give --version-attribute, or --force"
            )
        return Condition(expression=expression, names=self.names, values=self.values)


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Skipped:
    key: bytes
    outcome: Outcome
    reason: str
    seen: bytes | None = None  # what the recovery saw
    current: bytes | None = None  # what the table holds now

    def to_json(self) -> dict[str, Any]:
        return {
            "key": orjson.loads(self.key),
            "outcome": self.outcome.value,
            "reason": self.reason,
            "seen": None if self.seen is None else orjson.loads(self.seen),
            "current": None if self.current is None else orjson.loads(self.current),
        }


@dataclass(kw_only=True)
class Tally:
    put_back: int = 0
    deleted: int = 0
    already: int = 0
    forced: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        if outcome == Outcome.PUT_BACK:
            self.put_back += 1
        elif outcome == Outcome.DELETED:
            self.deleted += 1
        elif outcome == Outcome.ALREADY:
            self.already += 1

    def merge(self, other: Tally) -> None:
        self.put_back += other.put_back
        self.deleted += other.deleted
        self.already += other.already
        self.forced += other.forced
        self.skipped += other.skipped

    def to_json(self) -> dict[str, Any]:
        return {
            "put_back": self.put_back,
            "deleted": self.deleted,
            "already": self.already,
            "forced": self.forced,
            "skipped": len(self.skipped),
            "skipped_items": [s.to_json() for s in self.skipped],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Tally:
        return cls(
            put_back=int(doc.get("put_back", 0)),
            deleted=int(doc.get("deleted", 0)),
            already=int(doc.get("already", 0)),
            forced=int(doc.get("forced", 0)),
            skipped=[
                Skipped(
                    key=orjson.dumps(s["key"]),
                    outcome=Outcome(s["outcome"]),
                    reason=str(s["reason"]),
                    seen=None if s.get("seen") is None else orjson.dumps(s["seen"]),
                    current=None if s.get("current") is None else orjson.dumps(s["current"]),
                )
                for s in doc.get("skipped_items", [])
            ],
        )
