"""Deploying to AWS: the CloudFormation template (the Lambda function, its schedules, the
SNS topic, the backup bucket, a least-privilege role) and the IAM policy for the CLI.

Both allow exactly the AWS calls the code makes (read from the source, see ``hippolyte.iam``)
plus what AWS requires beyond them. The Lambda's role gets only the calls its handler reaches:
it backs up and monitors, it never restores, so it cannot write into tables. With ``[drills]``
a third schedule runs the drill job, and the statement ``Drills`` allows that job's DynamoDB
calls (its only table writes) on scratch tables ``<table>-drill-<id>`` alone.
"""

from __future__ import annotations

import json
from typing import Any

from hippolyte.adapters.storage import s3_location
from hippolyte.core.config import Settings
from hippolyte.core.drill import INFIX
from hippolyte.core.errors import ConfigError
from hippolyte.deploy.iam import (
    ACCOUNT_WIDE,
    LOCK_BYPASS,
    STREAM_ACTIONS,
    Resource,
    Scope,
    api_calls_in_code,
    assumed_roles,
    copy_destinations,
    object_lock_actions,
    objects_arn,
    s3_repositories,
    statements,
    table_patterns,
    target_places,
    topics,
)

__all__ = ["API_CALLS", "api_calls_in_code", "iam_policy", "template"]

LAMBDA_ENTRY = "hippolyte.aws_lambda:handler"
DRILL_ENTRY = "hippolyte.aws_lambda:drill_job"  # apart from the handler's reach (iam.APART)
# A drill's scratch table: <table>-drill-<UTC second>-<4 hex> (core.drill), and nothing else
SCRATCH_TABLES = f"*{INFIX}????????-??????-????"
RESTORE_ENTRIES = (  # they write into a table of any name, not only the selected ones
    "hippolyte.ops.restore:restore",
    "hippolyte.ops.restore_import:restore_by_import",
    "hippolyte.ops.recover:recover",  # --table: the live table may be a renamed one
    "hippolyte.ops.recover:undo",
)
API_CALLS: frozenset[str]  # every IAM action the code calls; derived on first use


def __getattr__(name: str) -> Any:
    if name == "API_CALLS":  # reading the source takes a moment: only when asked
        return frozenset(api_calls_in_code())
    raise AttributeError(name)


def iam_policy(*, settings: Settings | None = None) -> dict[str, Any]:
    """The least-privilege policy for running the CLI from elsewhere (a server, a laptop, CI):
    every action the code calls, on the settings' tables, repositories and topics."""
    settings = settings or Settings()
    places = target_places(settings, region="*", account="*")

    def arns(service: str, *rests: str) -> list[Resource]:
        return [f"arn:aws:{service}:{r}:{a}:{rest}" for r, a in places for rest in rests]

    repos = sorted({*s3_repositories(settings), *copy_destinations(settings)}) or [("*", "")]
    scope = Scope(
        tables=arns("dynamodb", *(f"table/{p}" for p in table_patterns(settings))),
        restore_tables=arns("dynamodb", "table/*"),
        objects=[objects_arn(b, p) for b, p in repos],
        buckets=[(f"arn:aws:s3:::{b}", p) for b, p in repos],
        topics=list(topics(settings)) or arns("sns", "*"),
        alarms=arns("cloudwatch", "alarm:TargetTracking-table/*"),
        roles=assumed_roles(settings),
        pipeline_roles=_pipeline_roles(settings, accounts={a for _, a in places}),
        import_logs=arns("logs", "log-group:/aws-dynamodb/*"),
    )
    restore = set().union(*(api_calls_in_code(entry) for entry in RESTORE_ENTRIES))
    actions = api_calls_in_code() | object_lock_actions(settings)
    return {"Version": "2012-10-17", "Statement": statements(actions, restore, scope)}


def _pipeline_roles(settings: Settings, *, accounts: set[str]) -> list[str]:
    dp = settings.datapipeline
    return sorted(
        f"arn:aws:iam::{a}:role/{name}" for a in accounts for name in (dp.role, dp.resource_role)
    )


# -- the template --------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _arn(name: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, "Arn"]}


def _sub(text: str) -> Resource:
    return {"Fn::Sub": text} if "${" in text else text


