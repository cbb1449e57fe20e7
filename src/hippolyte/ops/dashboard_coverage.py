"""The dashboard's coverage: the account's tables, selected or not and why, when the
dashboard has a connection (``serve``; ``hippolyte dashboard --discover``); otherwise what the
repository knows of the tables it does not hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hippolyte.adapters import dynamodb
from hippolyte.core.config import Settings
from hippolyte.core.errors import HippolyteError
from hippolyte.core.model import Json, Selected


@dataclass(kw_only=True)
class Discovered:
    """The account's tables per target label (``serve`` has a connection), and what failed."""

    tables: dict[str, list[Selected]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    clients: dict[str, Any] = field(default_factory=dict)  # label -> DynamoDB control client
    empty: dict[tuple[str, str], bool] = field(default_factory=dict)  # what is_empty found

    def is_empty(self, label: str, table: str) -> bool:
        """Whether a selected table without a backup holds nothing (so is not late): one
        Scan of one item, remembered as long as this discovery is."""
        if (label, table) not in self.empty:
            try:
                found = dynamodb.has_items(self.clients[label], table)
            except (HippolyteError, KeyError):
                found = True  # cannot tell: judged as any table without a backup
            self.empty[(label, table)] = not found
        return self.empty[(label, table)]


def discover_all(settings: Settings) -> Discovered:
    """Every target's tables, selected or not, with the reasons: ListTables and DescribeTable
    per table (``serve`` caches the answer)."""
    from hippolyte.ops.discover import discover

    out = Discovered()
    for target in settings.effective_targets():
        out.clients[target.label] = dynamodb.control_client(target.connection())
        try:
            out.tables[target.label] = discover(
                conn=target.connection(),
                rules=settings.selection.rules(),
                max_attempts=settings.max_attempts,
            )
        except HippolyteError as exc:
            out.errors.append(f"cannot list the tables of {target.label}: {exc}")
    return out


def known_uncovered(doc: Mapping[str, Any]) -> list[Json]:
    """Without a connection, what the repository knows: tables the newest plan skipped, and
    tables of the shown runs that failed and have no committed backup."""
    backed = {t["table"] for t in doc["tables"] if t["lastBackup"] is not None}
    found: dict[str, Json] = {}
    plan = doc.get("plan")
    for s in (plan or {}).get("plan", {}).get("skipped") or []:
        found.setdefault(s["table"], {"table": s["table"], "reason": f"skipped: {s['reason']}"})
    for run in doc["runs"]:
        for f in run["failed"]:
            if f["table"] not in backed:
                reason = f"failed in run {run['id']}: {f['error']}"
                found.setdefault(f["table"], {"table": f["table"], "reason": reason})
    return [found[name] for name in sorted(found)]
