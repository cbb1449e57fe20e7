"""Application Auto Scaling for a table's read capacity: record it exactly, remove it for a
boosted backup, put it back exactly. Tables that are not boosted are never touched."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws
from hippolyte.core.model import Json

NAMESPACE = "dynamodb"
READ_DIMENSION = "dynamodb:table:ReadCapacityUnits"
_TARGET_KEYS = ("MinCapacity", "MaxCapacity", "RoleARN", "SuspendedState")
_POLICY_KEYS = (
    "PolicyName",
    "PolicyType",
    "StepScalingPolicyConfiguration",
    "TargetTrackingScalingPolicyConfiguration",
)


def client(conn: aws.Connection) -> Any:
    # few retries (botocore's max_attempts: 3 after the first call): a boost that cannot
    # happen degrades at once (the backup runs at the table's own capacity); a revert that
    # cannot happen is retried by the monitor
    return aws.client(conn, "application-autoscaling", pool=4, max_attempts=3)


def _resource(table: str) -> str:
    return f"table/{table}"


def read_scaling(aas: Any, table: str) -> Json | None:
    """The table's read scalable target and its policies, as plain data; None if it has none."""
    try:
        targets = aas.describe_scalable_targets(
            ServiceNamespace=NAMESPACE,
            ResourceIds=[_resource(table)],
            ScalableDimension=READ_DIMENSION,
        ).get("ScalableTargets", [])
        if not targets:
            return None
        policies = aas.describe_scaling_policies(
            ServiceNamespace=NAMESPACE,
            ResourceId=_resource(table),
            ScalableDimension=READ_DIMENSION,
        ).get("ScalingPolicies", [])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise aws.translate(exc, what=f"read autoscaling of {table!r}") from exc
    target = {k: targets[0][k] for k in _TARGET_KEYS if k in targets[0]}
    return {
        "target": target,
        "policies": [{k: p[k] for k in _POLICY_KEYS if k in p} for p in policies],
    }


def remove(aas: Any, table: str) -> None:
    """Deregister the read scalable target (its policies go with it)."""
    try:
        aas.deregister_scalable_target(
            ServiceNamespace=NAMESPACE,
            ResourceId=_resource(table),
            ScalableDimension=READ_DIMENSION,
        )
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ObjectNotFoundException":
            return
        raise aws.translate(exc, what=f"read autoscaling of {table!r}") from exc


def put_back(aas: Any, table: str, saved: Json) -> None:
    """Register the target and every policy exactly as recorded. Idempotent."""
    common = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": _resource(table),
        "ScalableDimension": READ_DIMENSION,
    }
    try:
        aas.register_scalable_target(**common, **saved["target"])
        for policy in saved["policies"]:
            aas.put_scaling_policy(**common, **policy)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise aws.translate(exc, what=f"read autoscaling of {table!r}") from exc
