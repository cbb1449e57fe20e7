"""The AWS deployment: the CloudFormation template (cfn-lint, bucket, schedules), the
least-privilege policies against the AWS calls derived from the code, and the Lambda handler
run in-process against moto with a fake context."""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import orjson
import pytest
import yaml
from cfnlint.api import ManualArgs, lint

from hippolyte import aws_lambda
from hippolyte.adapters import aws
from hippolyte.core import config, planning
from hippolyte.core.errors import ConfigError
from hippolyte.core.model import TableInfo
from hippolyte.deploy import iam
from hippolyte.deploy import template as deploy
from hippolyte.ops import context
from tests.support.servers import Server

ACCOUNT = "123456789012"
WRITES = {
    "dynamodb:BatchWriteItem",
    "dynamodb:CreateTable",
    "dynamodb:DeleteTable",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:TagResource",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:UpdateContinuousBackups",
}
RICH = config.validate(
    {
        "repository": "s3://stack-or-cli/prefix",
        "selection": {"include": ["orders", "users"], "always_backup": ["tmp-precious"]},
        "targets": [
            {
                "account": ACCOUNT,
                "region": "eu-west-1",
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/hippolyte",
                "repository": "s3://acme-backups/dynamodb",
            }
        ],
        "notifications": [{"type": "sns", "topic_arn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:ops"}],
    },
    source="test",
)
DRILLED = RICH.model_copy(update={"drills": config.Drills(schedule="30 3 * * 0", sample=2)})


def _lint(text: str) -> list[str]:
    return [str(m) for m in lint(text, config=ManualArgs(regions=["us-east-1"]))]


def _doc(**kwargs: Any) -> dict[str, Any]:
    return dict(yaml.safe_load(deploy.template(**kwargs)))


def _statements(
    policy: dict[str, Any], conditions: frozenset[str] | set[str]
) -> list[dict[str, Any]]:
    """The policy's statements as CloudFormation resolves them when ``conditions`` are true."""
    out = []
    for s in policy["Statement"]:
        if "Fn::If" in s:
            condition, yes, no = s["Fn::If"]
            s = yes if condition in conditions else no
        if s != {"Ref": "AWS::NoValue"}:
            out.append(s)
    return out


def _allowed(
    policy: dict[str, Any], conditions: frozenset[str] | set[str] = frozenset()
) -> set[str]:
    return {
        a for s in _statements(policy, conditions) if s["Effect"] == "Allow" for a in s["Action"]
    }


def _denied(policy: dict[str, Any], conditions: set[str]) -> set[str]:
    return {
        a for s in _statements(policy, conditions) if s["Effect"] == "Deny" for a in s["Action"]
    }


def _role_policy(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["Resources"]["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"])


# -- the template --------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "settings"), [("yaml", None), ("json", RICH), ("yaml", DRILLED)])
def test_cfn_lint_accepts_the_template(fmt: str, settings: config.Settings | None) -> None:
    text = deploy.template(fmt=fmt, settings=settings, function_code="s3://artifacts/h.zip")
    assert _lint(text) == []
    if fmt == "json":
        assert json.loads(text)["Resources"]["Function"]


def test_cfn_lint_is_not_vacuous() -> None:
    broken = deploy.template().replace("Runtime: python3.12", "Runtime: python2.7")
    assert any("python2.7" in m for m in _lint(broken))


