"""The one place that assembles what an operation needs from the settings: the targets'
connections, the repository's storage, the backup parameters, and the settings themselves
for the Lambda function. The CLI, `serve` and the Lambda handler all build through here."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from hippolyte.adapters import aws
from hippolyte.adapters.storage import Storage, open_storage
from hippolyte.core import config
from hippolyte.core.config import Settings, Target
from hippolyte.core.errors import ConfigError
from hippolyte.core.model import BackupRef
from hippolyte.core.pipeline_defs import PipelineOptions
from hippolyte.formats.base import Source
from hippolyte.formats.open import open_source
from hippolyte.ops import pitr
from hippolyte.ops.backup import BackupParams
from hippolyte.repo import manifest

# The Lambda function's environment (set by the CloudFormation template).
ENV_CONFIG_JSON = "HIPPOLYTE_CONFIG_JSON"
ENV_REPOSITORY = "HIPPOLYTE_REPOSITORY"
ENV_TOPIC = "HIPPOLYTE_SNS_TOPIC_ARN"


def storage_for(settings: Settings, target: Target | None = None) -> Storage:
    """The repository of ``target`` (default: the first target's)."""
    target = target or settings.effective_targets()[0]
    repo = settings.repository_for(target)
    if not repo:
        raise ConfigError("no repository: pass --repo or set `repository` in the config")
    return repository(settings, repo, target.connection())


def repository(settings: Settings, url: str, conn: aws.Connection) -> Storage:
    """The storage of a repository as the settings protect it ([object_lock], append_only)."""
    return open_storage(
        url, conn=conn, object_lock=settings.object_lock, append_only=settings.append_only
    )


def storage_if_any(settings: Settings, target: Target) -> Storage | None:
    """The repository of ``target`` when one is configured (planning works without)."""
    repo = settings.repository_for(target)
    return repository(settings, repo, target.connection()) if repo else None


def check_ref(ref: str) -> str:
    """A REF never climbs out of where it points: no '..' segment (ConfigError)."""
    if ".." in ref.replace("\\", "/").split("/"):
        raise ConfigError(
            f"{ref!r}: a REF may not contain '..' (give TABLE/BACKUP_ID, or the backup "
            "folder's absolute path or URL)"
        )
    return ref


def open_ref(settings: Settings, ref: str, *, repo: str | None) -> tuple[Storage, BackupRef]:
    """TABLE/BACKUP_ID within ``repo``, or the path/URL of one of our backup folders."""
    check_ref(ref)
    bref = manifest.parse_ref(ref, repo=repo or settings.repository)
    storage = repository(settings, bref.repo, settings.effective_targets()[0].connection())
    return storage, bref


def open_backup(settings: Settings, ref: str, *, repo: str | None) -> Source:
    """Any backup a restore reads: TABLE/BACKUP_ID within ``repo``, or the path/URL of a
    backup folder in any format (ours, a DynamoDB export, a Data Pipeline export)."""
    check_ref(ref)
    conn = settings.effective_targets()[0].connection()
    at = pitr.split_ref(ref)
    if at is not None:  # TABLE@TIME, TABLE/BACKUP_ID@TIME: computed from the history
        return _at(settings, at, repo=repo, conn=conn)
    try:
        bref = manifest.parse_ref(ref, repo=repo)
    except ConfigError:  # not shaped like ours: any folder (a native or Data Pipeline export)
        folder = ref.rstrip("/")
        return open_source(open_storage(folder, conn=conn), "", location=folder)
    storage = open_storage(bref.repo, conn=conn)
    return open_source(storage, bref.prefix, location=f"{bref.repo}/{bref}")


def _at(
    settings: Settings, at: tuple[str, dt.datetime], *, repo: str | None, conn: aws.Connection
) -> Source:
    head, when = at
    parts = head.rstrip("/").split("/")
    if len(parts) >= 2 and manifest.is_backup_id(parts[-1]):  # a given full backup to start from
        bref = manifest.parse_ref(head, repo=repo or settings.repository)
        storage = open_storage(bref.repo, conn=conn)
        point = pitr.PointInTime(table=bref.table, at=when, backup=bref.backup_id)
    else:
        url = repo or settings.repository
        if not url:
            raise ConfigError(f"{head}@...: a table's history needs --repo (or `repository`)")
        if not manifest.TABLE_RE.match(head):
            raise ConfigError(f"{head!r} is not a table name (in TABLE@TIME)")
        storage = open_storage(url, conn=conn)
        point = pitr.PointInTime(table=head, at=when)
    return pitr.materialize(storage, point)


def region_of(settings: Settings) -> str:
    """The first target's region as the AWS CLI finds it (option, profile, environment)."""
    return aws.session(settings.effective_targets()[0].connection()).region_name or "us-east-1"


def backup_params(settings: Settings) -> BackupParams:
    return BackupParams(
        read_percent=settings.read_percent,
        on_demand_read_units=settings.on_demand_read_units,
        segments=settings.segments,
        workers=settings.workers,
        max_attempts=settings.max_attempts,
        engine=settings.engine,
        scheduler=settings.scheduler,
        datapipeline=PipelineOptions(**settings.datapipeline.model_dump()),
    )


def lambda_settings(*, region: str | None, account: str | None) -> Settings:
    """The Lambda function's settings: ``$HIPPOLYTE_CONFIG_JSON``, else the config file, else
    the defaults; the stack's bucket and topic from its environment; without targets, the
    function's own account and region."""
    data, source = _config_data()
    if not data.get("repository") and os.environ.get(ENV_REPOSITORY):
        data["repository"] = os.environ[ENV_REPOSITORY]
    if not data.get("targets"):
        data["targets"] = [{"account": account, "region": region}]
    topic = os.environ.get(ENV_TOPIC)
    channels = data.setdefault("notifications", [])
    if topic and all(c.get("topic_arn") != topic for c in channels):
        channels.append({"type": "sns", "topic_arn": topic, "name": "stack topic"})
    return config.validate(data, source=source)


def _config_data() -> tuple[dict[str, Any], str]:
    raw = os.environ.get(ENV_CONFIG_JSON)
    if raw:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"${ENV_CONFIG_JSON} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"${ENV_CONFIG_JSON} must hold a JSON object")
        return data, f"${ENV_CONFIG_JSON}"
    path = config.config_path(None)
    return config.load().model_dump(mode="json"), str(path) if path else "the defaults"
