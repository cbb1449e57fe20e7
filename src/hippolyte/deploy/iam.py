"""Least-privilege IAM: the AWS calls the code makes, read from the source itself (ast), and
policy statements that allow exactly those (plus ``NECESSITIES``) on the narrowest resources.

Every boto3 client method called on a DynamoDB, S3, SNS or Application Auto Scaling client,
checked against botocore's service models: ``x.scan(...)``, ``get_paginator("list_tables")``,
``get_waiter("table_exists")``, s3transfer's ``upload_fileobj`` (a multipart upload), and
``operation="update_table"`` values that the code dispatches later through ``getattr``. Calls
on names bound by imports are our own wrappers and skipped (their bodies are read instead).

``calls_in_code(entry)`` keeps only the calls reachable from one function, following names,
module attributes and (over-approximating) any class with a method of the called name, so the
Lambda's role can leave out what only a restore calls.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore
import botocore.exceptions
import botocore.session

from hippolyte.adapters.aws import iam_action
from hippolyte.adapters.storage import s3_location
from hippolyte.core.config import Settings

SERVICES = (
    "dynamodb",
    "s3",
    "sns",
    "application-autoscaling",
    "datapipeline",
    "dynamodbstreams",
)  # also their IAM prefixes, but DynamoDB Streams' actions are dynamodb:
PACKAGE = Path(__file__).resolve().parents[1]
# Modules that only ever talk to the local servers they start (tests, the demo).
LOCAL_ONLY = frozenset(
    {
        "hippolyte.adapters.local_servers",
        "hippolyte.ops.demo",
        "hippolyte.ops.sample_tables",
        "hippolyte.ops.bad_deploy",
    }
)
# s3transfer's upload_fileobj: one PutObject, or a multipart upload (aborted on failure).
_TRANSFER = {
    "upload_fileobj": (
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    )
}
BUCKET_LEVEL = {"s3:GetBucketObjectLockConfiguration"}  # on the bucket, not its objects


_AAS = "Application Auto Scaling on DynamoDB (AWS docs: permissions on target services)"
NECESSITIES = {  # what AWS requires beyond the calls, and why
    "cloudwatch:DescribeAlarms": _AAS,
    "cloudwatch:GetMetricData": _AAS,
    "cloudwatch:PutMetricAlarm": _AAS,
    "cloudwatch:DeleteAlarms": _AAS,
    "logs:CreateLogStream": "the Lambda function writes its own logs",
    "logs:PutLogEvents": "the Lambda function writes its own logs",
    "sts:AssumeRole": "targets with role_arn (botocore assumes them, no client call)",
    "iam:PassRole": "Data Pipeline runs as its pipeline and resource roles (engine datapipeline)",
    "s3:GetObjectRetention": "forget reads each backup's Object Lock (HeadObject shows it only "
    "with this permission)",
    "s3:GetObjectLegalHold": "forget reads each backup's legal hold (HeadObject, as above)",
    "s3:PutObjectRetention": "[object_lock]: objects are written with a retention",
    "s3:PutObjectAcl": "ExportTableToPointInTime writes the export as the caller (AWS: "
    '"Requesting a table export": s3:AbortMultipartUpload, s3:PutObject, s3:PutObjectAcl)',
    **{
        f"logs:{a}": "ImportTable logs its item errors to CloudWatch Logs as the caller"
        for a in ("CreateLogGroup", "DescribeLogGroups", "DescribeLogStreams", "PutRetentionPolicy")
    },
}
IMPORT_LOGS = {  # what ImportTable needs beyond its own call (AWS: "Requesting a table import")
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
}
EXPORT_WRITES = {"s3:AbortMultipartUpload", "s3:PutObject", "s3:PutObjectAcl"}  # same page
OBJECT_LOCK_READS = {"s3:GetObjectRetention", "s3:GetObjectLegalHold"}
# What no role of ours gets unless asked: it would shorten or lift a lock, or remove a locked
# version for good (a plain DeleteObject only adds a delete marker in a versioned bucket).
LOCK_BYPASS = {"s3:BypassGovernanceRetention", "s3:DeleteObjectVersion"}


def object_lock_actions(settings: Settings) -> set[str]:
    """What reading and writing Object Lock needs beyond the calls: forget reads locks on
    any S3 repository; ``[object_lock]``, or a ``[[copies]]`` destination's, writes
    retentions."""
    locking = settings.object_lock is not None or any(c.object_lock for c in settings.copies)
    return OBJECT_LOCK_READS | ({"s3:PutObjectRetention"} if locking else set())


ACCOUNT_WIDE = {  # AWS requires Resource "*"
    "dynamodb:ListTables",
    "dynamodb:DescribeLimits",
    "dynamodb:ListStreams",
}
STREAM_ACTIONS = {  # on a table's streams: arn:...:table/NAME/stream/*
    "dynamodb:DescribeStream",
    "dynamodb:GetShardIterator",
    "dynamodb:GetRecords",
}


# -- the calls in the code -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Call:
    unit: str  # where: hippolyte.adapters.storage:S3Storage, hippolyte.ops.plan:plan_target
    line: int
    service: str  # botocore's name: dynamodb, s3, sns, application-autoscaling
    operation: str  # the API's: DescribeTable, ListObjectsV2, ...

    @property
    def action(self) -> str:
        return iam_action(self.service, self.operation)


@functools.cache
def _methods() -> dict[str, dict[str, str]]:
    """service -> {client method or "waiter:name": operation}, from botocore's models."""
    session = botocore.session.get_session()
    out: dict[str, dict[str, str]] = {}
    for svc in SERVICES:
        ops = {botocore.xform_name(op): op for op in session.get_service_model(svc).operation_names}
        out[svc] = ops
        try:
            waiters = session.get_waiter_model(svc)
        except botocore.exceptions.DataNotFoundError:
            continue
        for name in waiters.waiter_names:
            ops[f"waiter:{botocore.xform_name(name)}"] = waiters.get_waiter(name).operation
    return out