def test_bucket_is_private_encrypted_versioned_retained_with_retention() -> None:
    bucket = _doc()["Resources"]["BackupBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == {"Ref": "RetentionDays"}


def test_an_object_lock_bucket_and_a_role_that_cannot_lift_its_locks() -> None:
    doc = _doc(settings=RICH)
    props = doc["Resources"]["BackupBucket"]["Properties"]
    assert doc["Parameters"]["ObjectLockMode"]["AllowedValues"] == ["", "GOVERNANCE", "COMPLIANCE"]
    assert props["ObjectLockEnabled"]["Fn::If"][:2] == ["HasObjectLock", True]
    rule = props["ObjectLockConfiguration"]["Fn::If"][1]["Rule"]["DefaultRetention"]
    assert rule == {"Mode": {"Ref": "ObjectLockMode"}, "Days": {"Ref": "ObjectLockDays"}}
    policy = _role_policy(doc)
    bypass = {"s3:BypassGovernanceRetention", "s3:DeleteObjectVersion"}
    assert not _allowed(policy) & bypass and not _denied(policy, set())  # no lock: no statement
    strict = {"HasObjectLock", "LockedStrict"}
    assert not _allowed(policy, strict) & bypass and _denied(policy, strict) == bypass
    asked = {"HasObjectLock", "LockBypassAsked", "LockedBypass"}
    assert _allowed(policy, asked) & bypass == bypass and not _denied(policy, asked)
    # forget reads locks; the CLI writes retentions only under [object_lock]
    assert iam.OBJECT_LOCK_READS <= _allowed(policy)
    assert "s3:PutObjectRetention" not in _allowed(deploy.iam_policy(settings=RICH))
    locked = RICH.model_copy(update={"object_lock": config.ObjectLock(mode="COMPLIANCE", days=9)})
    assert "s3:PutObjectRetention" in _allowed(deploy.iam_policy(settings=locked))


def test_schedules_topic_and_function_as_the_original() -> None:
    doc = _doc(function_code="s3://artifacts/hippolyte.zip")
    res = doc["Resources"]
    rules = [k for k, r in res.items() if isinstance(r, dict) and r["Type"] == "AWS::Events::Rule"]
    assert rules == ["BackupSchedule", "MonitorSchedule"]
    for job, cron in (("backup", "cron(10 0 * * ? *)"), ("monitor", "cron(15 1-10 * * ? *)")):
        rule = res[f"{job.title()}Schedule"]["Properties"]
        assert rule["ScheduleExpression"] == cron
        assert rule["Name"]["Fn::Sub"].endswith(job)
        perm = res[f"{job.title()}Permission"]["Properties"]
        assert perm["Principal"] == "events.amazonaws.com"
        assert perm["SourceArn"] == {"Fn::GetAtt": [f"{job.title()}Schedule", "Arn"]}
    fn = res["Function"]["Properties"]
    assert fn["Handler"] == "hippolyte.aws_lambda.handler"
    assert int(fn["Runtime"].removeprefix("python3.")) >= 11 and fn["Timeout"] == 900
    assert fn["Environment"]["Variables"]["HIPPOLYTE_REPOSITORY"] == {
        "Fn::Sub": "s3://${BackupBucket}"
    }
    assert res["EmailSubscription"]["Condition"] == "HasEmail"
    assert doc["Parameters"]["CodeBucket"]["Default"] == "artifacts"
    assert doc["Parameters"]["CodeKey"]["Default"] == "hippolyte.zip"
    assert {"NotificationEmail", "RetentionDays"} <= set(doc["Parameters"])


def test_bad_template_requests_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="xml"):
        deploy.template(fmt="xml")
    with pytest.raises(ConfigError, match="s3://BUCKET/KEY"):
        deploy.template(function_code="./build.zip")
    either = config.validate({"schedule": {"backup": "10 0 1 * 1"}}, source="test")
    with pytest.raises(ConfigError, match="schedule.backup: .* or a weekday, not both"):
        deploy.template(settings=either)  # cron runs on either; EventBridge cannot say so
    stepped = config.validate({"drills": {"schedule": "0 4 * * */2"}}, source="test")
    with pytest.raises(ConfigError, match="drills.schedule: .* without steps"):
        deploy.template(settings=stepped)


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("10 0 * * *", "cron(10 0 * * ? *)"),
        ("30 3 * * 0", "cron(30 3 ? * SUN *)"),
        ("30 3 * * 7", "cron(30 3 ? * SUN *)"),
        ("0 4 * 1-6 mon-fri", "cron(0 4 ? 1-6 MON,TUE,WED,THU,FRI *)"),
        ("0 4 * * 5-7,2", "cron(0 4 ? * SUN,TUE,FRI,SAT *)"),
    ],
)
def test_weekdays_become_eventbridge_s(cron: str, expected: str) -> None:
    assert deploy._eventbridge(cron, key="drills.schedule") == expected


# -- least privilege ------------------------------------------------------------------------------


def test_the_derived_calls_are_the_code_s_calls() -> None:
    calls = iam.api_calls_in_code()
    assert {
        "dynamodb:Scan",
        "dynamodb:ListTables",
        "dynamodb:DescribeLimits",
        "dynamodb:UpdateTable",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateTimeToLive",  # dispatched by getattr from restore_plan's steps
        "s3:PutObject",
        "s3:AbortMultipartUpload",  # upload_fileobj's multipart upload
        "s3:ListBucket",
        "sns:Publish",
        "application-autoscaling:RegisterScalableTarget",
    } <= calls
    assert deploy.API_CALLS == calls
    assert all(c.line > 0 and c.unit.startswith("hippolyte.") for c in iam.calls_in_code())


