"""Sessions and clients, built the way the AWS CLI builds them.

Credentials come from the standard chain (env, profile, SSO, instance role) or from an assumed
role; endpoints from ``--endpoint-url``/config or the standard ``AWS_ENDPOINT_URL_<SERVICE>``
variables, which botocore reads itself. Retries are botocore's: standard mode, configured once
here, never re-implemented in the operations.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from hippolyte.core.errors import AwsError, CredentialsError, Throttled, Transient
from hippolyte.core.model import Connection
from hippolyte.core.version import __version__

THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "Throttling",
    "TooManyRequestsException",
    "SlowDown",
}


# What AWS answers a caller whose policy does not allow the call.
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
}
# Where IAM names an operation's permission differently from the operation.
IAM_NAMES = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
}
_NAMED = re.compile(r"not authorized to perform:? ([\w-]+:\w+)", re.IGNORECASE)
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.DOTALL)


def iam_action(service: str, operation: str) -> str:
    """The IAM permission an API operation needs: ``("s3", "HeadObject")`` -> s3:GetObject."""
    prefix = "dynamodb" if service == "dynamodbstreams" else service
    name = f"{prefix}:{operation}"
    return IAM_NAMES.get(name, name)


def denied(exc: botocore.exceptions.ClientError, *, service: str | None = None) -> str | None:
    """If the caller's policy refused the call: what AWS said, naming the denied action (from
    the message, else from the operation when ``service`` is known); None otherwise. A 403 with
    an XML body where JSON was expected (moto's IAM check on JSON services) counts too."""
    error = exc.response.get("Error", {})
    code, msg = str(error.get("Code", "")), str(error.get("Message", "") or "")
    if xml := _XML_MESSAGE.search(msg):
        msg = xml.group(1)
    named = _NAMED.search(msg)
    if code not in DENIED and not (code == "403" and (named or service == "s3")):
        return None
    if named:
        return msg
    action = iam_action(service, exc.operation_name) if service else exc.operation_name
    return f"{msg or code}: {action} is not allowed"


USER_AGENT_APP = f"hippolyte-{__version__}"
_lock = threading.Lock()
_sessions: dict[Connection, boto3.Session] = {}


def session(conn: Connection) -> boto3.Session:
    """One boto3 session per connection; an assumed role refreshes itself through STS."""
    key = Connection(region=conn.region, profile=conn.profile, role_arn=conn.role_arn)
    with _lock:
        if key not in _sessions:
            _sessions[key] = _make_session(key)
        return _sessions[key]


def _make_session(conn: Connection) -> boto3.Session:
    try:
        base = boto3.Session(profile_name=conn.profile, region_name=conn.region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise CredentialsError(f"AWS profile {conn.profile!r} is not configured") from exc
    if not conn.role_arn:
        return base
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
    from botocore.session import Session as CoreSession

    fetcher = AssumeRoleCredentialFetcher(
        client_creator=base._session.create_client,
        source_credentials=base._session.get_credentials(),
        role_arn=conn.role_arn,
        extra_args={"RoleSessionName": "hippolyte"},
    )
    core = CoreSession()
    if conn.region or base.region_name:
        core.set_config_variable("region", conn.region or base.region_name)
    # botocore has no public setter for refreshable credentials; this is how boto3's own
    # assume-role provider ends up too.
    core._credentials = DeferredRefreshableCredentials(  # type: ignore[attr-defined]
        method="assume-role", refresh_using=fetcher.fetch_credentials
    )
    return boto3.Session(botocore_session=core)


def client_config(
    *, pool: int = 10, max_attempts: int = 10, **extra: Any
) -> botocore.config.Config:
    return botocore.config.Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=pool,
        tcp_keepalive=True,
        user_agent_extra=USER_AGENT_APP,  # CloudTrail shows which calls were Hippolyte's
        **extra,
    )


def client(
    conn: Connection, service: str, *, pool: int = 10, endpoint_url: str | None = None, **cfg: Any
) -> Any:
    sess = session(conn)
    if sess.region_name is None:
        from hippolyte.core.errors import ConfigError

        raise ConfigError(
            "no AWS region: pass --region, set it in the config's target, or set AWS_REGION"
        )
    url = (
        endpoint_url
        if endpoint_url is not None
        else (conn.endpoint_url if service == "dynamodb" else None)
    )
    make: Any = sess.client  # boto3-stubs overloads want a literal service name
    made = make(service, endpoint_url=url, config=client_config(pool=pool, **cfg))
    if made.meta.service_model.protocol == "json":
        made.meta.events.register("before-parse", _mark_malformed)
        made.meta.events.register("after-call", _raise_malformed)
    return made


MALFORMED = "HippolyteMalformedBody"


def _mark_malformed(
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    operation_model: Any = None,
    **_: Any,
) -> None:
    """A 2xx whose body is not a JSON object (a captive proxy's page, a body cut short with
    no CRC to tell): botocore's JSON parser would return it as a success holding only
    ``message``, a DescribeTable without ``Table``, a Scan page without items or a next key.
    Marked as a timeout, botocore's standard retry asks again; ``_raise_malformed`` raises
    it once the attempts run out. An operation that answers nothing (TagResource and
    UntagResource: "an HTTP 200 response with an empty HTTP body") is not checked."""
    if response_dict.get("status_code", 500) >= 300:
        return
    if operation_model is not None and operation_model.output_shape is None:
        return
    body = (response_dict.get("body") or b"").strip()
    if body.startswith(b"{") and body.endswith(b"}"):
        return
    customized_response_dict[MALFORMED] = True
    customized_response_dict["Error"] = {
        "Code": "RequestTimeout",
        "Message": f"the response's body is not JSON: {body[:60]!r}",
    }


def _raise_malformed(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    if parsed.get(MALFORMED):
        meta = {**parsed.get("ResponseMetadata", {}), "HTTPStatusCode": 502}
        raise botocore.exceptions.ClientError(
            {"Error": parsed["Error"], "ResponseMetadata": meta},  # type: ignore[typeddict-item]
            model.name,
        )


def translate(exc: Exception, *, what: str) -> Exception:
    """Map a botocore error to our tree; ``what`` names the thing being acted on."""
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return CredentialsError(f"no AWS credentials found while accessing {what}")
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "") or code
        if code in {
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "ExpiredTokenException",
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        }:
            return CredentialsError(f"AWS rejected the credentials while accessing {what}: {msg}")
        if refused := denied(exc):
            return CredentialsError(f"{what}: access denied: {refused}")
        if code in THROTTLING:
            return Throttled(f"{what}: still throttled after retries ({code})")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500:
            return Transient(f"{what}: {code or status}: {msg}")
        return AwsError(f"{what}: {code}: {msg}")
    if isinstance(
        exc,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.ChecksumError,
    ):
        return Transient(f"cannot reach the endpoint for {what}: {exc}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return AwsError(f"{what}: {exc}")
    return exc