@dataclass(frozen=True, kw_only=True)
class _Module:
    name: str
    units: dict[str, ast.AST]  # top-level functions and classes, and methods as "Class.name"
    bound: dict[str, str]  # imported name -> "module" or "module:name"
    hints: set[str]  # services it builds clients for: client(conn, "s3")


@functools.cache
def _modules() -> dict[str, _Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        units: dict[str, ast.AST] = {
            n.name: n
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
            units |= {
                f"{cls.name}.{fn.name}": fn
                for fn in cls.body
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        for n in tree.body:  # module-level values: dispatch tables may hold functions
            if isinstance(n, ast.Assign | ast.AnnAssign):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                units |= {t.id: n for t in targets if isinstance(t, ast.Name)}
        out[name] = _Module(name=name, units=units, bound=_bound(tree), hints=_hints(tree))
    return out


def _bound(tree: ast.Module) -> dict[str, str]:
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:  # import a.b binds a; import a.b as c binds c to a.b
                top = a.name.split(".")[0]
                bound[a.asname or top] = a.name if a.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bound |= {a.asname or a.name: f"{node.module}:{a.name}" for a in node.names}
    return bound


def _hints(tree: ast.Module) -> set[str]:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) == "client"]
    literals = {str(a.value) for c in calls for a in c.args if isinstance(a, ast.Constant)}
    return literals & set(SERVICES)


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _target(ref: str) -> str:
    """``pkg.mod:name`` where ``name`` is itself a module -> ``pkg.mod.name``."""
    module, _, name = ref.partition(":")
    return f"{module}.{name}" if f"{module}.{name}" in _modules() else ref


def _refs(
    module: _Module, unit: ast.AST, methods: dict[str, set[str]], *, cls: str | None = None
) -> set[str]:
    """Units that ``unit`` may call: by name, through a module, or as a method of any class;
    in class ``cls``, ``self.name`` is that class's own method (or an override of it) when it
    has one."""
    out: set[str] = set()
    for node in ast.walk(unit):
        if isinstance(node, ast.Name) and node.id in module.units:
            out.add(f"{module.name}:{node.id}")
        elif isinstance(node, ast.Name) and node.id in module.bound:
            out.add(_target(module.bound[node.id]))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = _target(module.bound.get(node.value.id, ""))
            if base in _modules():
                out.add(f"{base}:{node.attr}")
            elif node.value.id == "self" and cls and f"{cls}.{node.attr}" in module.units:
                out |= _own(f"{module.name}:{cls}", node.attr, methods)
            else:
                out |= _methods_named(node, methods)
        elif isinstance(node, ast.Attribute):
            out |= _methods_named(node, methods)
    return out


def _own(cls: str, name: str, methods: dict[str, set[str]]) -> set[str]:
    """``self.name`` in class ``cls`` (``module:Class``): its method, or a subclass's
    override of it (subclasses known by the name of their base)."""
    subclasses = _subclasses().get(cls.partition(":")[2], set())
    return {m for m in methods.get(name, set()) if m.rpartition(".")[0] in subclasses | {cls}}


@functools.cache
def _subclasses() -> dict[str, set[str]]:
    """Class name -> every class (``module:Class``) deriving from a class of that name."""
    direct: dict[str, set[str]] = {}
    for m in _modules().values():
        for name, node in m.units.items():
            if isinstance(node, ast.ClassDef) and "." not in name:
                for base in node.bases:
                    base_name = _name(base) or ""
                    direct.setdefault(base_name, set()).add(f"{m.name}:{name}")
    out: dict[str, set[str]] = {}
    for name in direct:
        found: set[str] = set()
        todo = [name]
        while todo:
            for sub in direct.get(todo.pop(), set()) - found:
                found.add(sub)
                todo.append(sub.partition(":")[2])
        out[name] = found
    return out


def _methods_named(node: ast.Attribute, methods: dict[str, set[str]]) -> set[str]:
    """``x.name``: the method ``name`` of any class. Not a dunder (``super().__init__()``
    would reach every constructor): a class's special methods run on its instances, and a
    class is reached whole wherever it is named, as it must be to make one."""
    if node.attr.startswith("__") and node.attr.endswith("__"):
        return set()
    return methods.get(node.attr, set())


# A process's main (see reached()): the Lambda's handler, and its drill job.
MAINS = frozenset({"hippolyte.aws_lambda:handler", "hippolyte.aws_lambda:drill_job"})
# Reached only as an entry of their own, never through another: the drill job writes into
# scratch tables, so the Lambda's role grants its calls on those tables alone (deploy/template).
APART = frozenset({"hippolyte.aws_lambda:drill_job"})


def reached(entry: str) -> set[str]:
    """The units (``module:function``, ``module:Class``, ``module:Class.method``) that
    ``entry`` may call. A class named in the code is reached whole; ``x.name(...)`` reaches the
    method ``name`` of every class that has one, not the rest of those classes (``self.name``
    in a class that has it: that method and its overrides; a dunder: none, see
    ``_methods_named``).

    A ``MAINS`` entry builds every object it uses, and builds one by naming its class, which
    reaches the class whole: so ``x.name(...)`` there needs no guess over every class with a
    method ``name`` (which took the Lambda from ``dask``'s ``client.loop`` to serve's
    ``Daemon.loop`` and on to restores). Another entry may be handed objects built elsewhere
    (a restore, its storage), so it keeps the guess."""
    modules = _modules()
    methods: dict[str, set[str]] = {}
    for m in modules.values():
        for unit in (u for u in m.units if "." in u) if entry not in MAINS else ():
            methods.setdefault(unit.partition(".")[2], set()).add(f"{m.name}:{unit}")
    seen, todo = set(), [entry]
    while todo:
        unit = todo.pop()
        module, _, name = unit.partition(":")
        if unit in seen or name not in getattr(modules.get(module), "units", {}):
            continue
        if unit in APART and unit != entry:
            continue
        seen.add(unit)
        owner = name.partition(".")[0]
        cls = owner if isinstance(modules[module].units.get(owner), ast.ClassDef) else None
        todo += _refs(modules[module], modules[module].units[name], methods, cls=cls)
    return seen


def _candidates(node: ast.AST, bound: dict[str, str]) -> Iterator[str]:
    """Method names that may be client calls: ``x.scan(...)``, ``get_paginator("op")``,
    ``get_waiter("w")``, and ``operation="op"`` (dispatched later by ``getattr``)."""
    if isinstance(node, ast.keyword) and node.arg == "operation":
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield node.value.value
    if not isinstance(node, ast.Call):
        return
    for arg in node.args:  # a client method handed to a wrapper: _call(dp.create_pipeline, ...)
        if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name):
            if arg.value.id not in bound:
                yield arg.attr
    if not isinstance(node.func, ast.Attribute):
        return
    method, receiver = node.func.attr, node.func.value
    first = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
    if method == "get_paginator" and isinstance(first, str):
        yield first
    elif method == "get_waiter" and isinstance(first, str):
        yield f"waiter:{first}"
    elif not (isinstance(receiver, ast.Name) and receiver.id in bound):  # not our wrappers
        yield method


