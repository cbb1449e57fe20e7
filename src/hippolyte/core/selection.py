"""Which tables a run backs up, and why the others are left out. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hippolyte.core.model import Selected, TableInfo


@dataclass(frozen=True, kw_only=True)
class Rules:
    """Patterns are regular expressions matched from the start of the table name (as the
    original's ``exclude_from_backup``); end one with ``$`` to match a whole name."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    always_backup: Sequence[str] = ()
    required_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def needs_tags(self) -> bool:
        return bool(self.required_tags)


def decide(table: TableInfo, rules: Rules) -> Selected:
    name = table.name
    if name in rules.always_backup:
        return Selected(table=table, selected=True, reason="listed in always_backup")
    if rules.include and not any(re.match(p, name) for p in rules.include):
        return Selected(table=table, selected=False, reason="matches no include pattern")
    for pattern in rules.exclude:
        if re.match(pattern, name):
            return Selected(
                table=table, selected=False, reason=f"matches exclude pattern {pattern!r}"
            )
    for key, want in rules.required_tags.items():
        have = table.tags.get(key)
        if have is None:
            return Selected(table=table, selected=False, reason=f"has no tag {key!r}")
        if want not in ("*", have):
            return Selected(
                table=table, selected=False, reason=f"tag {key!r} is {have!r}, not {want!r}"
            )
    if table.status not in ("ACTIVE", "UPDATING"):
        return Selected(table=table, selected=False, reason=f"table status is {table.status}")
    return Selected(table=table, selected=True, reason="selected by the rules")


def select(tables: Iterable[TableInfo], rules: Rules) -> list[Selected]:
    return [decide(t, rules) for t in sorted(tables, key=lambda t: t.name)]