_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _eventbridge(cron: str, *, key: str) -> str:
    """A 5-field cron (the config's schedule) as EventBridge's 6-field ``cron(...)``, where
    one of day-of-month and weekday must be ``?`` (so never both restricted, which cron
    reads as either)."""
    minute, hour, dom, month, dow = cron.split()
    if dow == "*":
        return f"cron({minute} {hour} {dom} {month} ? *)"
    if dom != "*":
        raise ConfigError(
            f"{key}: {cron!r}: a Lambda schedule names a day of the month or a weekday, not both"
        )
    try:
        days = sorted({d % 7 for part in dow.split(",") for d in _day_range(part)})
    except ValueError:
        raise ConfigError(
            f"{key}: {cron!r}: the Lambda schedule's weekday must be days (0-7 or SUN-SAT), "
            "ranges and lists, without steps"
        ) from None
    return f"cron({minute} {hour} ? {month} {','.join(_WEEKDAYS[d] for d in days)} *)"


def _day_range(part: str) -> range:
    """``1``, ``mon``, ``1-5``, ``fri-sat``, ``5-7`` (7 is Sunday, as 0) -> weekday numbers."""
    low, _, high = part.partition("-")
    first, last = _weekday(low), _weekday(high or low)
    if last < first:
        raise ValueError(part)
    return range(first, last + 1)


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    return _WEEKDAYS.index(text.upper())  # ValueError when not a day's name


def _role_policy(settings: Settings) -> dict[str, Any]:
    places = target_places(settings, region="${AWS::Region}", account="${AWS::AccountId}")

    def arns(service: str, *rests: str) -> list[Resource]:
        return [
            _sub(f"arn:${{AWS::Partition}}:{service}:{r}:{a}:{x}") for r, a in places for x in rests
        ]

    extra = sorted(
        {
            *s3_repositories(settings.model_copy(update={"repository": None})),
            *copy_destinations(settings),
        }
    )
    scope = Scope(
        tables=arns("dynamodb", *(f"table/{p}" for p in table_patterns(settings))),
        restore_tables=[],
        objects=[
            _sub("${BackupBucket.Arn}/*"),
            *(_sub(objects_arn(b, p, partition="${AWS::Partition}")) for b, p in extra),
        ],
        buckets=[
            (_arn("BackupBucket"), ""),
            *((_sub(f"arn:${{AWS::Partition}}:s3:::{b}"), p) for b, p in extra),
        ],
        topics=[_ref("Topic"), *topics(settings)],
        alarms=arns("cloudwatch", "alarm:TargetTracking-table/*"),
        logs=[_arn("LogGroup")],
        roles=assumed_roles(settings),
        pipeline_roles=[
            _sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{name}")
            for name in (settings.datapipeline.role, settings.datapipeline.resource_role)
        ],
    )
    actions = api_calls_in_code(LAMBDA_ENTRY) | object_lock_actions(settings)
    drills: list[dict[str, Any]] = []
    if settings.drills is not None:
        on_scratch = drill_table_actions()
        actions |= api_calls_in_code(DRILL_ENTRY) - on_scratch  # its reads, records, notices
        region = settings.drills.target_region
        scratch = [
            _sub(f"arn:${{AWS::Partition}}:dynamodb:{region or r}:{a}:table/{SCRATCH_TABLES}")
            for r, a in places
        ]
        drills = [{"Sid": "Drills", "Effect": "Allow", "Action": sorted(on_scratch)}]
        drills[0]["Resource"] = _unique_list(scratch)
    locks = [
        _if("LockedStrict", _lock_bypass("Deny", "NoLockBypass")),
        _if("LockedBypass", _lock_bypass("Allow", "LockBypassAsked")),
    ]
    body = [*statements(actions, set(), scope), *drills, *locks]
    return {"Version": "2012-10-17", "Statement": body}


def drill_table_actions() -> set[str]:
    """The DynamoDB calls the Lambda's drill job makes on tables (CreateTable, the restore's
    writes, the guard's reads, DeleteTable...): allowed on scratch tables only."""
    calls = api_calls_in_code(DRILL_ENTRY)
    return {a for a in calls if a.startswith("dynamodb:")} - ACCOUNT_WIDE - STREAM_ACTIONS


def _unique_list(items: list[Resource]) -> list[Resource]:
    return [r for i, r in enumerate(items) if r not in items[:i]]


def _if(condition: str, value: Any) -> dict[str, Any]:
    return {"Fn::If": [condition, value, _ref("AWS::NoValue")]}


def _lock_bypass(effect: str, sid: str) -> dict[str, Any]:
    """On an Object Lock bucket: never (Deny, the default) or, when the stack's parameter
    asks, allowed to lift governance locks and remove locked versions."""
    return {
        "Sid": sid,
        "Effect": effect,
        "Action": sorted(LOCK_BYPASS),
        "Resource": [_sub("${BackupBucket.Arn}/*")],
    }