def _service(method: str, hints: set[str], *, where: str) -> str | None:
    having = ["s3"] if method in _TRANSFER else [s for s in SERVICES if method in _methods()[s]]
    hinted = [s for s in having if s in hints]
    if len(having) == 1 or len(hinted) == 1:
        return (hinted or having)[0]
    if "dynamodb" in having:  # clients handed in without a name are DynamoDB's in this code
        return "dynamodb"
    if having:
        raise ValueError(f"{where}: cannot tell which service {method}() belongs to: {having}")
    return None


def _unit_calls(module: _Module, name: str) -> Iterator[Call]:
    for node in ast.walk(module.units[name]):
        line = getattr(node, "lineno", 0)
        for method in _candidates(node, module.bound):
            svc = _service(method, module.hints, where=f"{module.name}:{line}")
            for op in _TRANSFER.get(method) or ((_methods()[svc][method],) if svc else ()):
                yield Call(unit=f"{module.name}:{name}", line=line, service=svc or "", operation=op)


@functools.cache
def calls_in_code(entry: str | None = None) -> tuple[Call, ...]:
    """Every AWS call in the package; with ``entry`` (``module:function``), those it reaches."""
    modules = _modules()
    units = (
        reached(entry)
        if entry
        else {f"{m}:{u}" for m in modules for u in modules[m].units if "." not in u}
    )
    return tuple(
        call
        for unit in sorted(units)
        if unit.partition(":")[0] not in LOCAL_ONLY
        for call in _unit_calls(modules[unit.partition(":")[0]], unit.partition(":")[2])
    )


