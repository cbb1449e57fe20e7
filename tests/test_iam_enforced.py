"""Least privilege, proven by enforcement: moto server checks every call against the caller's
IAM policy (tests/support/iam_moto.py says exactly what it checks: the action for DynamoDB,
DynamoDB Streams, Application Auto Scaling, SNS and Data Pipeline; the action and the bucket
or object for S3; no condition). A user holding exactly ``hippolyte deploy iam-policy``'s
policy runs every command of the night and of a recovery: everything works. Then each
statement is removed in turn and the commands that called one of its actions run again: one
fails with exit 6 and a message naming a denied action of that statement (or, where the product
degrades by design, reports the denied action and carries on). The same for the Lambda
function's role, as the template's stack resolves it, through the handler's invocations.

What moto cannot show is listed in ``UNSEEN`` with the reason: those statements rest on AWS's
documentation, not on this test.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from hippolyte import cli
from hippolyte.adapters import aws
from hippolyte.ops.sample_tables import fill
from tests.support import iam_moto
from tests.support.iam_moto import Enforcing, Keys
from tests.support.servers import REGION, start_moto

servers = pytest.mark.servers

BUCKET = "hippolyte-iam-proof"
REPO = f"s3://{BUCKET}/repo"
ORDERS, LIVE = "iam-orders", "iam-live"  # boosted and exported; restored, diffed, recovered
SPARE = "spare"  # outside the selection: two backups of it, one for forget to remove
ORDER_KEY = [("customer", "S", "HASH"), ("order", "N", "RANGE")]
ITEMS = 40
# Statements whose necessity moto cannot show, and why (their actions rest on AWS's docs).
UNSEEN = {
    "AutoscalingAlarmsRead": "Application Auto Scaling reads the target-tracking alarms as the "
    "caller on AWS; moto creates and reads them itself, unchecked",
    "AutoscalingAlarms": "as AutoscalingAlarmsRead: moto's PutScalingPolicy writes the alarms "
    "itself",
    "ImportTableLogs": "ImportTable logs item errors to CloudWatch Logs as the caller on AWS; "
    "moto's import writes no logs",
    "RepositoryBuckets": "moto checks GET ?object-lock as s3:ListBucket, not as "
    "s3:GetBucketObjectLockConfiguration",
    "PassPipelineRoles": "moto's CreatePipeline does not check iam:PassRole",
}
# A denied call these statements allow is reported, and the command carries on, by design.
REPORTED = {
    "Autoscaling": "a boost that cannot happen backs the table up at its own capacity: "
    "the run's capacity note names the denied call",
    "Notify": "a notification that cannot be sent is reported by the monitor, which exits 1 "
    "for the night's failure either way",
}
# A fleet's backup reports each table's failure with its reason and exits 1 (ExitCode.FAILED:
# "a table's backup did not complete"), whatever the reason.
FLEET = {"backup-all-boosted"}
_DENIED = re.compile(
    r"not authorized to perform:? ([\w-]+:\w+)|([\w-]+:\w+) is not allowed", re.IGNORECASE
)


# -- the world: an enforcing moto, a bucket, a topic, tables, a config ----------------------------


@dataclass
class World:
    moto: Enforcing
    config: Path
    topic: str
    refs: dict[str, str] = field(default_factory=dict)
    names: Iterator[int] = field(default_factory=itertools.count)

    def table(self, name: str, *, rcu: int) -> None:
        ddb = self.moto.client("dynamodb")
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, _, k in ORDER_KEY],
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": t} for a, t, _ in ORDER_KEY
            ],
            ProvisionedThroughput={"ReadCapacityUnits": rcu, "WriteCapacityUnits": 100},
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        fill(ddb, name, (_item(i) for i in range(ITEMS)))

    def change_live(self) -> None:
        """Make the live table differ from its backup: one item gone, one changed, one new."""
        ddb = self.moto.client("dynamodb")
        ddb.delete_item(TableName=LIVE, Key={k: v for k, v in _item(0).items() if k != "note"})
        ddb.put_item(TableName=LIVE, Item={**_item(1), "note": {"S": "changed"}})
        ddb.put_item(TableName=LIVE, Item=_item(10_000))


def _item(i: int) -> dict[str, Any]:
    """Plain items: moto's ImportTable does not keep every type exactly (not what this tests)."""
    return {"customer": {"S": f"c{i % 7}"}, "order": {"N": str(i)}, "note": {"S": "x" * 200}}