def test_cli_policy_allows_every_call_and_nothing_else() -> None:
    for settings in (None, RICH):
        allowed = _allowed(deploy.iam_policy(settings=settings))
        calls = iam.api_calls_in_code()
        assert calls <= allowed, calls - allowed
        assert allowed - calls <= set(iam.NECESSITIES), allowed - calls


def test_lambda_role_allows_its_calls_and_never_writes_into_tables() -> None:
    allowed = _allowed(_role_policy(_doc(settings=RICH)))
    calls = iam.api_calls_in_code(deploy.LAMBDA_ENTRY)
    assert calls <= allowed, calls - allowed
    assert allowed - calls <= set(iam.NECESSITIES), allowed - calls
    assert {"dynamodb:Scan", "sns:Publish", "dynamodb:UpdateTable"} <= allowed
    assert not allowed & WRITES


def test_drills_add_a_schedule_and_writes_on_scratch_tables_only() -> None:
    plain, drilled = _doc(settings=RICH)["Resources"], _doc(settings=DRILLED)["Resources"]
    assert "DrillSchedule" not in plain and "DrillPermission" not in plain
    rule = drilled["DrillSchedule"]["Properties"]
    assert rule["ScheduleExpression"] == "cron(30 3 ? * SUN *)"
    assert rule["Name"] == {"Fn::Sub": "${AWS::StackName}-drill"}
    assert aws_lambda.action_of(_rule("stack-drill")) == "drill"
    perm = drilled["DrillPermission"]["Properties"]
    assert perm["SourceArn"] == {"Fn::GetAtt": ["DrillSchedule", "Arn"]}
    # the handler's reach stops at the drill job: its writes never join "Tables"
    assert deploy.DRILL_ENTRY not in iam.reached(deploy.LAMBDA_ENTRY)
    handler, job = (
        iam.api_calls_in_code(deploy.LAMBDA_ENTRY),
        iam.api_calls_in_code(deploy.DRILL_ENTRY),
    )
    assert not handler & WRITES
    assert {"dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:BatchWriteItem"} <= job
    role = _role_policy(_doc(settings=DRILLED))
    allowed = _allowed(role)
    assert handler | job <= allowed, (handler | job) - allowed
    assert allowed - handler - job <= set(iam.NECESSITIES)
    by_sid = {s["Sid"]: s for s in _statements(role, set())}
    drills = by_sid.pop("Drills")
    assert (
        set(drills["Action"])
        == deploy.drill_table_actions()
        == job - {a for a in job if not a.startswith("dynamodb:")}
    )
    assert drills["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:dynamodb:eu-west-1:"
            f"{ACCOUNT}:table/*-drill-????????-??????-????"
        }
    ]
    assert WRITES & set(drills["Action"])
    for sid, statement in by_sid.items():  # every other statement: no table write at all
        assert not WRITES & set(statement["Action"]), sid


def test_the_scratch_pattern_matches_scratch_tables_only() -> None:
    import datetime as dt
    import fnmatch

    from hippolyte.core import drill

    drill_id = drill.drill_id(dt.datetime(2026, 11, 30, tzinfo=dt.UTC), token="3fa9")
    assert fnmatch.fnmatchcase(drill.scratch_name("orders", drill_id), deploy.SCRATCH_TABLES)
    for name in ("orders", "orders-drill-results", "ops-drill-2026-notes", "orders-drill-"):
        assert not fnmatch.fnmatchcase(name, deploy.SCRATCH_TABLES), name


def test_fit_drills_keeps_what_restores_in_the_time_left() -> None:
    gb = 1_000_000_000
    sizes = [("small", 1000), ("big", gb), ("tiny", 0)]  # ~60 s, ~1,060 s, 60 s
    kept, deferred = aws_lambda.fit_drills(sizes, remaining_s=300, margin_s=60)
    assert kept == ["small", "tiny"]  # 2 x 72 s fit in 240 s; 1,272 s do not
    (big,) = deferred
    assert big.table == "big" and big.estimate_s == pytest.approx(1060)
    assert "1.00 GB" in big.reason and "228 s left" in big.reason
    assert "hippolyte serve" in big.reason