def api_calls_in_code(entry: str | None = None) -> set[str]:
    """The IAM actions of the AWS calls the code makes, e.g. ``dynamodb:DescribeTable``."""
    return {c.action for c in calls_in_code(entry)}


# -- policies ------------------------------------------------------------------------------------

Resource = str | dict[str, Any]
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")


def table_patterns(settings: Settings) -> list[str]:
    """Table names for IAM: a selection of plain names (``include`` matches from the start of
    a name) gives ``orders*``; a regex, or no ``include``, gives ``*``."""
    sel = settings.selection
    if not sel.include or not all(_PLAIN_NAME.fullmatch(p) for p in sel.include):
        return ["*"]
    return sorted({f"{p}*" for p in sel.include} | set(sel.always_backup))


def s3_repositories(settings: Settings) -> list[tuple[str, str]]:
    """(bucket, prefix) of every s3:// repository the settings name."""
    return _s3_locations([settings.repository, *(t.repository for t in settings.targets)])


def copy_destinations(settings: Settings) -> list[tuple[str, str]]:
    """(bucket, prefix) of every ``[[copies]]`` S3 destination written with our own
    credentials; one reached through ``role_arn`` is that role's to allow."""
    return _s3_locations([c.to for c in settings.copies if c.role_arn is None])


def _s3_locations(urls: list[str | None]) -> list[tuple[str, str]]:
    return sorted({loc for u in urls if (loc := s3_location(u)) is not None})


def assumed_roles(settings: Settings) -> list[str]:
    """The roles the code assumes: the targets' and the ``[[copies]]`` destinations'."""
    targets = {t.role_arn for t in settings.targets if t.role_arn}
    return sorted(targets | {c.role_arn for c in settings.copies if c.role_arn})


def objects_arn(bucket: str, prefix: str, *, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket}/{prefix + '/' if prefix else ''}*"


def target_places(settings: Settings, *, region: str, account: str) -> list[tuple[str, str]]:
    """(region, account) of each target; ``region``/``account`` where the settings are silent."""
    out = set()
    for t in settings.effective_targets():
        acct = t.account if t.account and re.fullmatch(r"\d{12}", t.account) else None
        if acct is None and t.role_arn:
            acct = t.role_arn.split(":")[4]
        out.add((t.region or region, acct or account))
    return sorted(out)


@dataclass(frozen=True, kw_only=True)
class Scope:
    """The resources a policy's statements act on."""

    tables: list[Resource]
    restore_tables: list[Resource]
    objects: list[Resource]
    buckets: list[tuple[Resource, str]]  # (bucket ARN, repository prefix or "")
    topics: list[Resource]
    alarms: list[Resource]
    logs: Sequence[Resource] = ()
    roles: Sequence[str] = ()
    pipeline_roles: Sequence[Resource] = ()  # passed to Data Pipeline (engine datapipeline)
    import_logs: Sequence[Resource] = ()  # ImportTable's log groups (/aws-dynamodb/*)


