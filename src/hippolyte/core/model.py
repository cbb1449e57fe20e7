"""Plain, frozen values that cross every layer. No boto3, no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


TABLE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")  # DynamoDB's rule for table names


def check_table_name(name: str) -> str:
    """``name`` if DynamoDB accepts it as a table name, else ConfigError saying why."""
    if not TABLE_NAME.match(name):
        from hippolyte.core.errors import ConfigError

        raise ConfigError(
            f"{name!r} is not a DynamoDB table name (3 to 255 characters: letters, digits, "
            "'_', '-' and '.')"
        )
    return name


class CapacityStatus(enum.StrEnum):
    """What happened to one table's capacity: a boost, or a revert through the journal."""

    BOOSTED = "boosted"
    NOT_BOOSTED = "not-boosted"  # recorded as such: nothing to put back
    REVERTED = "reverted"
    REVERT_PENDING = "revert-pending"  # a refused decrease: the next revert/monitor retries
    GONE = "gone"  # the table was deleted since the boost
    STILL_RUNNING = "still-running"  # its Data Pipeline still exports: left to the monitor
    BOOST_FAILED = "boost-failed"  # the boost could not happen: backed up at its own capacity


class CheckStatus(enum.StrEnum):
    """The monitor's verdict on one table of a run."""

    OK = "ok"
    FAILED = "failed"
    RUNNING = "running"  # still running remotely inside its window: not ok, not failed yet


@dataclass(frozen=True, kw_only=True)
class Connection:
    """Where and as whom to reach AWS. Plain data: safe to pickle and to hand to a worker."""

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None  # for DynamoDB; S3 uses AWS_ENDPOINT_URL_S3 or its own
    account: str | None = None  # a label for humans and the repository layout


@dataclass(frozen=True, kw_only=True)
class TableInfo:
    """What a backup needs to know about a table, read from DescribeTable (+ tags)."""

    name: str
    arn: str = ""
    status: str = "ACTIVE"
    billing_mode: str = "PROVISIONED"  # or PAY_PER_REQUEST
    read_capacity: int = 0  # provisioned RCU; 0 for on-demand
    write_capacity: int = 0
    max_read_request_units: int | None = None  # on-demand cap, if the table has one
    size_bytes: int = 0
    item_count: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    description: Json = field(default_factory=dict, compare=False, repr=False)

    @property
    def on_demand(self) -> bool:
        return self.billing_mode == "PAY_PER_REQUEST"

    @classmethod
    def from_description(cls, desc: Json, *, tags: dict[str, str] | None = None) -> TableInfo:
        """Build from a DescribeTable ``Table`` object (as boto3 returns it, or its JSON)."""
        billing = (desc.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
        pt = desc.get("ProvisionedThroughput") or {}
        od = desc.get("OnDemandThroughput") or {}
        max_reads = od.get("MaxReadRequestUnits")
        return cls(
            name=desc["TableName"],
            arn=desc.get("TableArn", ""),
            status=desc.get("TableStatus", "ACTIVE"),
            billing_mode=billing,
            read_capacity=0
            if billing == "PAY_PER_REQUEST"
            else int(pt.get("ReadCapacityUnits") or 0),
            write_capacity=0
            if billing == "PAY_PER_REQUEST"
            else int(pt.get("WriteCapacityUnits") or 0),
            max_read_request_units=int(max_reads) if max_reads and max_reads > 0 else None,
            size_bytes=int(desc.get("TableSizeBytes") or 0),
            item_count=int(desc.get("ItemCount") or 0),
            tags=dict(tags or {}),
            description=desc,
        )


@dataclass(frozen=True, kw_only=True)
class Selected:
    """A selection decision with its reason, for `discover` to show."""

    table: TableInfo
    selected: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    """One committed data file of a backup."""

    key: str  # relative to the backup folder, e.g. data/00003-0000.json.gz
    item_count: int
    raw_bytes: int  # uncompressed size of the JSON lines
    size: int  # bytes on storage
    sha256: str  # hex, of the stored bytes
    md5: str  # base64, of the stored bytes (the native export's md5Checksum)


@dataclass(frozen=True, kw_only=True)
class BackupRef:
    """Where one backup lives: repository URL + table + backup id."""

    repo: str
    table: str
    backup_id: str

    @property
    def prefix(self) -> str:
        return f"{self.table}/{self.backup_id}/"

    def __str__(self) -> str:
        return f"{self.table}/{self.backup_id}"


@dataclass(frozen=True, kw_only=True)
class BackupSummary:
    """A line of `hippolyte list`."""

    ref: BackupRef
    complete: bool
    started: dt.datetime | None
    item_count: int | None
    raw_bytes: int | None
    stored_bytes: int | None
    duration_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class TableResult:
    """Outcome of one table's backup."""

    table: str
    ref: BackupRef | None
    ok: bool
    item_count: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    consumed_read_units: float = 0.0
    duration_s: float = 0.0
    error: str | None = None
    # where the backup runs when it runs remotely (e.g. "Data Pipeline df-..."): started, not
    # finished; ok means only that it started, and the monitor checks its outcome
    started_in: str | None = None
    warnings: tuple[str, ...] = ()  # e.g. a boost that could not happen


@dataclass(frozen=True, kw_only=True)
class TableCheck:
    """The monitor's verdict on one table of a run."""

    table: str
    target: str  # the target's label (account/region)
    ok: bool
    reason: str  # e.g. "committed 2026-11-22-00-10-00", "no backup", "incomplete", ...
    pipeline: int | None = None
    backup: str | None = None  # TABLE/BACKUP_ID of the backup that was checked
    running: bool = False  # still running remotely inside its window: not ok, not failed yet

    @property
    def status(self) -> CheckStatus:
        if self.ok:
            return CheckStatus.OK
        return CheckStatus.RUNNING if self.running else CheckStatus.FAILED


@dataclass(frozen=True, kw_only=True)
class MonitorReport:
    """What `monitor` found for one run (or that no run happened)."""

    run_id: str | None
    checked_at: dt.datetime
    ran: bool  # False: no run record for the expected night ("nothing ran")
    repository: str
    tables: list[TableCheck] = field(default_factory=list)
    capacity: list[str] = field(default_factory=list)  # revert outcomes, one line each
    logs: str | None = None  # where the run's record and logs are

    @property
    def failed(self) -> list[TableCheck]:
        return [t for t in self.tables if not t.ok and not t.running]

    @property
    def running(self) -> list[TableCheck]:
        """Tables whose remote backup (Data Pipeline) is still running inside its window."""
        return [t for t in self.tables if t.running]

    @property
    def ok(self) -> bool:
        return self.ran and not self.failed


@dataclass(frozen=True, kw_only=True)
class CapacityOutcome:
    """One capacity change of a run (a boost or a revert), for the run's result."""

    table: str
    status: CapacityStatus
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a run did: every table's outcome and every capacity change (``result.json``)."""

    run_id: str
    results: list[TableResult]
    capacity: list[CapacityOutcome]


def to_plain(obj: Any) -> Any:
    """Dataclasses, datetimes and refs as JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    return obj