def test_resources_are_narrowed_by_the_settings() -> None:
    by_sid = {s["Sid"]: s for s in deploy.iam_policy(settings=RICH)["Statement"]}
    tables = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/"
    assert by_sid["RestoreTargets"]["Resource"] == [tables + "*"]  # a restore may name any table
    assert by_sid["RepositoryObjects"]["Resource"] == [
        "arn:aws:s3:::acme-backups/dynamodb/*",
        "arn:aws:s3:::stack-or-cli/prefix/*",
    ]
    listing = by_sid["RepositoryList0"]
    assert listing["Resource"] == ["arn:aws:s3:::acme-backups"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["dynamodb/*"]}}
    assert by_sid["Notify"]["Resource"] == [f"arn:aws:sns:eu-west-1:{ACCOUNT}:ops"]
    stars = {s["Sid"] for s in by_sid.values() if "*" in s["Resource"]}
    # Data Pipeline: pipelines are created per run, so no ARN is known ahead
    assert stars == {"AccountWideDynamoDB", "Autoscaling", "AutoscalingAlarmsRead", "DataPipeline"}
    role = {s["Sid"]: s for s in _statements(_role_policy(_doc(settings=RICH)), set())}
    assert [r["Fn::Sub"].rpartition(":")[2] for r in role["Tables"]["Resource"]] == [
        "table/orders*",
        "table/tmp-precious",
        "table/users*",
    ]
    assert {"Ref": "Topic"} in role["Notify"]["Resource"]
    assert role["RepositoryObjects"]["Resource"] == [
        {"Fn::Sub": "${BackupBucket.Arn}/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::acme-backups/dynamodb/*"},
    ]
    assert role["AssumeTargetRoles"]["Resource"] == [f"arn:aws:iam::{ACCOUNT}:role/hippolyte"]


def test_the_baked_config_reaches_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _doc(settings=RICH)["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    monkeypatch.setenv(context.ENV_CONFIG_JSON, env[context.ENV_CONFIG_JSON])
    monkeypatch.setenv(context.ENV_REPOSITORY, "s3://stack-bucket")
    settings = aws_lambda.settings_for(_Context(remaining_s=900))
    assert settings.repository == "s3://stack-bucket"  # the stack's bucket, not the file's
    assert settings.selection == RICH.selection and settings.targets == RICH.targets


# -- the handler, against moto -------------------------------------------------------------------


@dataclass
class _Context:
    remaining_s: float
    region: str = "eu-west-3"
    aws_request_id: str = "req-1"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:hippolyte"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_s * 1000)


def _rule(name: str) -> dict[str, Any]:
    arn = f"arn:aws:events:eu-west-3:{ACCOUNT}:rule/{name}"
    return {"source": "aws.events", "detail-type": "Scheduled Event", "resources": [arn]}


@dataclass
class _Stack:
    server: Server
    bucket: str
    prefix: str
    region: str = "eu-west-3"

    def client(self, service: str) -> Any:
        make: Any = boto3.client  # boto3-stubs overloads want a literal service name
        return make(service, region_name=self.region, endpoint_url=self.server.endpoint_url)

    def table(self, name: str, *, rcu: int, items: int) -> str:
        ddb, full = self.client("dynamodb"), f"{self.prefix}{name}"
        ddb.create_table(
            TableName=full,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": rcu, "WriteCapacityUnits": 100},
        )
        for start in range(0, items, 25):
            batch = [
                {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"S": "x" * 100}}}}
                for i in range(start, min(items, start + 25))
            ]
            ddb.batch_write_item(RequestItems={full: batch})
        return full

    def keys(self) -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def get(self, key: str) -> Any:
        return orjson.loads(
            self.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        )


