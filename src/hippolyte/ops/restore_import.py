"""A restore's engine, chosen before anything is written, and the ImportTable restore.

``plan`` gathers the facts (does the target exist, is the backup in S3 and in a format
ImportTable reads, its indexes and size) and lets ``core.restore_engine`` choose and price.
``restore_by_import`` then does what ``ops.restore`` does, with ImportTable in place of the
load: every file is read and checked first (a bad file stops it before the table exists),
the import runs over exactly the backup's data files, and the table is proven against the
backup's digest before its capacities, TTL, tags, PITR and deletion protection are set.
"""

from __future__ import annotations

import threading

from hippolyte.adapters import aws, dynamodb, dynamodb_admin
from hippolyte.core.config import Restore
from hippolyte.core.events import Emit, Note
from hippolyte.core.model import Json, TableInfo
from hippolyte.core.restore_engine import EngineChoice, Prices, RestoreFacts, choose, import_request
from hippolyte.engines.import_table import POLL_S, data_prefix, run_import
from hippolyte.formats.base import Source, item_of_export_line
from hippolyte.ops.restore import (
    RestoreParams,
    RestoreReport,
    finish_table,
    schema_of,
    table_digest,
)
from hippolyte.ops.restore_check import check_backup
from hippolyte.repo import manifest

GZIP_RATIO = 4.0  # data bytes per stored byte, when the format does not record its raw size


def plan(
    source: Source,
    *,
    conn: aws.Connection,
    table: str,
    params: RestoreParams,
    description: Json | None,
    settings: Restore,
    requested: str | None = None,
    replays_changes: bool = False,
) -> EngineChoice:
    """The engine this restore uses, and why, with both engines' estimated costs. Reads the
    target's description and the backup's listing; writes nothing."""
    desc = description or source.description or {}
    control = dynamodb.control_client(conn, max_attempts=params.max_attempts)
    facts = RestoreFacts(
        requested=(requested or settings.engine),  # type: ignore[arg-type]
        target_exists=dynamodb_admin.describe_raw(control, table) is not None,
        into_existing=params.into_existing,
        resume=params.resume,
        s3_repository=source.storage.bucket is not None,
        import_format=source.kind == "hippolyte"
        or (source.kind == "native-export" and source.to_wire is item_of_export_line),
        local_indexes=len(desc.get("LocalSecondaryIndexes") or []),
        global_indexes=len(desc.get("GlobalSecondaryIndexes") or []),
        replays_changes=replays_changes,
        raw_bytes=_raw_bytes(source),
        items=source.item_count or sum(f.item_count or 0 for f in source.files),
    )
    prices = Prices(
        import_per_gb=settings.import_price_per_gb,
        writes_per_million=settings.write_price_per_million,
        import_threshold_gb=settings.import_threshold_gb,
    )
    return choose(facts, prices)


def _raw_bytes(source: Source) -> int:
    """The backup's item bytes: ours records them; otherwise estimated from the stored size."""
    if source.kind == "hippolyte" and source.files:
        folder = source.files[0].key.rpartition(manifest.DATA_DIR)[0]
        doc = manifest.parse_descriptor(
            source.storage.get_bytes(folder + manifest.DESCRIPTOR), where=source.location
        )
        return int(doc["backup"]["rawBytes"])
    stored = sum(source.storage.size(f.key) for f in source.files)
    return int(stored * GZIP_RATIO)


def restore_by_import(
    source: Source,
    *,
    conn: aws.Connection,
    table: str,
    params: RestoreParams,
    description: Json | None,
    emit: Emit,
    stop: threading.Event | None = None,
    poll_s: float = POLL_S,
) -> tuple[RestoreReport, str]:
    """Restore ``source`` into the new table ``table`` with ImportTable, then prove it. The
    report, and the import's ARN."""
    stop = stop or threading.Event()
    desc, schema = schema_of(source, description)
    bucket, prefix = data_prefix(source.storage, [f.key for f in source.files])
    control = dynamodb.control_client(conn, max_attempts=params.max_attempts)
    if dynamodb_admin.describe_raw(control, table) is not None:
        raise dynamodb_admin.TableExists(
            f"table {table!r} already exists; ImportTable only creates new tables "
            "(nothing was changed)"
        )
    emit(Note(text=f"checking {len(source.files)} files before importing anything", table=table))
    checks = check_backup(source, schema=schema, workers=params.workers, emit=emit, table=table)
    report = RestoreReport(table=table, source=source.location)
    for check in checks.values():
        assert check.digest is not None
        report.backup.merge(check.digest)
    creation, later = import_request(desc, table_name=table, load_capacity=params.write_capacity)
    outcome = run_import(
        control, bucket=bucket, prefix=prefix, creation=creation, emit=emit, stop=stop,
        poll_s=poll_s,
    )  # fmt: skip
    current = dynamodb_admin.wait_active(control, table)
    report.items_written = outcome.imported_items
    report.restored = table_digest(
        conn,
        table=table,
        info=TableInfo.from_description(current),
        workers=params.workers,
        stop=stop,
        on_demand_units=params.on_demand_write_units,
        expected_items=report.backup.count,
    )
    report.notes += finish_table(control, desc, source.extras, table=table, emit=emit, later=later)
    return report, outcome.arn
