"""AWS Data Pipeline definitions for a plan, as the original Hippolyte generated them: one
pipeline per planned pipeline, an EMR cluster sized by the pipeline's data, and per table a
DynamoDBDataNode, an EmrActivity running the EMR DynamoDB connector's export (the step of AWS's
"Export DynamoDB table to S3" template) and an S3DataNode at ``s3://<bucket>/<table>/<timestamp>``.

Pure: :func:`definitions` takes :func:`hippolyte.planning.to_json`'s plain data and returns
plain data for boto3's ``create_pipeline`` and ``put_pipeline_definition``
(:func:`put_request`). AWS Data Pipeline has been closed to new customers since 2024-07-25;
this output is for accounts that still have it and for comparison with the original.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Json = Mapping[str, Any]
Field = dict[str, str]
PipelineObject = dict[str, Any]

MAX_OBJECTS = 100  # AWS Data Pipeline's limit per pipeline
OBJECTS_PER_TABLE = 3  # DynamoDBDataNode, EmrActivity, S3DataNode
OBJECTS_PER_PIPELINE = 2  # Default, EmrCluster
MAX_TABLES = (MAX_OBJECTS - OBJECTS_PER_PIPELINE) // OBJECTS_PER_TABLE  # 32

# AMI 3.9.0, m1.medium and m3.xlarge, which the original used, no longer exist.
RELEASE_LABEL = "emr-6.15.0"
SMALL_DATA_BYTES = 570 * 10**6  # the original's threshold between its two cluster sizes
SMALL_CLUSTER = ("m5.xlarge", "m5.xlarge", 1)  # master, core, core count
LARGE_MASTER, LARGE_CORE = "m5.xlarge", "m5.2xlarge"
BYTES_PER_CORE = 200 * 10**9  # one more core node per 200 GB the pipeline exports
MIN_LARGE_CORES, MAX_LARGE_CORES = 2, 10  # the read rate, not the cluster, bounds an export

REGION_PARAMETER = "myDDBRegion"
EXPORT_STEP = (
    "s3://dynamodb-dpl-#{myDDBRegion}/emr-ddb-storage-handler/4.11.0/"
    "emr-dynamodb-tools-4.11.0-SNAPSHOT-jar-with-dependencies.jar,"
    "org.apache.hadoop.dynamodb.tools.DynamoDBExport,"
    "#{output.directoryPath},#{input.tableName},#{input.readThroughputPercent}"
)
CLUSTER_ID = "EmrClusterForBackup"
# the connector accepts a read percent from 0.1 to 1.0
MIN_READ_PERCENT, MAX_READ_PERCENT = 0.1, 1.0
_PARAMETER_REF = re.compile(r"#\{(my\w+)\}")


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """Where and as whom the pipelines run (the config's ``[datapipeline]`` section)."""

    region: str | None = None  # where the pipelines are created; default: the tables' region
    subnet_id: str | None = None  # the EMR cluster's subnet; default: the default VPC
    log_uri: str | None = None  # pipelineLogUri; default: the run's folder in the repository
    role: str = "DataPipelineDefaultRole"
    resource_role: str = "DataPipelineDefaultResourceRole"


def output_path(*, bucket: str, prefix: str, table: str, timestamp: str) -> str:
    """``s3://<bucket>[/<prefix>]/<table>/<timestamp>``: the S3DataNode's directoryPath."""
    parts = [bucket.removeprefix("s3://").strip("/"), prefix.strip("/"), table, timestamp]
    return "s3://" + "/".join(p for p in parts if p)


def definitions(
    plan_json: Json,
    *,
    bucket: str,
    timestamp: str,
    prefix: str = "",
    log_uri: str | None = None,
    subnet_id: str | None = None,
    role: str = "DataPipelineDefaultRole",
    resource_role: str = "DataPipelineDefaultResourceRole",
    region: str = "us-east-1",
) -> list[dict[str, Any]]:
    """One definition per pipeline of the plan: ``name`` (``hippolyte-<timestamp>-<index>``,
    also the ``uniqueId``, so a retried ``create_pipeline`` does not make a second pipeline),
    ``pipelineObjects``, ``parameterObjects`` and ``parameterValues`` (``myDDBRegion``:
    ``region``, where the tables are and the connector's jar is read from). Each table's
    export goes to ``s3://<bucket>[/<prefix>]/<table>/<timestamp>``: with the repository's
    prefix, the table's folder for the backup id ``timestamp`` in the repository."""
    read_percent = float(plan_json["settings"]["read_percent"])
    out = []
    for pipeline in plan_json.get("pipelines") or []:
        name = f"hippolyte-{timestamp}-{pipeline['index']}"
        objects = [
            _default(log_uri=log_uri, role=role, resource_role=resource_role),
            _cluster(pipeline, subnet_id=subnet_id),
        ]
        for table in _checked_tables(pipeline):
            objects.extend(
                _table_objects(
                    table,
                    directory=output_path(
                        bucket=bucket, prefix=prefix, table=str(table["table"]), timestamp=timestamp
                    ),
                    read_percent=read_percent,
                )
            )
        out.append(
            {
                "name": name,
                "uniqueId": name,
                "pipelineObjects": objects,
                "parameterObjects": [_region_parameter(region)],
                "parameterValues": [{"id": REGION_PARAMETER, "stringValue": region}],
            }
        )
    return out


def put_request(defn: Json, *, pipeline_id: str) -> dict[str, Any]:
    """The keyword arguments of boto3's ``put_pipeline_definition`` for a definition."""
    return {
        "pipelineId": pipeline_id,
        "pipelineObjects": list(defn["pipelineObjects"]),
        "parameterObjects": list(defn.get("parameterObjects") or []),
        "parameterValues": list(defn.get("parameterValues") or []),
    }


def _checked_tables(pipeline: Json) -> Sequence[Json]:
    tables: Sequence[Json] = pipeline["tables"]
    if len(tables) > MAX_TABLES:
        raise ValueError(
            f"pipeline {pipeline['index']} has {len(tables)} tables; a Data Pipeline holds "
            f"{MAX_OBJECTS} objects, so at most {MAX_TABLES} tables"
        )
    return tables


# --- objects ----------------------------------------------------------------------------------


def _default(*, log_uri: str | None, role: str, resource_role: str) -> PipelineObject:
    fields = [
        _value("failureAndRerunMode", "CASCADE"),
        _value("role", role),
        _value("resourceRole", resource_role),
        _value("scheduleType", "ONDEMAND"),
    ]
    if log_uri:
        fields.append(_value("pipelineLogUri", log_uri))
    return _object("Default", fields)


def cluster_size(total_bytes: int) -> tuple[str, str, int]:
    """Master type, core type and core count for a pipeline exporting ``total_bytes``: the
    original's two sizes split at 570 MB, on current instance types; more cores for more data."""
    if total_bytes < SMALL_DATA_BYTES:
        return SMALL_CLUSTER
    cores = min(MAX_LARGE_CORES, max(MIN_LARGE_CORES, math.ceil(total_bytes / BYTES_PER_CORE)))
    return LARGE_MASTER, LARGE_CORE, cores


def _cluster(pipeline: Json, *, subnet_id: str | None) -> PipelineObject:
    total = sum(int(t["estimate"]["size_bytes"]) for t in pipeline["tables"])
    master, core, cores = cluster_size(total)
    # the original's margin: the pipeline's hours, rounded up, and one more
    hours = math.ceil(float(pipeline["total_s"]) / 3600) + 1
    fields = [
        _value("type", "EmrCluster"),
        _value("releaseLabel", RELEASE_LABEL),
        _value("masterInstanceType", master),
        _value("coreInstanceType", core),
        _value("coreInstanceCount", str(cores)),
        _value("region", f"#{{{REGION_PARAMETER}}}"),
        _value("terminateAfter", f"{hours} Hours"),
    ]
    if subnet_id:
        fields.append(_value("subnetId", subnet_id))
    return _object(CLUSTER_ID, fields)


def read_share(table: Json, *, read_percent: float) -> str:
    """The table's readThroughputPercent: a boosted table's backup share, else the setting;
    rounded down to two places (a boosted table's application keeps at least its own RCU)
    and kept within what the connector accepts."""
    boost = table.get("boost")
    share = float(boost["backup_share"]) if boost else read_percent
    share = math.floor(share * 100 + 1e-9) / 100
    return f"{min(MAX_READ_PERCENT, max(MIN_READ_PERCENT, share)):.2f}"


def _table_objects(table: Json, *, directory: str, read_percent: float) -> list[PipelineObject]:
    name = str(table["table"])
    source, target, activity = (
        f"DDBSourceTable.{name}",
        f"S3BackupLocation.{name}",
        f"TableBackupActivity.{name}",
    )
    # No dependsOn between activities: the cluster's step queue already runs them one after
    # another, and with CASCADE one failed table would cancel every table after it.
    return [
        _object(
            source,
            [
                _value("type", "DynamoDBDataNode"),
                _value("tableName", name),
                _value("readThroughputPercent", read_share(table, read_percent=read_percent)),
            ],
        ),
        _object(
            target,
            [
                _value("type", "S3DataNode"),
                _value("directoryPath", directory),
            ],
        ),
        _object(
            activity,
            [
                _value("type", "EmrActivity"),
                _ref("runsOn", CLUSTER_ID),
                _ref("input", source),
                _ref("output", target),
                _value("maximumRetries", "2"),
                _value("step", EXPORT_STEP),
            ],
        ),
    ]


def _region_parameter(region: str) -> dict[str, Any]:
    attributes = [
        ("type", "String"),
        ("description", "Region of the DynamoDB tables"),
        ("default", region),
    ]
    return {
        "id": REGION_PARAMETER,
        "attributes": [{"key": k, "stringValue": v} for k, v in attributes],
    }


def _object(object_id: str, fields: list[Field]) -> PipelineObject:
    return {"id": object_id, "name": object_id, "fields": fields}


def _value(key: str, value: str) -> Field:
    return {"key": key, "stringValue": value}


def _ref(key: str, object_id: str) -> Field:
    return {"key": key, "refValue": object_id}


# --- checks -----------------------------------------------------------------------------------


def validate(defn: Json) -> list[str]:
    """What is wrong with a definition, in words; empty when nothing is: at most 100 objects,
    unique ids, every field a string or a reference, every reference to an existing object,
    every ``#{myParameter}`` declared and given a value or a default."""
    objects: Sequence[Json] = defn.get("pipelineObjects") or []
    problems = []
    if len(objects) > MAX_OBJECTS:
        problems.append(f"{len(objects)} objects; a pipeline holds at most {MAX_OBJECTS}")
    ids = [str(o.get("id", "")) for o in objects]
    problems += [f"duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    known = set(ids)
    for obj in objects:
        problems += _field_problems(obj, known=known)
    problems += _parameter_problems(defn)
    return problems


def _field_problems(obj: Json, *, known: set[str]) -> list[str]:
    problems = []
    for field in obj.get("fields") or []:
        where = f"{obj.get('id')!r}.{field.get('key')}"
        kinds = [k for k in ("stringValue", "refValue") if k in field]
        if len(kinds) != 1:
            problems.append(f"{where} needs exactly one of stringValue and refValue")
        elif "refValue" in field and field["refValue"] not in known:
            problems.append(f"{where} refers to {field['refValue']!r}, which does not exist")
    return problems


def _parameter_problems(defn: Json) -> list[str]:
    used = {
        m
        for obj in defn.get("pipelineObjects") or []
        for field in obj.get("fields") or []
        for m in _PARAMETER_REF.findall(str(field.get("stringValue", "")))
    }
    declared = {
        str(p["id"]): {a["key"] for a in p.get("attributes") or []}
        for p in defn.get("parameterObjects") or []
    }
    valued = {str(v["id"]) for v in defn.get("parameterValues") or []}
    problems = [f"parameter {p!r} is used but not declared" for p in sorted(used - set(declared))]
    problems += [
        f"parameter {p!r} has neither a value nor a default"
        for p in sorted(used & set(declared))
        if p not in valued and "default" not in declared[p]
    ]
    return problems
