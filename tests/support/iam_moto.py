"""A moto server that enforces IAM, with users made from policies: for the least-privilege
proof (tests/test_iam_enforced.py). Test code: it stays out of the wheel.

moto checks a request against the caller's policies once ``/moto-api/reset-auth`` (or
``INITIAL_NO_AUTH_ACTION_COUNT``) says so. What it checks, read from moto 5.2's
``core/authorization.py`` and ``iam/access_control.py``:

- the action, for every service whose responses go through ``BaseResponse.call_action``
  (DynamoDB and DynamoDB Streams, Application Auto Scaling, SNS, STS, IAM, Data Pipeline, ...),
  with the service prefix taken from the request's signing name;
- the resource only for S3 (``arn:aws:s3:::bucket`` or ``bucket/key``); every other service
  is checked against the resource ``*``, so a statement naming table ARNs never matches there;
- S3's action from its own map, which lacks some sub-resources: ``GET ?object-lock`` is checked
  as ``s3:ListBucket``, ``GET ?retention`` and ``?legal-hold`` as ``s3:GetObject``;
- conditions only as ``StringEquals`` against values moto never supplies for a user's call:
  ``s3:prefix`` and ``iam:PassedToService`` conditions are not evaluated;
- DeleteObjects (``POST ?delete``) against ``s3:DeleteObject`` on the bucket's ARN, where AWS
  checks it on each object's: ``as_moto_checks`` adds the bucket to that statement;
- nothing DynamoDB or Application Auto Scaling does on the caller's behalf: an export's or an
  import's S3 objects and logs, a scaling policy's CloudWatch alarms are written by moto
  itself.
"""

from __future__ import annotations

import copy
import json
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from tests.support.servers import REGION, Server

ACCOUNT = "123456789012"  # moto's default account
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class Enforcing:
    """A moto server with IAM checks on, and an administrator to arrange the world."""

    server: Server
    admin: Keys

    @property
    def url(self) -> str:
        return self.server.endpoint_url

    def client(self, service: str, keys: Keys | None = None) -> Any:
        keys = keys or self.admin
        make: Any = boto3.client  # boto3-stubs overloads want a literal service name
        return make(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=keys.access_key,
            aws_secret_access_key=keys.secret_key,
        )

    def user(self, policy: dict[str, Any]) -> Keys:
        """A fresh IAM user whose only policy is ``policy`` (inline), and its access key."""
        return _user(self.client("iam"), policy)


def _user(iam: Any, policy: dict[str, Any]) -> Keys:
    name = f"u-{uuid.uuid4().hex[:12]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="hippolyte", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


def enforce(server: Server) -> Keys:
    """Create an administrator while moto still lets everything through, then turn IAM checks
    on for every request that follows (``/moto-api/reset-auth`` 0)."""
    iam = boto3.client(
        "iam",
        region_name=REGION,
        endpoint_url=server.endpoint_url,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    admin = _user(iam, ADMIN_POLICY)
    request = urllib.request.Request(
        f"{server.endpoint_url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form would hide the body from moto
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["status"] == "ok"
    return admin


def as_moto_checks(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can evaluate it: a statement of any service but S3 gets the resource
    ``*`` (moto checks those services' calls against ``*`` only; see above). S3 statements keep
    their buckets and prefixes, which moto does check (plus the bucket where DeleteObject is)."""
    out = copy.deepcopy(policy)
    for statement in out["Statement"]:
        if not all(a.startswith("s3:") for a in statement["Action"]):
            statement["Resource"] = ["*"]
        elif "s3:DeleteObject" in statement["Action"]:  # DeleteObjects: see above
            buckets = {r.partition("/")[0] for r in statement["Resource"]}
            statement["Resource"] = [*statement["Resource"], *sorted(buckets)]
    return out


def without(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    kept = [s for s in policy["Statement"] if s.get("Sid") != sid]
    assert len(kept) == len(policy["Statement"]) - 1, sid
    return {**policy, "Statement": kept}
