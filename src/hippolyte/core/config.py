"""The config file (hippolyte.toml) -> validated, frozen settings. No AWS calls.

Every CLI option can also come from here; the CLI's value wins when both are given.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hippolyte.core.channels import Channel
from hippolyte.core.errors import ConfigError
from hippolyte.core.model import Connection
from hippolyte.core.selection import Rules

ENV_CONFIG = "HIPPOLYTE_CONFIG"
DEFAULT_NAME = "hippolyte.toml"
CAPTURE_LAG_SECONDS = 300.0  # capture flushes every 60 s: five flushes missed is late


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """One account and region to back up."""

    account: str | None = None
    region: str | None = None
    profile: str | None = None
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    repository: str | None = None  # overrides the top-level repository for this target

    def connection(self) -> Connection:
        return Connection(
            account=self.account,
            region=self.region,
            profile=self.profile,
            role_arn=self.role_arn,
            endpoint_url=self.endpoint_url,
        )

    @property
    def label(self) -> str:
        return "/".join(x for x in (self.account, self.region) if x) or "default"


class Selection(_Strict):
    include: list[str] = []
    exclude: list[str] = []
    always_backup: list[str] = []
    required_tags: dict[str, str] = {}

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        import re

        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"{p!r} is not a valid regular expression: {exc}") from exc
        return patterns

    def rules(self) -> Rules:
        return Rules(
            include=tuple(self.include),
            exclude=tuple(self.exclude),
            always_backup=tuple(self.always_backup),
            required_tags=dict(self.required_tags),
        )


class Planning(_Strict):
    """The nightly window and the cost model (see planning.PlanSettings)."""

    window_start: str = Field(default="00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    window_end: str = Field(default="07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    bytes_per_rcu: Literal[4096, 8192] = 8192  # 8192: eventually consistent scans (ours)
    table_start_s: float = Field(default=60, ge=0)
    pipeline_start_s: float = Field(default=600, ge=0)
    max_tables_per_pipeline: int = Field(default=32, ge=1, le=32)


def _cron(expr: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(expr):
        raise ValueError(f"{expr!r} is not a cron expression (minute hour day month weekday)")
    return expr


class Schedule(_Strict):
    """When `serve` runs each job (cron, UTC); the original's defaults."""

    backup: str = "10 0 * * *"
    monitor: str = "15 1-10 * * *"

    @field_validator("backup", "monitor")
    @classmethod
    def _valid(cls, expr: str) -> str:
        return _cron(expr)


class Keep(_Strict):
    """restic's keep rules (see `hippolyte forget`)."""

    keep_last: int | None = Field(default=None, ge=0)
    keep_hourly: int | None = Field(default=None, ge=0)
    keep_daily: int | None = Field(default=None, ge=0)
    keep_weekly: int | None = Field(default=None, ge=0)
    keep_monthly: int | None = Field(default=None, ge=0)
    keep_yearly: int | None = Field(default=None, ge=0)
    keep_within: str | None = None  # 7d, 36h, 1y2m


class KeepFor(Keep):
    """Rules for the tables whose name matches ``match`` (a regular expression, searched)."""

    match: str

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Retention(Keep):
    """[retention]: what `forget` keeps when no --keep-* option is given, and what `serve`
    and the Lambda forget after each monitor. ``tables``: per-table rules, the first whose
    ``match`` finds the table's name replacing the default."""

    incomplete_after_hours: float = Field(default=48, ge=0)
    tables: list[KeepFor] = []

    def rules_for(self, table: str) -> Keep:
        return next((t for t in self.tables if re.search(t.match, table)), self)


class ObjectLock(_Strict):
    """[object_lock]: every object of a backup is written with this S3 Object Lock retention
    (the bucket must have Object Lock enabled; writing is refused at the start otherwise)."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    days: int = Field(ge=1, le=36500)


class Copy(_Strict):
    """[[copies]]: another repository that `serve` and the Lambda copy every new backup and
    change set to after each monitor (another account, region, or a local disk)."""

    to: str  # the destination repository URL
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")  # the S3 endpoint
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    tables: list[str] = []  # regular expressions (searched); none: every table
    # the destination's own retention: an immutable off-site copy (S3 Object Lock enabled)
    object_lock: ObjectLock | None = None

    @field_validator("tables")
    @classmethod
    def _regexes(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return values

    def connection(self) -> Connection:
        return Connection(
            region=self.region,
            profile=self.profile,
            role_arn=self.role_arn,
        )

    def wants(self, table: str) -> bool:
        return not self.tables or any(re.search(t, table) for t in self.tables)


class Restore(_Strict):
    """[restore]: how `restore` chooses its engine, and the documented prices it estimates
    with (USD, us-east-1: ImportTable per GB of source data; on-demand writes per million)."""

    engine: Literal["auto", "load", "import", "dask"] = "auto"
    import_threshold_gb: float = Field(default=1.0, ge=0)  # auto imports from this size
    import_price_per_gb: float = Field(default=0.15, ge=0)
    write_price_per_million: float = Field(default=0.625, ge=0)


class Capture(_Strict):
    """`serve` keeps capturing the tables' DynamoDB Streams into change sets (`capture`)."""

    tables: list[str] = []  # none: every selected table
    flush_seconds: float = Field(default=60, gt=0)
    enable_stream: bool = False  # turn a table's stream on (NEW_AND_OLD_IMAGES) if it has none
    restart_seconds: float = Field(default=30, gt=0)  # after a failure, capture again after this