def _bucket() -> dict[str, Any]:
    return {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",  # backups outlive the stack
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            # every object a default retention: created with the bucket, never added later
            "ObjectLockEnabled": _if("HasObjectLock", True),
            "ObjectLockConfiguration": _if(
                "HasObjectLock",
                {
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {
                        "DefaultRetention": {
                            "Mode": _ref("ObjectLockMode"),
                            "Days": _ref("ObjectLockDays"),
                        }
                    },
                },
            ),
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "retention",
                        "Status": "Enabled",
                        "ExpirationInDays": _ref("RetentionDays"),
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        },
    }


def _tls_only() -> dict[str, Any]:
    deny = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [_arn("BackupBucket"), _sub("${BackupBucket.Arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": _ref("BackupBucket"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [deny]},
        },
    }


def _function(settings: Settings) -> dict[str, Any]:
    from hippolyte.ops import context

    env: dict[str, Any] = {
        context.ENV_REPOSITORY: _sub("s3://${BackupBucket}"),
        context.ENV_TOPIC: _ref("Topic"),
        "HIPPOLYTE_CONFIG": _ref("ConfigPath"),
    }
    defaults = Settings().model_dump(mode="json")  # top-level keys only: nested ones stay whole
    dump = settings.model_dump(mode="json", exclude={"repository"})
    baked = {k: v for k, v in dump.items() if v != defaults[k]}
    if baked:
        env[context.ENV_CONFIG_JSON] = json.dumps(baked, separators=(",", ":"))
    if len(json.dumps(env)) > 3500:  # Lambda allows 4 KB of environment in all
        raise ConfigError("the config is too big for an environment variable: package it")
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": _sub("${AWS::StackName}"),
            "Description": "Hippolyte: nightly DynamoDB backups and their monitor",
            "Runtime": "python3.12",
            "Handler": "hippolyte.aws_lambda.handler",
            "Timeout": 900,
            "MemorySize": 1024,
            "Role": _arn("FunctionRole"),
            "Code": {"S3Bucket": _ref("CodeBucket"), "S3Key": _ref("CodeKey")},
            "Environment": {"Variables": env},
            "LoggingConfig": {"LogFormat": "JSON", "LogGroup": _ref("LogGroup")},
        },
    }


def _role(settings: Settings) -> dict[str, Any]:
    trust = {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
            "Policies": [{"PolicyName": "hippolyte", "PolicyDocument": _role_policy(settings)}],
        },
    }


def _schedule(job: str, cron: str) -> dict[str, Any]:
    rule, permission = f"{job.title()}Schedule", f"{job.title()}Permission"
    key = "drills.schedule" if job == "drill" else f"schedule.{job}"  # the config's name
    return {
        rule: {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": _sub(f"${{AWS::StackName}}-{job}"),  # the handler reads the job from it
                "Description": f"Hippolyte {job} (UTC)",
                "ScheduleExpression": _eventbridge(cron, key=key),
                "State": "ENABLED",
                "Targets": [{"Arn": _arn("Function"), "Id": f"hippolyte-{job}"}],
            },
        },
        permission: {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": _ref("Function"),
                "Principal": "events.amazonaws.com",
                "SourceArn": _arn(rule),
            },
        },
    }


def _parameters(code: tuple[str, str] | None) -> dict[str, Any]:
    bucket, key = code or (None, None)

    def text(what: str, default: str | None) -> dict[str, Any]:
        return {"Type": "String", "Description": what} | (
            {} if default is None else {"Default": default}
        )

    return {
        "CodeBucket": text("bucket holding the deployment package (.zip)", bucket),
        "CodeKey": text("key of the deployment package in CodeBucket", key),
        "NotificationEmail": text("e-mail address subscribed to the topic (optional)", ""),
        "RetentionDays": {"Type": "Number", "Default": 35, "MinValue": 1},
        "ConfigPath": text("a hippolyte.toml in the package, e.g. /var/task/hippolyte.toml", ""),
        "ObjectLockMode": {
            "Type": "String",
            "Default": "",
            "AllowedValues": ["", "GOVERNANCE", "COMPLIANCE"],
            "Description": "create the bucket with S3 Object Lock and this default retention "
            "mode (empty: no Object Lock; only possible when the bucket is created)",
        },
        "ObjectLockDays": {
            "Type": "Number",
            "Default": 30,
            "MinValue": 1,
            "Description": "days every object is locked for (with ObjectLockMode)",
        },
        "AllowLockBypass": {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["false", "true"],
            "Description": "let the function lift governance locks and delete locked versions "
            "(s3:BypassGovernanceRetention, s3:DeleteObjectVersion); denied otherwise",
        },
        "CaptureStreamArns": {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "the DynamoDB stream ARNs (LatestStreamArn) of the tables whose "
            "changes the function captures into change sets between backups (optional)",
        },
    }


