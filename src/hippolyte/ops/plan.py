"""Build tonight's plan: the selected tables (or DescribeTable objects from a file), their
history in the repository, the account's limits and ration of decreases -> planning.plan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from hippolyte.adapters import capacity, dynamodb
from hippolyte.adapters.storage import Storage, s3_location
from hippolyte.core import planning
from hippolyte.core.config import Settings, Target
from hippolyte.core.errors import ConfigError, HippolyteError, TableNotFound
from hippolyte.core.model import Json, TableInfo
from hippolyte.core.pipeline_defs import definitions
from hippolyte.core.selection import select
from hippolyte.ops import context
from hippolyte.ops.discover import discover
from hippolyte.repo import catalog, manifest


def _clock(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def plan_settings(
    settings: Settings,
    *,
    at: dt.time | None = None,
    limits: capacity.Limits | None = None,
    used_rcu: int = 0,
) -> planning.PlanSettings:
    p = settings.planning
    limits = limits or capacity.Limits()
    return planning.PlanSettings(
        read_percent=settings.read_percent,
        bytes_per_rcu=p.bytes_per_rcu,
        table_start_s=p.table_start_s,
        pipeline_start_s=p.pipeline_start_s,
        max_tables_per_pipeline=p.max_tables_per_pipeline,
        window_start=at or _clock(p.window_start),
        window_end=_clock(p.window_end),
        on_demand_read_units=settings.on_demand_read_units,
        table_max_rcu=limits.table_max_rcu,
        account_max_rcu=limits.account_max_rcu,
        account_used_rcu=used_rcu,
    )


def history(storage: Storage | None, tables: Sequence[str]) -> dict[str, float]:
    """Measured bytes/s of each table's latest complete backup (table size / duration)."""
    out: dict[str, float] = {}
    if storage is None:
        return out
    for name in tables:
        for ref in reversed(list(catalog.refs(storage, name))):
            if not catalog.is_complete(storage, ref):
                continue
            try:
                doc = catalog.load_descriptor(storage, ref)
            except HippolyteError:
                continue
            size = (doc["table"].get("description") or {}).get("TableSizeBytes") or 0
            secs = doc["backup"].get("durationSeconds") or 0
            if size > 0 and secs > 1:
                out[name] = size / secs
            break
    return out


def used_rcu(tables: Sequence[TableInfo]) -> int:
    """Provisioned RCU the account already uses: tables and their GSIs."""
    total = 0
    for t in tables:
        total += t.read_capacity
        for g in t.description.get("GlobalSecondaryIndexes") or []:
            total += int((g.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits") or 0)
    return total


def decreases_left(tables: Sequence[TableInfo], ps: planning.PlanSettings) -> dict[str, int]:
    return {
        t.name: planning.decreases_left(
            used_today=int(
                (t.description.get("ProvisionedThroughput") or {}).get("NumberOfDecreasesToday")
                or 0
            ),
            settings=ps,
        )
        for t in tables
    }


def plan_target(
    settings: Settings, target: Target, *, storage: Storage | None, at: dt.time | None
) -> tuple[planning.Plan, list[TableInfo]]:
    conn = target.connection()
    decisions = discover(
        conn=conn, rules=settings.selection.rules(), max_attempts=settings.max_attempts
    )
    everything = [d.table for d in decisions]
    control = dynamodb.control_client(conn)
    chosen = [_truly_sized(control, d.table) for d in decisions if d.selected]
    limits = capacity.describe_limits(control)
    ps = plan_settings(settings, at=at, limits=limits, used_rcu=used_rcu(everything))
    result = planning.plan(
        chosen,
        settings=ps,
        history=history(storage, [t.name for t in chosen]),
        decreases_left=decreases_left(chosen, ps),
        exports=exports(settings, control, chosen),
    )
    return result, chosen


def _truly_sized(control: Any, table: TableInfo) -> TableInfo:
    """DynamoDB refreshes TableSizeBytes about every six hours: a table it reports empty is
    looked at with one Scan of one item, so a table filled since is not skipped as empty."""
    if table.size_bytes > 0 or not dynamodb.has_items(control, table.name):
        return table
    return replace(table, size_bytes=max(table.item_count, 1) * 1024)


def exports(settings: Settings, control: Any, tables: Sequence[TableInfo]) -> dict[str, str]:
    """With engine auto or export: the tables DynamoDB exports itself, and why."""
    if settings.engine not in ("auto", "export"):
        return {}
    from hippolyte.engines.export import pitr_enabled

    def exported(name: str) -> bool:
        try:
            return pitr_enabled(control, name)
        except TableNotFound:  # deleted since it was listed: its own backup reports it
            return False

    return {
        t.name: "point-in-time recovery is on: DynamoDB exports it, using no read capacity"
        for t in tables
        if exported(t.name)
    }


def plan_from_descriptions(settings: Settings, path: Path, *, at: dt.time | None) -> planning.Plan:
    """Offline what-if planning from a JSON array of DescribeTable ``Table`` objects."""
    try:
        docs = orjson.loads(path.read_bytes())
        tables = [TableInfo.from_description(d) for d in docs]
    except FileNotFoundError:
        raise ConfigError(f"--from-descriptions: {path} does not exist") from None
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"--from-descriptions: {path} is not a JSON array of DescribeTable "
            f"Table objects ({exc!r})"
        ) from None
    chosen = [s.table for s in select(tables, settings.selection.rules()) if s.selected]
    ps = plan_settings(settings, at=at, used_rcu=used_rcu(tables))
    return planning.plan(chosen, settings=ps, decreases_left=decreases_left(chosen, ps))


def pipeline_definitions(settings: Settings, doc: Json, *, bucket: str | None) -> list[Json]:
    """AWS Data Pipeline definitions of a plan (``plan --format datapipeline``): into
    ``bucket``, else into the repository's bucket and prefix."""
    prefix = ""
    if not bucket:
        bucket, prefix = s3_location(settings.repository) or (None, "")
    if not bucket:
        raise ConfigError("--format datapipeline needs --bucket or an s3:// repository")
    stamp = manifest.backup_id(dt.datetime.now(dt.UTC))
    return definitions(
        doc, bucket=bucket, prefix=prefix, timestamp=stamp, region=context.region_of(settings)
    )
