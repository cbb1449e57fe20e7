"""Creating and configuring tables for a restore. Never deletes or overwrites a table."""

from __future__ import annotations

import time
from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import unsupported
from hippolyte.core.errors import AwsError, HippolyteError, TableNotFound
from hippolyte.core.model import Json
from hippolyte.core.restore_plan import Step


class TableExists(HippolyteError):
    """The target table exists and the restore was not told to use it."""


def describe_raw(client: Any, table: str) -> Json | None:
    """DescribeTable's ``Table``, or None when there is no such table."""
    try:
        return dict(client.describe_table(TableName=table)["Table"])
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise aws.translate(exc, what=f"table {table!r}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"table {table!r}") from exc


def create_table(client: Any, request: Json) -> None:
    name = request["TableName"]
    try:
        client.create_table(**request)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceInUseException":
            raise TableExists(f"table {name!r} already exists; it was not touched") from exc
        raise aws.translate(exc, what=f"CreateTable {name!r}") from exc
    wait_active(client, name)


def wait_active(client: Any, table: str, *, timeout_s: float = 1800) -> Json:
    """Until the table and all its GSIs are ACTIVE."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        desc = describe_raw(client, table)
        if desc is None:
            raise TableNotFound(f"table {table!r} disappeared while waiting for it")
        gsis = desc.get("GlobalSecondaryIndexes") or []
        if desc["TableStatus"] == "ACTIVE" and all(
            g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in gsis
        ):
            return desc
        if time.monotonic() > deadline:
            raise AwsError(
                f"table {table!r} is still {desc['TableStatus']} after {timeout_s:.0f} s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def apply(client: Any, step: Step, *, table: str) -> str | None:
    """Make one post-load call. Returns a note when the server lacks the feature."""
    try:
        getattr(client, step.operation)(**step.params)
    except botocore.exceptions.ClientError as exc:
        if unsupported(exc):
            return f"{step.why}: not restored, this server does not support it"
        raise aws.translate(exc, what=f"{step.operation} on {table!r} ({step.why})") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"{step.operation} on {table!r}") from exc
    if step.wait_active:
        wait_active(client, table)
    return None


def import_table(client: Any, request: Json) -> Json:
    """Start ImportTable; its ``ImportTableDescription`` (with the import's ARN)."""
    name = request["TableCreationParameters"]["TableName"]
    try:
        return dict(client.import_table(**request)["ImportTableDescription"])
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("ResourceInUseException", "ImportConflictException"):
            raise TableExists(f"table {name!r} already exists; it was not touched") from exc
        raise aws.translate(exc, what=f"ImportTable into {name!r}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=f"ImportTable into {name!r}") from exc


def describe_import(client: Any, import_arn: str) -> Json:
    """DescribeImport's ``ImportTableDescription``."""
    try:
        return dict(client.describe_import(ImportArn=import_arn)["ImportTableDescription"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise aws.translate(exc, what=f"import {import_arn}") from exc
