"""Provisioned read capacity: account limits, raising and lowering a table's RCU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import unsupported
from hippolyte.core.errors import AwsError, TableNotFound


@dataclass(frozen=True, kw_only=True)
class Limits:
    account_max_rcu: int = 80_000
    table_max_rcu: int = 40_000
    source: str = "DynamoDB's default quotas"


class DecreaseRefused(AwsError):
    """DynamoDB rations decreases per UTC day; this one has to wait."""

    retryable = True


def describe_limits(client: Any) -> Limits:
    """DescribeLimits (call it about once a minute at most); defaults where unsupported."""
    try:
        resp = client.describe_limits()
    except botocore.exceptions.ClientError as exc:
        if unsupported(exc):
            return Limits(source="DynamoDB's default quotas (DescribeLimits unsupported here)")
        raise aws.translate(exc, what="DescribeLimits") from exc
    return Limits(
        account_max_rcu=int(resp["AccountMaxReadCapacityUnits"]),
        table_max_rcu=int(resp["TableMaxReadCapacityUnits"]),
        source="DescribeLimits",
    )


def set_read_capacity(client: Any, *, table: str, read: int, write: int) -> None:
    """UpdateTable to ``read`` RCU, keeping ``write``. A refused decrease raises
    DecreaseRefused; a deleted table TableNotFound."""
    try:
        client.update_table(
            TableName=table,
            ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write},
        )
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code == "ResourceNotFoundException":
            raise TableNotFound(f"table {table!r} no longer exists") from exc
        if code == "LimitExceededException" and "decrease" in message.lower():
            raise DecreaseRefused(
                f"{table}: DynamoDB refused the decrease today: {message}"
            ) from exc
        if code == "ValidationException" and "equals the current value" in message:
            return  # already there: idempotent
        raise aws.translate(exc, what=f"UpdateTable {table!r} to {read} RCU") from exc
