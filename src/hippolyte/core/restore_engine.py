"""Which engine a restore uses, why, and what each would cost. Pure.

``load`` writes the backup's items with paced BatchWriteItem (any target, any repository).
``import`` hands the backup's data files to DynamoDB's ImportTable, which reads the native
export layout (ours) from S3 and creates the table without consuming write capacity; it can
only create a new table, from S3, without local secondary indexes, from files in
``{"Item": ...}`` lines, and it cannot replay a change chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hippolyte.core.errors import ConfigError
from hippolyte.core.model import Json
from hippolyte.core.restore_plan import Step, create_table_request

Engine = Literal["load", "import", "dask"]
GB = 1024**3

# What ImportTable's TableCreationParameters accept (CreateTable accepts more).
_IMPORT_KEYS = (
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "SSESpecification",
    "GlobalSecondaryIndexes",
)


@dataclass(frozen=True, kw_only=True)
class Prices:
    """Documented prices (us-east-1, 2026): ImportTable per GB of uncompressed source data;
    on-demand write request units per million. ``import_threshold_gb``: from this backup
    size ``--engine auto`` imports."""

    import_per_gb: float = 0.15
    writes_per_million: float = 0.625
    import_threshold_gb: float = 1.0


@dataclass(frozen=True, kw_only=True)
class RestoreFacts:
    """What the choice depends on, gathered before anything is written."""

    requested: Literal["auto", "load", "import", "dask"]
    target_exists: bool
    into_existing: bool
    resume: bool
    s3_repository: bool
    import_format: bool  # the files are {"Item": ...} lines of DynamoDB JSON (ours, native)
    local_indexes: int
    global_indexes: int
    replays_changes: bool  # TABLE@TIME: a full backup plus change sets
    raw_bytes: int  # uncompressed item bytes (estimated when the format does not record them)
    items: int


@dataclass(frozen=True, kw_only=True)
class EngineChoice:
    engine: Engine
    reason: str
    import_cost: float  # USD, estimated
    load_cost: float  # USD, estimated: the write units a load consumes, at on-demand prices
    write_units: int  # estimated write request units of a load (base table and GSIs)

    def to_json(self) -> Json:
        return {
            "engine": self.engine,
            "reason": self.reason,
            "estimatedCost": {
                "importUsd": round(self.import_cost, 4),
                "loadUsd": round(self.load_cost, 4),
                "loadWriteUnits": self.write_units,
            },
        }


def import_obstacles(facts: RestoreFacts) -> list[str]:
    """Why ImportTable cannot do this restore (empty: it can)."""
    out = []
    if facts.target_exists or facts.into_existing:
        out.append("ImportTable only creates a new table, and the target exists")
    if facts.resume:
        out.append("an interrupted load resumes as a load")
    if not facts.s3_repository:
        out.append("ImportTable reads from S3, and the backup is not in S3")
    if facts.local_indexes:
        out.append(f"ImportTable cannot create local secondary indexes ({facts.local_indexes})")
    if facts.replays_changes:
        out.append("a table at an instant replays change sets, which ImportTable cannot")
    if not facts.import_format:
        out.append("the backup's files are not DynamoDB JSON lines ImportTable reads")
    return out


def write_units(facts: RestoreFacts) -> int:
    """A load's write request units: each item costs one per started KB, in the table and
    again in every GSI (an upper bound: a GSI that does not project an item costs nothing)."""
    if not facts.items:
        return 0
    per_item = max(1, math.ceil(facts.raw_bytes / facts.items / 1024))
    return facts.items * per_item * (1 + facts.global_indexes)


def choose(facts: RestoreFacts, prices: Prices = Prices()) -> EngineChoice:
    """The engine, and the reason in words. ``import`` asked for but impossible: ConfigError
    naming every obstacle (nothing was written)."""
    units = write_units(facts)

    def pick(engine: Engine, reason: str) -> EngineChoice:
        return EngineChoice(
            engine=engine,
            reason=reason,
            import_cost=facts.raw_bytes / GB * prices.import_per_gb,
            load_cost=units / 1e6 * prices.writes_per_million,
            write_units=units,
        )

    obstacles = import_obstacles(facts)
    if facts.requested == "import":
        if obstacles:
            raise ConfigError("--engine import: " + "; ".join(obstacles))
        return pick("import", "asked for (--engine import)")
    if facts.requested == "load":
        return pick("load", "asked for (--engine load)")
    if facts.requested == "dask":
        return pick("dask", "asked for (--engine dask): the load, spread over a Dask cluster")
    if obstacles:
        return pick("load", obstacles[0])
    size_gb = facts.raw_bytes / GB
    if size_gb < prices.import_threshold_gb:
        return pick(
            "load",
            f"{size_gb:.2f} GB is under the import threshold ({prices.import_threshold_gb:g} GB)",
        )
    return pick(
        "import", f"a new table from S3, {size_gb:.2f} GB: ImportTable consumes no write capacity"
    )


def import_request(desc: Json, *, table_name: str, load_capacity: int) -> tuple[Json, list[Step]]:
    """ImportTable's TableCreationParameters for ``table_name`` shaped like the backed-up
    table (provisioned: ``load_capacity`` RCU for the proof, as a load's table gets), and the
    UpdateTable steps for what ImportTable cannot set at creation (stream, table class)."""
    full = create_table_request(desc, table_name=table_name, load_capacity=load_capacity)
    params = {k: full[k] for k in _IMPORT_KEYS if k in full}
    later: list[Step] = []
    if "StreamSpecification" in full:
        later.append(
            Step(
                operation="update_table",
                params={
                    "TableName": table_name,
                    "StreamSpecification": full["StreamSpecification"],
                },
                why="the stream",
                wait_active=True,
            )
        )
    if "TableClass" in full:
        later.append(
            Step(
                operation="update_table",
                params={"TableName": table_name, "TableClass": full["TableClass"]},
                why=f"table class {full['TableClass']}",
                wait_active=True,
            )
        )
    return params, later
