"""DynamoDB's JSON API over ``http.client``, signed here: for the two calls that move the data
of a restore (BatchWriteItem, and the Scan that proves the result).

botocore's request path (events, endpoint rules, user agent, urllib3, the response parser)
costs ~1 ms of CPU per request, and its parser ~300 ms per 1 MB Scan page. Here a ``Caller``
keeps one keep-alive connection per thread to the endpoint botocore resolved (``open_caller``),
signs each request with SigV4 (a test pins the signature to botocore's for the same request)
with the credentials it is given, and answers in our error tree: throttling is ``Throttled``,
a 5xx, a dropped connection or a bad CRC32 is ``Transient``, any other error goes through the
same translation as every botocore call; the caller's ``retrying`` sends the request again,
so nothing is skipped.

Each request is signed with the session's credentials as of then, refreshed as botocore
refreshes them. When a proxy stands between us and the endpoint, ``open_caller`` says None:
botocore knows how to reach it, and the callers use the stock client instead.
"""

from __future__ import annotations

import datetime
import email.parser
import hashlib
import hmac
import http.client
import platform
import ssl
import threading
import types
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import botocore.exceptions
import botocore.httpsession
import msgspec
import orjson

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import table_errors
from hippolyte.core.errors import AwsError, CredentialsError, Transient
from hippolyte.core.model import Json

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "DynamoDB_20120810."


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    url: str
    region: str
    timeout: float = 60.0
    ca_bundle: str | None = None  # AWS_CA_BUNDLE or the profile's, for a private CA


def open_caller(conn: aws.Connection, *, client: Any) -> Caller | None:
    """A caller of the endpoint ``client`` (a DynamoDB client of ``conn``) resolved, signing
    with the session's credentials; None when a proxy is configured for it."""
    url = client.meta.endpoint_url
    if client.meta.config.proxies or _environment_proxy(url):
        return None
    session = aws.session(conn)
    credentials = session.get_credentials()
    if credentials is None:
        raise CredentialsError(f"no AWS credentials found while accessing {url}")
    endpoint = Endpoint(
        url=url,
        region=client.meta.region_name,
        timeout=float(client.meta.config.read_timeout or 60),
        ca_bundle=session._session.get_config_variable("ca_bundle"),  # AWS_CA_BUNDLE, profile
    )
    return Caller(endpoint, credentials=credentials)


def _environment_proxy(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
        parts.hostname or ""
    )