class DataPipeline(_Strict):
    """engine = "datapipeline": where the pipelines run and as whom (see datapipeline.py)."""

    region: str | None = None  # where the pipelines are created; default: the target's
    subnet_id: str | None = Field(default=None, pattern=r"^subnet-[0-9a-f]+$")
    log_uri: str | None = Field(default=None, pattern=r"^s3://")  # default: the run's folder
    role: str = "DataPipelineDefaultRole"
    resource_role: str = "DataPipelineDefaultResourceRole"


class Drills(_Strict):
    """[drills]: `serve` restores a sample of the fleet's newest backups into scratch tables,
    proves them, records the RTO and deletes the scratch tables (`hippolyte drill`)."""

    schedule: str = "30 3 * * 0"  # cron, UTC: Sundays 03:30, after the night's backups
    sample: int = Field(default=5, ge=1, le=1000)  # tables per drill (at most the fleet)
    target_endpoint_url: str | None = Field(default=None, pattern=r"^https?://")
    target_region: str | None = None
    target_profile: str | None = None

    @field_validator("schedule")
    @classmethod
    def _valid(cls, expr: str) -> str:
        return _cron(expr)


class Serve(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)  # /metrics and /healthz
    lock_lease_s: float = Field(default=900, gt=0)  # a lock older than this, holder gone: stale


class Settings(_Strict):
    repository: str | None = None
    read_percent: float = Field(default=0.5, gt=0, le=1)
    on_demand_read_units: float = Field(default=1000, gt=0)  # request units/s for on-demand tables
    segments: int | None = Field(default=None, ge=1, le=1_000_000)  # None: from table size
    workers: int = Field(default=4, ge=1, le=256)
    max_attempts: int = Field(default=10, ge=1, le=100)  # botocore standard-mode attempts per call
    # where backups run: threads here, Dask, DynamoDB's export, per table, or Data Pipeline
    engine: Literal["local", "dask", "export", "auto", "datapipeline"] = "local"
    scheduler: str | None = Field(default=None, pattern=r"^(tcp|tls|inproc|ws|wss)://")
    targets: list[Target] = []
    selection: Selection = Selection()
    planning: Planning = Planning()
    schedule: Schedule = Schedule()
    serve: Serve = Serve()
    capture: Capture | None = None  # [capture]: `serve` captures the streams continuously
    retention: Retention | None = None  # [retention]: what forget keeps; run after each monitor
    object_lock: ObjectLock | None = None  # [object_lock]: S3 Object Lock on every object written
    append_only: bool = False  # this process never deletes from the repository (forget refuses)
    copies: list[Copy] = []  # [[copies]]: repositories every new backup is copied to
    restore: Restore = Restore()  # [restore]: the engine a restore uses, and prices
    drills: Drills | None = None  # [drills]: scheduled restore drills in `serve`
    datapipeline: DataPipeline = DataPipeline()
    rpo_hours: float = Field(default=24, gt=0)  # status fails when a backup is older
    # status and monitor fail when a table's newest change set ends longer ago than this
    capture_lag_seconds: float = Field(default=CAPTURE_LAG_SECONDS, gt=0)
    notifications: list[Channel] = []  # SNS topics, SMTP e-mail, webhooks
    notify_on_success: bool = False  # the monitor also reports a night with no failure

    def effective_targets(self) -> list[Target]:
        return self.targets or [Target()]

    def repository_for(self, target: Target) -> str | None:
        return target.repository or self.repository

    def with_overrides(self, **values: Any) -> Settings:
        """CLI values (None = not given) over the file's."""
        given = {k: v for k, v in values.items() if v is not None}
        target_keys = {"region", "profile", "endpoint_url", "role_arn"}
        target_over = {k: given.pop(k) for k in list(given) if k in target_keys}
        data = self.model_dump()
        data.update(given)
        if target_over:
            data["targets"] = [{**t, **target_over} for t in (data["targets"] or [{}])]
        return validate(data, source="command line")


def validate(data: dict[str, Any], *, source: str) -> Settings:
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None
    _check_repositories(settings, source=source)
    return settings


def _check_repositories(settings: Settings, *, source: str) -> None:
    seen: dict[str, str] = {}
    for t in settings.targets:
        repo = settings.repository_for(t)
        if repo is None:
            continue
        if repo in seen and len(settings.targets) > 1:
            raise ConfigError(
                f"{source}: targets {seen[repo]!r} and {t.label!r} would write into the same "
                f"repository {repo!r}; give each target its own `repository`"
            )
        seen[repo] = t.label


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg} (got {err.get('input')!r})"


def config_path(explicit: str | None) -> Path | None:
    """--config, else $HIPPOLYTE_CONFIG, else ./hippolyte.toml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    local = Path(DEFAULT_NAME)
    return local if local.is_file() else None


def load(explicit: str | None = None) -> Settings:
    path = config_path(explicit)
    if path is None:
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    return validate(data, source=str(path))
