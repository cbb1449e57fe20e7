"""Pure decisions of a restore: the CreateTable request, the steps after loading, and how an
existing table differs from the backup's schema. No boto3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hippolyte.core.model import Json


@dataclass(frozen=True, kw_only=True)
class Step:
    """One call to make after loading, with why."""

    operation: str  # a DynamoDB client method name
    params: Json
    why: str
    wait_active: bool = False


def billing_mode(desc: Json) -> str:
    return (desc.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"


def _throughput(pt: Json | None, *, load_capacity: int | None) -> Json:
    pt = pt or {}
    read = int(pt.get("ReadCapacityUnits") or 1)
    write = int(pt.get("WriteCapacityUnits") or 1)
    if load_capacity:
        read, write = max(read, load_capacity), max(write, load_capacity)
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}


def _projection(p: Json) -> Json:
    out: Json = {"ProjectionType": p.get("ProjectionType", "ALL")}
    if p.get("NonKeyAttributes"):
        out["NonKeyAttributes"] = list(p["NonKeyAttributes"])
    return out


def create_table_request(desc: Json, *, table_name: str, load_capacity: int | None) -> Json:
    """CreateTable for ``table_name`` shaped like the backed-up table. A provisioned table and
    its GSIs get at least ``load_capacity`` RCU and WCU while loading and proving."""
    provisioned = billing_mode(desc) == "PROVISIONED"
    req: Json = {
        "TableName": table_name,
        "KeySchema": desc["KeySchema"],
        "AttributeDefinitions": desc["AttributeDefinitions"],
        "BillingMode": "PROVISIONED" if provisioned else "PAY_PER_REQUEST",
    }
    if provisioned:
        req["ProvisionedThroughput"] = _throughput(
            desc.get("ProvisionedThroughput"), load_capacity=load_capacity
        )
    elif desc.get("OnDemandThroughput"):
        req["OnDemandThroughput"] = desc["OnDemandThroughput"]
    gsis = []
    for g in desc.get("GlobalSecondaryIndexes") or []:
        idx: Json = {
            "IndexName": g["IndexName"],
            "KeySchema": g["KeySchema"],
            "Projection": _projection(g.get("Projection") or {}),
        }
        if provisioned:
            idx["ProvisionedThroughput"] = _throughput(
                g.get("ProvisionedThroughput"), load_capacity=load_capacity
            )
        elif g.get("OnDemandThroughput"):
            idx["OnDemandThroughput"] = g["OnDemandThroughput"]
        gsis.append(idx)
    if gsis:
        req["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {
            "IndexName": lsi["IndexName"],
            "KeySchema": lsi["KeySchema"],
            "Projection": _projection(lsi.get("Projection") or {}),
        }
        for lsi in desc.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        req["LocalSecondaryIndexes"] = lsis
    stream = desc.get("StreamSpecification") or {}
    if stream.get("StreamEnabled"):
        req["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    sse = desc.get("SSEDescription") or {}
    if sse.get("Status") in ("ENABLED", "ENABLING") and sse.get("SSEType") == "KMS":
        req["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"}
        if sse.get("KMSMasterKeyArn"):
            req["SSESpecification"]["KMSMasterKeyId"] = sse["KMSMasterKeyArn"]
    table_class = (desc.get("TableClassSummary") or {}).get("TableClass")
    if table_class and table_class != "STANDARD":
        req["TableClass"] = table_class
    return req


def capacity_step(desc: Json, *, table_name: str, current: Json) -> Step | None:
    """Set the backed-up capacities again after loading (provisioned tables only)."""
    if billing_mode(desc) != "PROVISIONED":
        return None
    params: Json = {"TableName": table_name}
    want = _throughput(desc.get("ProvisionedThroughput"), load_capacity=None)
    if _throughput(current.get("ProvisionedThroughput"), load_capacity=None) != want:
        params["ProvisionedThroughput"] = want
    now = {g["IndexName"]: g for g in current.get("GlobalSecondaryIndexes") or []}
    updates = []
    for g in desc.get("GlobalSecondaryIndexes") or []:
        target = _throughput(g.get("ProvisionedThroughput"), load_capacity=None)
        have = _throughput(
            (now.get(g["IndexName"]) or {}).get("ProvisionedThroughput"), load_capacity=None
        )
        if have != target:
            updates.append(
                {"Update": {"IndexName": g["IndexName"], "ProvisionedThroughput": target}}
            )
    if updates:
        params["GlobalSecondaryIndexUpdates"] = updates
    if len(params) == 1:
        return None
    return Step(
        operation="update_table",
        params=params,
        why="set the backed-up capacities",
        wait_active=True,
    )


def settings_steps(desc: Json, extras: Json, *, table_name: str, table_arn: str) -> list[Step]:
    """TTL, tags, PITR and deletion protection, in that order, where the backup had them."""
    steps = []
    ttl = extras.get("timeToLive") or {}
    if ttl.get("status") in ("ENABLED", "ENABLING") and ttl.get("attributeName"):
        steps.append(
            Step(
                operation="update_time_to_live",
                params={
                    "TableName": table_name,
                    "TimeToLiveSpecification": {
                        "Enabled": True,
                        "AttributeName": ttl["attributeName"],
                    },
                },
                why=f"TTL on {ttl['attributeName']!r}",
            )
        )
    tags = extras.get("tags") or {}
    if tags:
        steps.append(
            Step(
                operation="tag_resource",
                params={
                    "ResourceArn": table_arn,
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                },
                why=f"{len(tags)} tags",
            )
        )
    pitr = extras.get("pointInTimeRecovery") or {}
    if pitr.get("status") == "ENABLED":
        steps.append(
            Step(
                operation="update_continuous_backups",
                params={
                    "TableName": table_name,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                },
                why="point-in-time recovery",
            )
        )
    if desc.get("DeletionProtectionEnabled"):
        steps.append(
            Step(
                operation="update_table",
                params={"TableName": table_name, "DeletionProtectionEnabled": True},
                why="deletion protection",
                wait_active=True,
            )
        )
    return steps


def _keys(schema: list[Json], types: dict[str, str]) -> list[tuple[str, str, str]]:
    return sorted(
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")) for k in schema
    )


def schema_differences(backup: Json, existing: Json) -> list[str]:
    """Why ``existing`` cannot take the backup's items as they are (empty: it can)."""
    bt = {a["AttributeName"]: a["AttributeType"] for a in backup["AttributeDefinitions"]}
    et = {a["AttributeName"]: a["AttributeType"] for a in existing["AttributeDefinitions"]}
    out = []
    if _keys(backup["KeySchema"], bt) != _keys(existing["KeySchema"], et):
        out.append(
            f"key schema: backup {_fmt(backup['KeySchema'], bt)}, "
            f"table {_fmt(existing['KeySchema'], et)}"
        )
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        want = {i["IndexName"]: i for i in backup.get(kind) or []}
        have = {i["IndexName"]: i for i in existing.get(kind) or []}
        label = "GSI" if kind.startswith("Global") else "LSI"
        for name in sorted(set(want) - set(have)):
            out.append(f"{label} {name!r} is missing")
        for name in sorted(set(have) - set(want)):
            out.append(f"{label} {name!r} is not in the backup")
        for name in sorted(set(want) & set(have)):
            if _keys(want[name]["KeySchema"], bt) != _keys(have[name]["KeySchema"], et):
                out.append(f"{label} {name!r} has other keys")
            elif _projection(want[name].get("Projection") or {}) != _projection(
                have[name].get("Projection") or {}
            ):
                out.append(f"{label} {name!r} has another projection")
    return out


def _fmt(schema: list[Json], types: dict[str, Any]) -> str:
    return ", ".join(
        f"{k['AttributeName']}:{types.get(k['AttributeName'], '?')} ({k['KeyType']})"
        for k in schema
    )