def _resources(settings: Settings) -> dict[str, Any]:
    log_group = {"LogGroupName": _sub("/aws/lambda/${AWS::StackName}"), "RetentionInDays": 90}
    email = {"Protocol": "email", "Endpoint": _ref("NotificationEmail"), "TopicArn": _ref("Topic")}
    retries = {"FunctionName": _ref("Function"), "Qualifier": "$LATEST", "MaximumRetryAttempts": 0}
    return {
        "BackupBucket": _bucket(),
        "BackupBucketPolicy": _tls_only(),
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": "Hippolyte"}},
        "EmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasEmail",
            "Properties": email,
        },
        "LogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": log_group},
        "FunctionRole": _role(settings),
        "Function": _function(settings),
        # a failed night is reported by the monitor; a retried backup would run twice
        "FunctionRetries": {"Type": "AWS::Lambda::EventInvokeConfig", "Properties": retries},
        **_schedule("backup", settings.schedule.backup),
        **_schedule("monitor", settings.schedule.monitor),
        **(_schedule("drill", settings.drills.schedule) if settings.drills else {}),
        "Fn::ForEach::Capture": [
            "StreamArn",
            _ref("CaptureStreamArns"),
            {"Capture&{StreamArn}": _capture_mapping()},
        ],
    }


def _capture_mapping() -> dict[str, Any]:
    """The function triggered by each listed stream (the handler captures the table from
    its checkpoint; the batch window only gathers triggers)."""
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Condition": "HasCapture",
        "Properties": {
            "EventSourceArn": _ref("StreamArn"),
            "FunctionName": _ref("Function"),
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 1000,
            "MaximumBatchingWindowInSeconds": 60,
            "MaximumRetryAttempts": 2,
        },
    }


def build(*, settings: Settings, code: tuple[str, str] | None = None) -> dict[str, Any]:
    """The template as a dict (long-form intrinsics, so YAML and JSON dump it alike)."""
    outputs = {
        "Repository": _sub("s3://${BackupBucket}"),
        "BucketName": _ref("BackupBucket"),
        "TopicArn": _ref("Topic"),
        "FunctionName": _ref("Function"),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Hippolyte: recurring DynamoDB backups (Lambda, EventBridge, S3, SNS)",
        "Parameters": _parameters(code),
        "Transform": "AWS::LanguageExtensions",  # Fn::ForEach: a mapping per captured stream
        "Conditions": {
            "HasEmail": {"Fn::Not": [{"Fn::Equals": [_ref("NotificationEmail"), ""]}]},
            "HasCapture": {
                "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", _ref("CaptureStreamArns")]}, ""]}]
            },
            "HasObjectLock": {"Fn::Not": [{"Fn::Equals": [_ref("ObjectLockMode"), ""]}]},
            "LockBypassAsked": {"Fn::Equals": [_ref("AllowLockBypass"), "true"]},
            "LockedStrict": {
                "Fn::And": [
                    {"Condition": "HasObjectLock"},
                    {"Fn::Not": [{"Condition": "LockBypassAsked"}]},
                ]
            },
            "LockedBypass": {
                "Fn::And": [{"Condition": "HasObjectLock"}, {"Condition": "LockBypassAsked"}]
            },
        },
        "Resources": _resources(settings),
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }


def template(
    *, fmt: str = "yaml", settings: Settings | None = None, function_code: str | None = None
) -> str:
    """The CloudFormation template as YAML or JSON. ``function_code``: the deployment
    package's ``s3://bucket/key.zip``, the default of the CodeBucket and CodeKey parameters."""
    if fmt not in ("yaml", "json"):
        raise ConfigError(f"unknown template format {fmt!r}: expected yaml or json")
    doc = build(settings=settings or Settings(), code=_code_location(function_code))
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    import yaml  # PyYAML

    return str(yaml.safe_dump(doc, sort_keys=False, width=100))


def _code_location(url: str | None) -> tuple[str, str] | None:
    if url is None:
        return None
    location = s3_location(url)  # (bucket, key)
    if location is None or not location[1]:
        raise ConfigError(f"function code {url!r}: expected the package's s3://BUCKET/KEY.zip")
    return location