@pytest.fixture
def stack(moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> _Stack:
    """The template's bucket, topic and environment on moto; tables get a fresh prefix."""
    for service in ("DYNAMODB", "DYNAMODB_STREAMS", "S3", "APPLICATION_AUTO_SCALING", "SNS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_server.endpoint_url)
    monkeypatch.setattr(aws, "_sessions", {})
    name = uuid.uuid4().hex[:10]
    stack = _Stack(moto_server, bucket=f"hippolyte-{name}", prefix=f"t{name}-")
    stack.client("s3").create_bucket(
        Bucket=stack.bucket, CreateBucketConfiguration={"LocationConstraint": stack.region}
    )
    topic = stack.client("sns").create_topic(Name=f"hippolyte-{name}")["TopicArn"]
    monkeypatch.setenv(context.ENV_REPOSITORY, f"s3://{stack.bucket}")
    monkeypatch.setenv(context.ENV_TOPIC, topic)
    monkeypatch.delenv("HIPPOLYTE_CONFIG", raising=False)
    monkeypatch.setenv(
        context.ENV_CONFIG_JSON, json.dumps({"selection": {"include": [stack.prefix]}})
    )
    return stack


def _committed(stack: _Stack, table: str) -> bool:
    return any(k.startswith(f"{table}/") and k.endswith("/_SUCCESS") for k in stack.keys())


def test_backup_rule_backs_up_the_selected_tables(stack: _Stack) -> None:
    a, b = stack.table("orders", rcu=100, items=30), stack.table("users", rcu=100, items=3)
    summary = aws_lambda.handler(_rule("hippolyte-backup"), _Context(remaining_s=890))
    assert summary["action"] == "backup" and summary["ok"], summary
    assert summary["failures"] == [] and len(summary["runs"]) == 1
    assert _committed(stack, a) and _committed(stack, b)
    (target,) = summary["targets"]
    assert target["target"] == f"{ACCOUNT}/eu-west-3"  # account and region from the ARN
    assert json.loads(json.dumps(summary)) == summary  # JSON-ready


def test_monitor_rule_checks_the_run_and_notifies(stack: _Stack) -> None:
    stack.table("orders", rcu=100, items=5)
    assert aws_lambda.handler({"action": "backup"}, _Context(remaining_s=890))["ok"]
    summary = aws_lambda.handler(_rule("hippolyte-monitor"), _Context(remaining_s=890))
    assert summary["action"] == "monitor" and summary["ok"], summary
    assert len(summary["runs"]) == 1 and summary["failures"] == []
    assert summary["notifications"] == []  # nothing failed: no message


def test_a_table_too_big_for_the_time_left_fails_with_the_reason(
    stack: _Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(aws_lambda.ENV_MARGIN, "0")
    monkeypatch.setenv(
        context.ENV_CONFIG_JSON,
        json.dumps({"selection": {"include": [stack.prefix]}, "planning": {"table_start_s": 0}}),
    )
    small = stack.table("small", rcu=100, items=3)  # ~3 KB at 50 RCU/s: well under a second
    big = stack.table("big", rcu=1, items=150)  # ~150 KB at 0.5 RCU/s: ~38 s
    summary = aws_lambda.handler(_rule("hippolyte-backup"), _Context(remaining_s=30))
    assert not summary["ok"]
    (failure,) = summary["failures"]
    assert failure["table"] == big
    assert "30 s left in this Lambda" in failure["reason"]
    assert "native export engine" in failure["reason"] and "hippolyte serve" in failure["reason"]
    assert _committed(stack, small) and not _committed(stack, big)
    run = summary["runs"][0]
    assert stack.get(f"@runs/{run}/lambda.json")["failures"] == [failure]
    planned = {
        t["table"] for p in stack.get(f"@runs/{run}/plan.json")["pipelines"] for t in p["tables"]
    }
    assert planned == {small, big}  # so the monitor reports the big one as well
    monitored = aws_lambda.handler({"action": "monitor"}, _Context(remaining_s=890))
    assert [f["table"] for f in monitored["failures"]] == [big]
    (sent,) = monitored["notifications"]
    assert sent["ok"], sent


def test_explicit_action_with_no_config(stack: _Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(context.ENV_CONFIG_JSON)
    ctx = _Context(remaining_s=890, region="ap-northeast-3")  # a region of its own: all tables
    summary = aws_lambda.handler({"action": "monitor"}, ctx)
    assert summary["action"] == "monitor" and not summary["ok"]
    assert summary["failures"][0]["reason"] == "nothing ran"
    assert summary["notifications"][0]["ok"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"source": "aws.events", "resources": []}, "cannot tell the job"),
        (_rule("nightly-something"), "cannot tell the job"),
        ({"action": "restore"}, "unknown action 'restore'"),
        ("backup", "not a JSON object"),
    ],
)
def test_unknown_events_are_a_clear_error(stack: _Stack, event: Any, message: str) -> None:
    summary = aws_lambda.handler(event, _Context(remaining_s=890))
    assert summary["ok"] is False and message in summary["error"]
    assert stack.keys() == []  # nothing was touched


@pytest.mark.parametrize(
    ("arn", "job"),
    [
        (f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/hippolyte-backup", "backup"),
        (f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/my-bus/prod-monitor", "monitor"),
        (f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/ops-monitor-backup", "backup"),
    ],
)
def test_the_rule_name_picks_the_job(arn: str, job: str) -> None:
    assert aws_lambda.action_of({"resources": [arn]}) == job


def test_fit_keeps_what_finishes_in_the_time_left() -> None:
    tables = [
        TableInfo(name=f"t{i}", read_capacity=10, size_bytes=100 * 10 * 4096) for i in range(3)
    ]
    ps = planning.PlanSettings(table_start_s=0, pipeline_start_s=0)
    plan = planning.plan(tables, settings=ps)  # ~100 s each, all in one pipeline
    assert len(plan.pipelines) == 1
    cut, deferred = aws_lambda.fit(plan, remaining_s=300, lanes=4, margin_s=0)
    assert [t.estimate.table for t in cut.tables] == ["t0", "t1"]  # 2 x 120 s fit, not 3
    assert [d.table for d in deferred] == ["t2"] and "60 s left" in deferred[0].reason


def test_logs_are_json_lines_in_lambda(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("hippolyte")
    for attr in ("handlers", "propagate", "level"):  # json_logging changes them: put them back
        value = getattr(logger, attr)
        monkeypatch.setattr(logger, attr, list(value) if attr == "handlers" else value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "hippolyte")
    aws_lambda.handler({"action": "restore"}, _Context(remaining_s=890))
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert line["level"] == "error" and line["message"] == "job failed"
    assert "unknown action" in line["error"]


def _stream_event(stream_arn: str, *, n: int = 1) -> dict[str, Any]:
    """What an event source mapping delivers: a batch of one shard's records (the handler
    reads the stream itself; the batch is the trigger)."""
    return {
        "Records": [
            {
                "eventID": str(i),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": stream_arn,
                "awsRegion": "eu-west-3",
                "dynamodb": {"Keys": {"pk": {"S": f"k{i}"}}, "SequenceNumber": str(100 + i)},
            }
            for i in range(n)
        ]
    }


def test_a_streams_event_captures_its_table_into_change_sets(stack: _Stack) -> None:
    from hippolyte.repo import changes
    from hippolyte.repo.lock import RepoLock

    table = stack.table("orders", rcu=100, items=3)
    ddb = stack.client("dynamodb")
    ddb.update_table(
        TableName=table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    for i in range(5):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"new{i}"}, "v": {"N": str(i)}})
    assert aws_lambda.action_of(_stream_event(arn)) == "capture"
    summary = aws_lambda.handler(_stream_event(arn, n=3), _Context(remaining_s=300))
    assert summary["action"] == "capture" and summary["ok"], [t["error"] for t in summary["tables"]]
    (result,) = summary["tables"]
    assert result["table"] == table and result["status"] == "caught-up"
    storage = context.storage_for(context.lambda_settings(region=stack.region, account=None))
    captured = [
        c.keys
        for s in changes.change_sets(storage, table)
        for c in changes.read_changes(storage, s)
    ]
    assert sum(b"new" in k for k in captured) == 5
    # another invocation while one captures the table leaves the work to it
    lock = RepoLock(
        storage=storage, lease_s=60, purpose="capture", key=f"{table}/@capture/lock.json"
    )
    assert lock.acquire()
    try:
        busy = aws_lambda.handler(_stream_event(arn), _Context(remaining_s=300))
    finally:
        lock.release()
    assert busy["ok"] and [(t["table"], t["status"]) for t in busy["tables"]] == [(table, "busy")]


def test_the_template_maps_each_listed_stream_to_the_function() -> None:
    doc = _doc()
    assert doc["Transform"] == "AWS::LanguageExtensions"
    assert doc["Parameters"]["CaptureStreamArns"]["Type"] == "CommaDelimitedList"
    name, over, body = doc["Resources"]["Fn::ForEach::Capture"]
    assert (name, over) == ("StreamArn", {"Ref": "CaptureStreamArns"})
    mapping = body["Capture&{StreamArn}"]
    assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
    assert mapping["Condition"] == "HasCapture"
    assert mapping["Properties"]["EventSourceArn"] == {"Ref": "StreamArn"}
    role = _role_policy(doc)
    streams = [s for s in _statements(role, set()) if s["Sid"] == "Streams"]
    assert streams and "dynamodb:GetRecords" in streams[0]["Action"]


def test_the_drill_rule_restores_proves_and_deletes_what_fits(
    stack: _Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hippolyte.repo import drills

    monkeypatch.setenv(aws_lambda.ENV_MARGIN, "0")
    settings = {"selection": {"include": [stack.prefix]}, "drills": {"sample": 2}}
    monkeypatch.setenv(context.ENV_CONFIG_JSON, json.dumps(settings))
    a, b = stack.table("orders", rcu=100, items=30), stack.table("users", rcu=100, items=3)
    assert aws_lambda.handler(_rule("hippolyte-backup"), _Context(remaining_s=890))["ok"]
    # time for one drill only: 72 s each with the 20 % margin, 100 s left
    summary = aws_lambda.handler(_rule("hippolyte-drill"), _Context(remaining_s=100))
    assert summary["action"] == "drill" and not summary["ok"] and summary["error"] is None
    done, left_out = summary["tables"]
    assert {done["table"], left_out["table"]} == {a, b}
    assert done["ok"] and done["deleted"] and done["items"] == (30 if done["table"] == a else 3)
    assert done["scratch"].startswith(f"{done['table']}-drill-")
    assert not left_out["ok"] and "needs about 60 s (0.00 GB)" in left_out["error"]
    assert re.search(r"the 2\d s left in this Lambda", left_out["error"])  # 100 - 72 - setup
    assert summary["failures"] == [
        {"drill": summary["runs"][0], "table": left_out["table"], "reason": left_out["error"]}
    ]
    assert [n["ok"] for n in summary["notifications"]] == [True]  # a failed drill is told
    names = stack.client("dynamodb").list_tables()["TableNames"]
    assert not [n for n in names if "-drill-" in n]  # the scratch table is gone, none other
    assert a in names and b in names
    storage = context.storage_for(context.lambda_settings(region=stack.region, account=None))
    record = drills.read_drill(storage, summary["runs"][0])
    assert [(t.table, t.ok, t.deleted) for t in record.tables] == [
        (done["table"], True, True),
        (left_out["table"], False, False),
    ]
    assert json.loads(json.dumps(summary)) == summary  # JSON-ready


def test_the_drill_rule_without_drills_is_refused(stack: _Stack) -> None:
    summary = aws_lambda.handler(_rule("hippolyte-drill"), _Context(remaining_s=890))
    assert summary["ok"] is False and summary["error"] == aws_lambda.DRILL_ELSEWHERE
    assert "[drills]" in summary["error"] and stack.keys() == []  # nothing was touched


def test_copies_destinations_are_in_the_policies() -> None:
    """[[copies]]: a destination written with our credentials is in the repository
    statements, one reached through its role only through sts:AssumeRole; a destination's
    own Object Lock needs PutObjectRetention."""
    offsite = f"arn:aws:iam::{ACCOUNT}:role/offsite"
    settings = RICH.model_copy(
        update={
            "copies": [
                config.Copy(
                    to="s3://dr-bucket/copies",
                    object_lock=config.ObjectLock(mode="GOVERNANCE", days=7),
                ),
                config.Copy(to="s3://other-account/x", role_arn=offsite),
            ]
        }
    )
    by_sid = {s["Sid"]: s for s in deploy.iam_policy(settings=settings)["Statement"]}
    assert "arn:aws:s3:::dr-bucket/copies/*" in by_sid["RepositoryObjects"]["Resource"]
    assert not any("other-account" in str(s["Resource"]) for s in by_sid.values())
    assert offsite in by_sid["AssumeTargetRoles"]["Resource"]
    assert "s3:PutObjectRetention" in _allowed(deploy.iam_policy(settings=settings))
    role = {s["Sid"]: s for s in _statements(_role_policy(_doc(settings=settings)), set())}
    assert {"Fn::Sub": "arn:${AWS::Partition}:s3:::dr-bucket/copies/*"} in role[
        "RepositoryObjects"
    ]["Resource"]
    assert offsite in role["AssumeTargetRoles"]["Resource"]