def statements(actions: set[str], restore: set[str], scope: Scope) -> list[dict[str, Any]]:
    """``actions`` grouped by the resources they act on; ``restore``: the actions of a restore,
    whose target may be a table of any name."""
    streams = {a for a in actions if a in STREAM_ACTIONS}
    ddb = {a for a in actions if a.startswith("dynamodb:")} - ACCOUNT_WIDE - streams
    s3 = {a for a in actions if a.startswith("s3:")}
    if "dynamodb:ExportTableToPointInTime" in actions:  # DynamoDB writes the export as us
        s3 |= EXPORT_WRITES
    bucket_level = s3 & BUCKET_LEVEL
    s3 -= bucket_level
    aas = {a for a in actions if a.startswith("application-autoscaling:")}
    changes_scaling = any(":Describe" not in a for a in aas)  # AAS then manages alarms too
    alarms = {a for a in NECESSITIES if a.startswith("cloudwatch:") and changes_scaling}
    alarm_reads = {a for a in alarms if a.startswith(("cloudwatch:Describe", "cloudwatch:Get"))}
    dp = {a for a in actions if a.startswith("datapipeline:")}
    found = [
        ("AccountWideDynamoDB", actions & ACCOUNT_WIDE, ["*"], None),
        ("Tables", ddb - restore, scope.tables, None),
        ("RestoreTargets", ddb & restore, scope.restore_tables, None),
        ("Streams", streams, [_stream_of(t) for t in scope.tables], None),
        ("RepositoryObjects", s3 - {"s3:ListBucket"}, scope.objects, None),
        *[
            (f"RepositoryList{i}", s3 & {"s3:ListBucket"}, [arn], _prefix(prefix))
            for i, (arn, prefix) in enumerate(scope.buckets)
        ],
        ("RepositoryBuckets", bucket_level, _unique([arn for arn, _ in scope.buckets]), None),
        ("Notify", {a for a in actions if a.startswith("sns:")}, scope.topics, None),
        ("Autoscaling", aas, ["*"], None),  # Application Auto Scaling has no resource ARNs
        ("AutoscalingAlarmsRead", alarm_reads, ["*"], None),
        ("AutoscalingAlarms", alarms - alarm_reads, scope.alarms, None),
        ("Logs", {"logs:CreateLogStream", "logs:PutLogEvents"}, list(scope.logs), None),
        (
            "ImportTableLogs",
            IMPORT_LOGS if "dynamodb:ImportTable" in actions else set(),
            list(scope.import_logs),
            None,
        ),
        ("AssumeTargetRoles", {"sts:AssumeRole"}, list(scope.roles), None),
        ("DataPipeline", dp, ["*"], None),  # pipelines are made per run: no ARN known ahead
        (
            "PassPipelineRoles",
            {"iam:PassRole"} if dp else set(),
            list(scope.pipeline_roles),
            {"StringEquals": {"iam:PassedToService": "datapipeline.amazonaws.com"}},
        ),
    ]
    return [
        {"Sid": sid, "Effect": "Allow", "Action": sorted(acts), "Resource": res}
        | ({"Condition": cond} if cond else {})
        for sid, acts, res, cond in found
        if acts and res
    ]


def _unique(resources: list[Resource]) -> list[Resource]:
    """Each resource once, as a copy (a dict shared by two statements dumps as a YAML alias,
    which CloudFormation rejects)."""
    out: list[Resource] = []
    for r in resources:
        if r not in out:
            out.append(copy.deepcopy(r))
    return out


def _stream_of(table: Resource) -> Resource:
    """A table's ARN (a string, or a template's Fn::Sub) -> its streams' ARNs."""
    if isinstance(table, dict):
        return {"Fn::Sub": table["Fn::Sub"] + "/stream/*"}
    return f"{table}/stream/*"


def _prefix(prefix: str) -> dict[str, Any] | None:
    return {"StringLike": {"s3:prefix": [f"{prefix}/*"]}} if prefix else None


def topics(settings: Settings) -> list[str]:
    return sorted({c.topic_arn for c in settings.notifications if c.type == "sns"})