class Caller:
    """SigV4-signed POSTs of DynamoDB's JSON API over one keep-alive connection per thread.
    ``credentials`` is botocore's provider: each request is signed with its keys as of then
    (``get_frozen_credentials``, which refreshes them when they are about to expire)."""

    def __init__(self, endpoint: Endpoint, *, credentials: Any):
        parts = urlsplit(endpoint.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP endpoint: {endpoint.url!r}")
        self.endpoint = endpoint
        self._credentials = credentials
        self._https = parts.scheme == "https"
        default_port = 443 if self._https else 80
        self._address = (parts.hostname, parts.port or default_port)
        self._path = parts.path or "/"
        self._signer = SigV4(
            host=parts.netloc.rsplit(":", 1)[0] if parts.port == default_port else parts.netloc,
            path=self._path,
            region=endpoint.region,
            service="dynamodb",
        )
        self._ssl = (
            ssl.create_default_context(
                cafile=endpoint.ca_bundle or botocore.httpsession.get_cert_path(True)
            )
            if self._https
            else None
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    def call(self, operation: str, body: bytes, *, table: str, what: str) -> bytes:
        """The body of DynamoDB's 200 answer to ``operation``; anything else raised, in our
        tree. ``what`` names the call in messages ("BatchWriteItem into 'orders'")."""
        status, data, crc = self._post(operation, body, what=what)
        if crc is not None and zlib.crc32(data) != int(crc):
            raise Transient(f"{what}: the answer failed its CRC32 check")
        if status != 200:
            _raise_error(status, data, operation=operation, table=table, what=what)
        return data

    def _post(self, operation: str, body: bytes, *, what: str) -> tuple[int, bytes, str | None]:
        """One request; a kept-alive connection the server closed meanwhile is replaced and
        the request sent again at once (both calls are idempotent), as urllib3 does."""
        while True:
            conn, fresh = self._connection()
            try:
                headers = self._signer.headers(
                    body,
                    target=TARGET_PREFIX + operation,
                    keys=self._credentials.get_frozen_credentials(),
                )
                headers["User-Agent"] = _USER_AGENT  # not signed, as botocore leaves it too
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise AwsError(
                    f"cannot verify the TLS certificate of {self.endpoint.url}: "
                    f"{exc.verify_message} (a private CA goes in AWS_CA_BUNDLE)"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if not fresh and isinstance(exc, _STALE):
                    continue
                raise Transient(f"{what}: {self.endpoint.url}: {exc!r}") from exc
            self._local.used = True
            if response.will_close:
                self._drop()
            return response.status, data, response.getheader("x-amz-crc32")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it is new (never answered a request)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, not self._local.used
        host, port = self._address
        timeout = self.endpoint.timeout
        conn = (
            http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
            if self._https
            else http.client.HTTPConnection(host, port, timeout=timeout)
        )
        conn.response_class = _Response
        self._local.conn, self._local.used = conn, False
        with self._lock:
            self._open.append(conn)
        return conn, True

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()


_USER_AGENT = f"{aws.USER_AGENT_APP} python/{platform.python_version()} http.client"


def parse_headers(fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage) -> Any:
    """``http.client.parse_headers``, the same message, without the email package's feed
    parser for the plain ``Name: value`` lines an answer has (~3% of a restore's main
    process, bench/README.md section 4); folded or odd lines go to the stock parser."""
    lines = []
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
    message = _class()
    for line in lines:
        text = line.decode("iso-8859-1")
        name, colon, value = text.partition(":")
        if not colon or text[:1] in " \t":
            whole = b"".join(lines).decode("iso-8859-1")
            return email.parser.Parser(_class=_class).parsestr(whole)
        message[name] = value.lstrip(" \t").rstrip("\r\n")
    return message


_MAX_LINE, _MAX_HEADERS = 65536, 100  # http.client's limits


def _with_fast_headers(begin: Any) -> Any:
    """``HTTPResponse.begin`` calling ``parse_headers`` above instead of the module's."""
    if "parse_headers" not in begin.__code__.co_names:  # pragma: no cover - another Python
        return begin
    scope = {**begin.__globals__, "parse_headers": parse_headers}
    return types.FunctionType(begin.__code__, scope, begin.__name__, begin.__defaults__)


class _Response(http.client.HTTPResponse):
    begin = _with_fast_headers(http.client.HTTPResponse.begin)


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class _Error(msgspec.Struct):
    type: str = msgspec.field(name="__type", default="")
    message: str = ""
    Message: str = ""


_error = msgspec.json.Decoder(_Error)


def _raise_error(status: int, data: bytes, *, operation: str, table: str, what: str) -> NoReturn:
    """An error answer in our tree, through the same translation as every botocore call."""
    try:
        doc = _error.decode(data)
        code, message = doc.type.rpartition("#")[2], doc.message or doc.Message
    except msgspec.DecodeError:
        code, message = "", data[:200].decode("utf-8", "replace")
    with table_errors(table, what=what):
        answer: Any = {
            "Error": {"Code": code or str(status), "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise botocore.exceptions.ClientError(answer, operation)


# --- Scan ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScanAnswer:
    body: bytes  # the answer as the server sent it: its items are cut out where they are used
    count: int
    last_key: Json | None  # DynamoDB JSON, to go back as ExclusiveStartKey as it is
    consumed: float
    retries: int = 0  # the direct call makes none of its own


class _ScanHead(msgspec.Struct):
    Items: msgspec.Raw = msgspec.Raw()  # passed over, not decoded
    Count: int = 0
    LastEvaluatedKey: msgspec.Raw = msgspec.Raw()
    ConsumedCapacity: msgspec.Raw = msgspec.Raw()


_scan_head = msgspec.json.Decoder(_ScanHead)


def scan(
    caller: Caller,
    *,
    table: str,
    segment: int,
    total_segments: int,
    start_key: Json | None,
    limit: int | None,
) -> ScanAnswer:
    """One page of one segment, eventually consistent, with its consumed capacity; its items
    left in the body (``proof.digest_of_answer`` digests them from there)."""
    request: Json = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
    if total_segments > 1:
        request["Segment"], request["TotalSegments"] = segment, total_segments
    if start_key:
        request["ExclusiveStartKey"] = start_key
    if limit:
        request["Limit"] = limit
    what = f"table {table!r} segment {segment}"
    data = caller.call("Scan", orjson.dumps(request), table=table, what=what)
    try:
        head = _scan_head.decode(data)
        capacity = orjson.loads(bytes(head.ConsumedCapacity)) if head.ConsumedCapacity else {}
        last_key = orjson.loads(bytes(head.LastEvaluatedKey)) if head.LastEvaluatedKey else None
        consumed = float(capacity.get("CapacityUnits") or 0.0)
    except (msgspec.DecodeError, orjson.JSONDecodeError, AttributeError, ValueError) as exc:
        raise Transient(f"{what}: an answer that is not DynamoDB's: {data[:120]!r}") from exc
    return ScanAnswer(body=data, count=head.Count, last_key=last_key, consumed=consumed)


# --- signing -------------------------------------------------------------------------------------


class SigV4:
    """AWS Signature Version 4 for JSON POSTs to one host (the header set DynamoDB needs).

    Ours, not botocore's ``SigV4Auth`` on an ``AWSRequest``: in the same writer, that costs
    12-21% more CPU per MB restored (``bench/run.py --only signer``, bench/README.md section 7):
    request preparation, email-based headers and the key derived again for every request.
    """

    def __init__(self, *, host: str, path: str, region: str, service: str):
        self.host, self.path, self.region, self.service = host, path, region, service
        self._keys: dict[tuple[str, str], bytes] = {}

    def headers(
        self, body: bytes, *, target: str, keys: Any, now: datetime.datetime | None = None
    ) -> dict[str, str]:
        """``keys``: frozen credentials (``access_key``, ``secret_key``, ``token``)."""
        when = now or datetime.datetime.now(datetime.UTC)
        stamp, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-Amz-Date": stamp,
            "X-Amz-Target": target,
        }
        if keys.token:
            headers["X-Amz-Security-Token"] = keys.token
        names = sorted(headers, key=str.lower)
        signed = ";".join(n.lower() for n in names)
        canonical = "\n".join(
            [
                "POST",
                self.path,
                "",
                *(f"{n.lower()}:{headers[n]}" for n in names),
                "",
                signed,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                stamp,
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        signature = hmac.new(
            self._key(keys.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={keys.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers  # with Host: http.client then sends exactly the one signed

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}
        return key