def _autoscaling(moto: Enforcing, table: str) -> None:
    aas = moto.client("application-autoscaling")
    target = dict(
        ServiceNamespace="dynamodb",
        ResourceId=f"table/{table}",
        ScalableDimension="dynamodb:table:ReadCapacityUnits",
    )
    aas.register_scalable_target(**target, MinCapacity=1, MaxCapacity=50)
    aas.put_scaling_policy(
        **target,
        PolicyName=f"{table}-read",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
            },
        },
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with start_moto() as server, pytest.MonkeyPatch.context() as mp:
        moto = Enforcing(server=server, admin=iam_moto.enforce(server))
        mp.setenv("AWS_ENDPOINT_URL", server.endpoint_url)  # every service: moto
        mp.setenv("AWS_REGION", REGION)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name in ("AWS_PROFILE", "HIPPOLYTE_CONFIG", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        moto.client("s3").create_bucket(Bucket=BUCKET)
        topic = moto.client("sns").create_topic(Name="hippolyte-iam")["TopicArn"]
        config = tmp_path_factory.mktemp("iam") / "hippolyte.toml"
        config.write_text(
            f'repository = "{REPO}"\nread_percent = 0.5\nworkers = 2\n'
            f'[[targets]]\nregion = "{REGION}"\n'
            f'[selection]\ninclude = ["iam-"]\n'
            f'[planning]\nwindow_start = "00:00"\nwindow_end = "00:01"\n'
            f"pipeline_start_s = 55\ntable_start_s = 1\n"
            f'[[notifications]]\ntype = "sns"\ntopic_arn = "{topic}"\n'
            f'[datapipeline]\nsubnet_id = "subnet-0123abcd"\n'
        )
        w = World(moto=moto, config=config, topic=topic)
        w.table(ORDERS, rcu=1)
        w.table(LIVE, rcu=1000)
        w.table(SPARE, rcu=1000)
        _autoscaling(moto, ORDERS)
        moto.client("dynamodb").update_continuous_backups(
            TableName=ORDERS,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
        with _as(mp, moto.admin):  # two backups of SPARE, so that forget has one to remove
            for _ in range(2):
                assert _cli(w, "backup", SPARE, "--json").code == 0
        yield w


# -- the commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    def denied(self) -> set[str]:
        """The actions a message names as denied."""
        found = _DENIED.findall(self.out + self.err)
        return {a or b for a, b in found}


@dataclass(frozen=True)
class Step:
    name: str
    args: Callable[[World], list[str]]
    expect: int  # the exit code under the full policy
    before: Callable[[World], None] | None = None
    after: Callable[[World, Outcome], None] | None = None


def _cli(w: World, *args: str) -> Outcome:
    """The CLI in-process (diff writes bytes to stdout: a text stream over bytes)."""
    raw = io.BytesIO(), io.BytesIO()
    out, err = (io.TextIOWrapper(r, encoding="utf-8", write_through=True) for r in raw)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["--config", str(w.config), *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Outcome(code, raw[0].getvalue().decode(), raw[1].getvalue().decode())


class Calls:
    """The IAM actions of the AWS calls made, per step: botocore's public ``before-call`` event
    on every session the product makes. Observed, never altered."""

    def __init__(self) -> None:
        self.by_step: dict[str, set[str]] = {}
        self._now: set[str] = set()

    def start(self, step: str) -> None:
        self._now = self.by_step.setdefault(step, set())

    def seen(self, model: Any, **_: Any) -> None:
        self._now.add(aws.iam_action(model.service_model.service_name, model.name))


@contextlib.contextmanager
def _as(mp: pytest.MonkeyPatch, keys: Keys, calls: Calls | None = None) -> Iterator[None]:
    """The product runs with ``keys`` (fresh sessions: they are cached per connection)."""
    with mp.context() as inner:
        inner.setenv("AWS_ACCESS_KEY_ID", keys.access_key)
        inner.setenv("AWS_SECRET_ACCESS_KEY", keys.secret_key)
        inner.setattr(aws, "_sessions", {})
        if calls is not None:
            make = aws._make_session

            def recorded(conn: aws.Connection) -> Any:
                session = make(conn)
                session.events.register("before-call", calls.seen)
                return session

            inner.setattr(aws, "_make_session", recorded)
        yield


def _refs(w: World, outcome: Outcome) -> None:
    """Keep the refs of the backups just made (those of the full run, if a later run fails)."""
    for r in orjson.loads(outcome.out)["results"]:
        w.refs[r["table"]] = f"{r['table']}/{r['ref']['backup_id']}"


def _fresh(w: World, prefix: str) -> str:
    return f"restored-{prefix}-{next(w.names)}"  # outside the selection: not backed up


DP = ["--repo", f"{REPO}/dp", "--json"]
STEPS = [
    Step("discover", lambda w: ["discover", "--json"], 0),
    Step("plan", lambda w: ["plan", "--format", "json"], 0),
    # an empty repository: nothing ran, so the monitor notifies (SNS) and exits 1
    Step("monitor-notifies", lambda w: ["monitor", "--repo", f"{REPO}/quiet", "--json"], 1),
    Step("backup-all-boosted", lambda w: ["backup", "--all", "--json"], 0, after=_refs),
    Step("monitor", lambda w: ["monitor", "--no-notify", "--json"], 0),
    Step("status", lambda w: ["status", "--json"], 0),
    Step("verify", lambda w: ["verify", w.refs[LIVE], "--json"], 0),
    Step("capture", lambda w: ["capture", ORDERS, "--once", "--json"], 0),
    Step(
        "export",
        lambda w: ["backup", ORDERS, "--engine", "export", "--no-fallback", "--json"],
        0,
    ),
    Step(
        "restore",
        lambda w: ["restore", w.refs[LIVE], "--table", _fresh(w, "l"), "--engine", "load"],
        0,
    ),
    Step(
        "restore-import",
        lambda w: ["restore", w.refs[LIVE], "--table", _fresh(w, "i"), "--engine", "import"],
        0,
    ),
    Step("diff", lambda w: ["diff", w.refs[LIVE], "--json"], 1, before=World.change_live),
    Step("recover", lambda w: ["recover", w.refs[LIVE], "--delete-added", "--json"], 0),
    Step("forget", lambda w: ["forget", SPARE, "--keep-last", "1", "--json"], 0),
    # Data Pipeline: created and activated (moto never runs one), then put back by force
    Step("datapipeline", lambda w: ["backup", "--all", "--engine", "datapipeline", *DP], 0),
    Step("revert-force", lambda w: ["revert", "--force", *DP], 0),
]


Done = list[tuple[Step, Outcome]]


def _run(
    w: World,
    keys: Keys,
    *,
    steps: list[Step],
    stop: Callable[[Step, Outcome], bool],
    calls: Calls | None = None,
) -> Done:
    """Run ``steps`` as ``keys``; stop after the first whose outcome ``stop`` accepts."""
    done: Done = []
    with pytest.MonkeyPatch.context() as mp, _as(mp, keys, calls):
        for step in steps:
            if calls is not None:
                calls.start(step.name)
            if step.before:
                step.before(w)
            outcome = _cli(w, *step.args(w))
            done.append((step, outcome))
            if outcome.code == step.expect and step.after:
                step.after(w, outcome)
            if stop(step, outcome):
                break
    return done


def _policy(w: World) -> dict[str, Any]:
    outcome = _cli(w, "deploy", "iam-policy")
    assert outcome.code == 0, outcome.err
    return dict(json.loads(outcome.out))


@pytest.fixture(scope="module")
def policy(world: World) -> dict[str, Any]:
    """Exactly what ``hippolyte deploy iam-policy`` prints, as moto can evaluate it."""
    return iam_moto.as_moto_checks(_policy(world))


@dataclass(frozen=True)
class FullRun:
    done: Done
    calls: Calls


@pytest.fixture(scope="module")
def full_run(world: World, policy: dict[str, Any]) -> FullRun:
    """Every step under the whole policy, recording which actions each one calls."""
    calls = Calls()
    keys = world.moto.user(policy)
    return FullRun(_run(world, keys, steps=STEPS, stop=lambda s, o: False, calls=calls), calls)


@servers
def test_the_policy_runs_every_command(full_run: FullRun) -> None:
    assert [s.name for s, _ in full_run.done] == [s.name for s in STEPS]
    for step, outcome in full_run.done:
        assert outcome.code == step.expect, (step.name, outcome.err[-2000:])
        assert not outcome.denied(), (step.name, outcome.denied())
    by_name = {s.name: o for s, o in full_run.done}
    run = orjson.loads(by_name["backup-all-boosted"].out)["runs"][0]
    boosted = [c for c in run["capacity"] if c["table"] == ORDERS]
    assert boosted and all(c["status"] != "boost-failed" for c in boosted), boosted
    quiet = orjson.loads(by_name["monitor-notifies"].out)
    assert quiet["reports"][0]["ran"] is False
    forgot = orjson.loads(by_name["forget"].out)
    assert forgot, forgot


@servers
def test_without_any_policy_nothing_runs(world: World) -> None:
    unrelated = {"Effect": "Allow", "Action": ["sns:ListTopics"], "Resource": ["*"]}
    nobody = world.moto.user({"Version": "2012-10-17", "Statement": [unrelated]})
    with pytest.MonkeyPatch.context() as mp, _as(mp, nobody):
        outcome = _cli(world, "discover", "--json")
    assert outcome.code == 6 and outcome.denied() == {"dynamodb:ListTables"}, outcome.err


def _sids() -> list[str]:
    from hippolyte.core import config
    from hippolyte.deploy.template import iam_policy

    settings = config.validate(
        {"repository": REPO, "selection": {"include": ["iam-"]}}, source="test"
    )
    return [s["Sid"] for s in iam_policy(settings=settings)["Statement"]]


@servers
@pytest.mark.parametrize("sid", _sids())
def test_each_statement_is_needed(
    sid: str, world: World, policy: dict[str, Any], full_run: FullRun
) -> None:
    """Only the steps that called one of the statement's actions under the whole policy run
    (in order, until one fails or reports the denial): the others could not tell."""
    if sid in UNSEEN:
        pytest.skip(f"moto cannot show {sid} is needed: {UNSEEN[sid]}")
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == sid]
    actions = set(statement["Action"])
    steps = [s for s in STEPS if full_run.calls.by_step[s.name] & actions]
    assert steps, f"no command calls any action of {sid}: {sorted(actions)}"
    keys = world.moto.user(iam_moto.without(policy, sid))

    def stop(step: Step, outcome: Outcome) -> bool:
        return outcome.code != step.expect or bool(outcome.denied() & actions)

    done = _run(world, keys, steps=steps, stop=stop)
    step, outcome = done[-1]
    assert stop(step, outcome), f"every command ran without {sid}"
    assert outcome.denied() & actions, (step.name, outcome.denied(), outcome.err[-2000:])
    if sid in REPORTED:
        assert outcome.code == step.expect, (step.name, outcome.err[-2000:])
    elif step.name in FLEET and outcome.code == 1:
        failed = [r for r in orjson.loads(outcome.out)["results"] if not r["ok"]]
        assert failed and all(_DENIED.search(r["error"]) for r in failed), failed
    else:
        assert outcome.code == 6, (step.name, outcome.code, outcome.err[-2000:])


@servers
def test_the_policy_s_statements_are_the_ones_tested(policy: dict[str, Any]) -> None:
    assert [s["Sid"] for s in policy["Statement"]] == _sids()
    assert set(UNSEEN) | set(REPORTED) <= set(_sids())


# -- the Lambda function's role, from the template ------------------------------------------------

STACK_BUCKET = "hippolyte-iam-stack"
COPY_BUCKET = "hippolyte-iam-offsite"  # [[copies]]: the monitor copies each backup there
LAMBDA_CONFIG = {
    "selection": {"include": ["iam-"]},
    "copies": [{"to": f"s3://{COPY_BUCKET}/offsite"}],
    "read_percent": 0.5,
    "planning": {
        "window_start": "00:00",
        "window_end": "00:01",
        "pipeline_start_s": 55,
        "table_start_s": 1,
    },
}
ITEM_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
}
# The role's statements moto cannot show, beyond UNSEEN's.
LAMBDA_UNSEEN = {
    "Logs": "the Lambda runtime writes the function's logs with the role; no call of ours",
    "DataPipeline": "the function creates pipelines only under engine = 'datapipeline'; the "
    "CLI's test shows the same actions needed",
}


def _stack_doc() -> dict[str, Any]:
    from hippolyte.core import config
    from hippolyte.deploy.template import build

    return build(settings=config.validate(LAMBDA_CONFIG, source="test"))


def _role_sids() -> list[str]:
    doc = _stack_doc()["Resources"]["FunctionRole"]["Properties"]["Policies"][0]
    return [s["Sid"] for s in doc["PolicyDocument"]["Statement"] if "Sid" in s]


def _resolve(value: Any, names: dict[str, str]) -> Any:
    """CloudFormation's Fn::Sub, Fn::GetAtt and Ref, as the stack would resolve them."""
    if isinstance(value, list):
        return [_resolve(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
    if "Fn::GetAtt" in value:
        return names[".".join(value["Fn::GetAtt"])]
    if "Ref" in value:
        return names[value["Ref"]]
    return {k: _resolve(v, names) for k, v in value.items()}


@dataclass(frozen=True)
class _Context:
    region: str = REGION
    aws_request_id: str = "req-iam"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{iam_moto.ACCOUNT}:function:hippolyte"

    def get_remaining_time_in_millis(self) -> int:
        return 890_000


@dataclass(frozen=True)
class Invocation:
    name: str
    event: Callable[[World], dict[str, Any]]
    repository: str
    expect_ok: bool


def _stream_event(w: World) -> dict[str, Any]:
    ddb = w.moto.client("dynamodb")
    arn = ddb.describe_table(TableName=ORDERS)["Table"]["LatestStreamArn"]
    record = {"eventSource": "aws:dynamodb", "eventSourceARN": arn, "eventName": "INSERT"}
    return {"Records": [{**record, "eventID": "1", "awsRegion": REGION}]}


INVOCATIONS = [
    # an empty repository: nothing ran, so the monitor notifies the stack's topic
    Invocation(
        "monitor-notifies", lambda w: {"action": "monitor"}, f"s3://{STACK_BUCKET}/q", False
    ),
    Invocation("backup", lambda w: {"action": "backup"}, f"s3://{STACK_BUCKET}", True),
    Invocation("monitor", lambda w: {"action": "monitor"}, f"s3://{STACK_BUCKET}", True),
    Invocation("capture", _stream_event, f"s3://{STACK_BUCKET}", True),
]


@pytest.fixture(scope="module")
def role_policy(world: World) -> dict[str, Any]:
    """The template's role policy as the stack resolves it (no Object Lock: its Fn::If
    statements are absent), as moto can evaluate it."""
    world.moto.client("s3").create_bucket(Bucket=STACK_BUCKET)
    world.moto.client("s3").create_bucket(Bucket=COPY_BUCKET)
    names = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": iam_moto.ACCOUNT,
        "BackupBucket": STACK_BUCKET,
        "BackupBucket.Arn": f"arn:aws:s3:::{STACK_BUCKET}",
        "Topic": world.topic,
        "LogGroup.Arn": f"arn:aws:logs:{REGION}:{iam_moto.ACCOUNT}:log-group:/aws/lambda/h:*",
    }
    doc = _stack_doc()["Resources"]["FunctionRole"]["Properties"]["Policies"][0]
    statements = [s for s in doc["PolicyDocument"]["Statement"] if "Fn::If" not in s]
    policy = {"Version": "2012-10-17", "Statement": _resolve(statements, names)}
    return iam_moto.as_moto_checks(policy)


Invoked = list[tuple[Invocation, dict[str, Any]]]


def _invoke(
    w: World,
    keys: Keys,
    *,
    invocations: list[Invocation],
    stop: Callable[[Invocation, dict[str, Any]], bool],
    calls: Calls | None = None,
) -> Invoked:
    from hippolyte import aws_lambda
    from hippolyte.ops import context

    done: Invoked = []
    with pytest.MonkeyPatch.context() as mp, _as(mp, keys, calls):
        mp.setenv(context.ENV_CONFIG_JSON, json.dumps(LAMBDA_CONFIG))
        mp.setenv(context.ENV_TOPIC, w.topic)
        for invocation in invocations:
            if calls is not None:
                calls.start(invocation.name)
            mp.setenv(context.ENV_REPOSITORY, invocation.repository)
            summary = aws_lambda.handler(invocation.event(w), _Context())
            done.append((invocation, summary))
            if stop(invocation, summary):
                break
    return done


def _named(summary: dict[str, Any]) -> set[str]:
    return Outcome(0, json.dumps(summary), "").denied()


@dataclass(frozen=True)
class RoleRun:
    done: Invoked
    calls: Calls


@pytest.fixture(scope="module")
def role_run(world: World, role_policy: dict[str, Any]) -> RoleRun:
    calls = Calls()
    keys = world.moto.user(role_policy)
    done = _invoke(world, keys, invocations=INVOCATIONS, stop=lambda i, s: False, calls=calls)
    return RoleRun(done, calls)


@servers
def test_the_role_runs_the_function(role_policy: dict[str, Any], role_run: RoleRun) -> None:
    allowed = {a for s in role_policy["Statement"] for a in s["Action"]}
    assert not allowed & ITEM_WRITES  # the function cannot change an item, and needs not
    done = role_run.done
    assert [i.name for i, _ in done] == [i.name for i in INVOCATIONS]
    for invocation, summary in done:
        assert summary["ok"] is invocation.expect_ok, (invocation.name, summary)
        assert not _named(summary), (invocation.name, summary)
    quiet = done[0][1]
    assert quiet["failures"][0]["reason"] == "nothing ran" and quiet["notifications"][0]["ok"]
    (target,) = done[1][1]["targets"]
    backed_up = {b["table"]: b["warnings"] for b in target["backed_up"]}
    assert backed_up == {ORDERS: [], LIVE: []}  # the boost worked: no warning
    (copied,) = done[2][1]["copies"]  # the monitor's [[copies]], with the role's rights
    assert copied["ok"] and {c["action"] for c in copied["copies"]} == {"copied"}, copied
    assert done[-1][1]["action"] == "capture", done[-1][1]


@servers
@pytest.mark.parametrize("sid", _role_sids())
def test_each_role_statement_is_needed(
    sid: str, world: World, role_policy: dict[str, Any], role_run: RoleRun
) -> None:
    if sid in UNSEEN or sid in LAMBDA_UNSEEN:
        pytest.skip(f"moto cannot show {sid} is needed: {({**UNSEEN, **LAMBDA_UNSEEN})[sid]}")
    (statement,) = [s for s in role_policy["Statement"] if s["Sid"] == sid]
    actions = set(statement["Action"])
    invocations = [i for i in INVOCATIONS if role_run.calls.by_step[i.name] & actions]
    assert invocations, f"no invocation calls any action of {sid}: {sorted(actions)}"
    keys = world.moto.user(iam_moto.without(role_policy, sid))

    def stop(invocation: Invocation, summary: dict[str, Any]) -> bool:
        return summary["ok"] is not invocation.expect_ok or bool(_named(summary) & actions)

    done = _invoke(world, keys, invocations=invocations, stop=stop)
    invocation, summary = done[-1]
    assert stop(invocation, summary), f"every invocation ran without {sid}"
    assert _named(summary) & actions, (invocation.name, summary)


# -- a denied call, translated: exit 6 naming the action ------------------------------------------


def _client_error(code: str, message: str, *, operation: str, status: int = 400) -> Exception:
    import botocore.exceptions

    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "message", "operation", "status", "named"),
    [  # AWS's JSON answer; moto's IAM error (XML) where botocore expected JSON; SNS's own code
        (
            "AccessDeniedException",
            "User: arn:aws:iam::1:user/x is not authorized to perform: dynamodb:Scan on resource",
            "Scan",
            400,
            "dynamodb:Scan",
        ),
        (
            "403",
            "<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: u is not "
            "authorized to perform: application-autoscaling:DescribeScalableTargets</Message>",
            "DescribeScalableTargets",
            403,
            "application-autoscaling:DescribeScalableTargets",
        ),
        (
            "AuthorizationError",
            "not authorized to perform: SNS:Publish",
            "Publish",
            403,
            "SNS:Publish",
        ),
    ],
)
def test_a_denied_call_is_a_credentials_error_naming_the_action(
    code: str, message: str, operation: str, status: int, named: str
) -> None:
    from hippolyte.core.errors import CredentialsError, ExitCode

    error = aws.translate(
        _client_error(code, message, operation=operation, status=status), what="t"
    )
    assert isinstance(error, CredentialsError) and error.exit_code == ExitCode.AUTH
    assert named in str(error) and "<" not in str(error)


def test_a_denied_s3_call_names_the_iam_action_s3_does_not() -> None:
    from hippolyte.adapters.storage import S3Storage
    from hippolyte.core.errors import CredentialsError, RepositoryError

    storage = S3Storage(bucket="b", prefix="repo", conn=aws.Connection(region=REGION))
    for code, operation, action in (
        ("AccessDenied", "ListObjectsV2", "s3:ListBucket"),
        ("403", "HeadObject", "s3:GetObject"),
        ("AccessDenied", "PutObject", "s3:PutObject"),
    ):
        exc = _client_error(code, "Access Denied", operation=operation, status=403)
        error = storage._translate(exc, "x")
        assert isinstance(error, CredentialsError) and f"{action} is not allowed" in str(error)
    other = _client_error("AllAccessDisabled", "All access disabled", operation="GetObject")
    assert isinstance(storage._translate(other, "x"), RepositoryError)
    assert aws.denied(_client_error("NoSuchKey", "no", operation="GetObject"), service="s3") is None
