"""BatchWriteItem with request bodies built straight from the backup's item bytes.

The stock client validates and serializes every attribute of every item (2.4-5 MB/s per
core), and even with a prepared body its request path (events, endpoint rules, user agent,
urllib3) costs ~1 ms of CPU per request. Hippolyte already holds each item as DynamoDB JSON,
so it has two ways to send a batch, chosen once per restore by ``open_writer``:

- ``DirectWriter`` (the default): one keep-alive ``http.client`` connection per thread to the
  endpoint botocore resolved, the request signed here with SigV4 (a test pins the signature
  to botocore's for the same request) using the session's credentials, refreshed as botocore
  refreshes them. It answers in our error tree: throttling is ``Throttled``, a 5xx, a
  dropped connection or a bad CRC32 is ``Transient``; the caller's ``retrying`` sends the same
  request again, so nothing is skipped.
- ``BotocoreWriter``, when a proxy is configured (botocore knows how to reach it): the stock
  client with a one-item placeholder whose body a ``before-call`` hook swaps for ours. The
  placeholder is an empty item, which DynamoDB rejects: if the hook ever failed to run, the call
  would fail instead of writing anything wrong.

Both return what DynamoDB left unprocessed as the items' original bytes, to be sent again.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import platform
import ssl
import threading
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from urllib.parse import urlsplit

import botocore.exceptions
import botocore.httpsession
import msgspec
import orjson

from hippolyte.adapters import aws
from hippolyte.adapters.dynamodb import encode_item, table_errors
from hippolyte.core.errors import AwsError, CredentialsError, Transient

MAX_ITEMS = 25
MAX_BYTES = 16 * 1024 * 1024
TARGET = "DynamoDB_20120810.BatchWriteItem"
CONTENT_TYPE = "application/x-amz-json-1.0"


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    unprocessed: list[bytes]  # items to send again, as DynamoDB JSON
    consumed: float
    retries: int  # retries made inside the call (botocore's); 0 for the direct writer


class Writer(Protocol):
    def write_batch(self, *, table: str, items: list[bytes]) -> WriteResult: ...

    def close(self) -> None: ...


def request_body(table: str, items: list[bytes]) -> bytes:
    puts = b",".join(b'{"PutRequest":{"Item":' + item + b"}}" for item in items)
    return (
        b'{"RequestItems":{'
        + orjson.dumps(table)
        + b":["
        + puts
        + b']},"ReturnConsumedCapacity":"TOTAL"}'
    )


def open_writer(conn: aws.Connection, *, pool: int, max_attempts: int = 10) -> Writer:
    """The direct writer, unless a proxy stands between us and the endpoint."""
    client = raw_write_client(conn, pool=pool, max_attempts=max_attempts)
    url = client.meta.endpoint_url
    if client.meta.config.proxies or _environment_proxy(url):
        return BotocoreWriter(client)
    session = aws.session(conn)
    credentials = session.get_credentials()
    if credentials is None:
        raise CredentialsError(f"no AWS credentials found while accessing {url}")
    return DirectWriter(
        url,
        region=client.meta.region_name,
        credentials=credentials,
        timeout=float(client.meta.config.read_timeout or 60),
        ca_bundle=session._session.get_config_variable("ca_bundle"),  # AWS_CA_BUNDLE, profile
    )


def _environment_proxy(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
        parts.hostname or ""
    )


# --- the direct writer ---------------------------------------------------------------------------


class _Put(msgspec.Struct):
    Item: msgspec.Raw


class _Request(msgspec.Struct):
    PutRequest: _Put | None = None


class _Capacity(msgspec.Struct):
    CapacityUnits: float = 0.0


class _Answer(msgspec.Struct):
    UnprocessedItems: dict[str, list[_Request]] = {}
    ConsumedCapacity: list[_Capacity] | None = None


class _Error(msgspec.Struct):
    type: str = msgspec.field(name="__type", default="")
    message: str = ""
    Message: str = ""


_answer = msgspec.json.Decoder(_Answer)
_error = msgspec.json.Decoder(_Error)


class DirectWriter:
    """SigV4-signed BatchWriteItem over one keep-alive connection per thread."""

    def __init__(
        self,
        url: str,
        *,
        region: str,
        credentials: Any,
        timeout: float = 60.0,
        ca_bundle: str | None = None,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP endpoint: {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        default_port = 443 if self._https else 80
        self._address = (parts.hostname, parts.port or default_port)
        self._path = parts.path or "/"
        self._signer = SigV4(
            host=parts.netloc.rsplit(":", 1)[0] if parts.port == default_port else parts.netloc,
            path=self._path,
            region=region,
            service="dynamodb",
            credentials=credentials,
        )
        self._timeout = timeout
        self._ssl = (
            ssl.create_default_context(cafile=ca_bundle or botocore.httpsession.get_cert_path(True))
            if self._https
            else None
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    def write_batch(self, *, table: str, items: list[bytes]) -> WriteResult:
        body = request_body(table, items)
        status, data, crc = self._post(body, table=table)
        if crc is not None and zlib.crc32(data) != int(crc):
            raise Transient(f"BatchWriteItem into {table!r}: the answer failed its CRC32 check")
        if status != 200:
            _raise_error(status, data, table=table)
        try:
            answer = _answer.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Transient(
                f"BatchWriteItem into {table!r}: an answer that is not DynamoDB's ({exc}): "
                f"{data[:120]!r}"
            ) from exc
        left = answer.UnprocessedItems.get(table) or []
        return WriteResult(
            unprocessed=[bytes(r.PutRequest.Item) for r in left if r.PutRequest is not None],
            consumed=sum(c.CapacityUnits for c in answer.ConsumedCapacity or []),
            retries=0,
        )

    def _post(self, body: bytes, *, table: str) -> tuple[int, bytes, str | None]:
        """One request; a kept-alive connection the server closed meanwhile is replaced and
        the request sent again at once (a put is idempotent), as urllib3 does."""
        while True:
            conn, fresh = self._connection()
            try:
                headers = self._signer.headers(body)
                headers["User-Agent"] = _USER_AGENT  # not signed, as botocore leaves it too
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise AwsError(
                    f"cannot verify the TLS certificate of {self.url}: {exc.verify_message} "
                    "(a private CA goes in AWS_CA_BUNDLE)"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if not fresh and isinstance(exc, _STALE):
                    continue
                raise Transient(f"BatchWriteItem into {table!r}: {self.url}: {exc!r}") from exc
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
        conn = (
            http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._ssl)
            if self._https
            else http.client.HTTPConnection(host, port, timeout=self._timeout)
        )
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
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _raise_error(status: int, data: bytes, *, table: str) -> NoReturn:
    """An error answer in our tree, through the same translation as every botocore call."""
    try:
        doc = _error.decode(data)
        code, message = doc.type.rpartition("#")[2], doc.message or doc.Message
    except msgspec.DecodeError:
        code, message = "", data[:200].decode("utf-8", "replace")
    with table_errors(table, what=f"BatchWriteItem into {table!r}"):
        answer: Any = {
            "Error": {"Code": code or str(status), "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise botocore.exceptions.ClientError(answer, "BatchWriteItem")


class SigV4:
    """AWS Signature Version 4 for JSON POSTs to one host (the header set DynamoDB needs).

    Ours, not botocore's ``SigV4Auth`` on an ``AWSRequest``: in the same writer, that costs
    12-21% more CPU per MB restored (``bench/run.py --only signer``, bench/README.md section 7):
    request preparation, email-based headers and the key derived again for every request.
    """

    def __init__(self, *, host: str, path: str, region: str, service: str, credentials: Any):
        self.host, self.path, self.region, self.service = host, path, region, service
        self._credentials = credentials
        self._keys: dict[tuple[str, str], bytes] = {}

    def headers(self, body: bytes, *, now: datetime.datetime | None = None) -> dict[str, str]:
        creds = self._credentials.get_frozen_credentials()
        when = now or datetime.datetime.now(datetime.UTC)
        stamp, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-Amz-Date": stamp,
            "X-Amz-Target": TARGET,
        }
        if creds.token:
            headers["X-Amz-Security-Token"] = creds.token
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
            self._key(creds.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
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


# --- through botocore ----------------------------------------------------------------------------

_local = threading.local()
_PLACEHOLDER: list[dict[str, Any]] = [{"PutRequest": {"Item": {}}}]


def _swap_body(params: dict[str, Any], **_: Any) -> None:
    body = getattr(_local, "body", None)
    if body is None:
        raise RuntimeError("raw BatchWriteItem called without a prepared body")
    params["body"] = body
    _local.body = None


def raw_write_client(conn: aws.Connection, *, pool: int, max_attempts: int = 10) -> Any:
    client = aws.client(
        conn, "dynamodb", pool=pool, max_attempts=max_attempts, parameter_validation=False
    )
    client.meta.events.register("before-call.dynamodb.BatchWriteItem", _swap_body)
    return client


class BotocoreWriter:
    """The stock client's request path (signing, retries, proxies) with our body."""

    def __init__(self, client: Any):
        self.client = client

    def write_batch(self, *, table: str, items: list[bytes]) -> WriteResult:
        _local.body = request_body(table, items)
        try:
            with table_errors(table, what=f"BatchWriteItem into {table!r}"):
                resp = self.client.batch_write_item(RequestItems={table: _PLACEHOLDER})
        finally:
            _local.body = None
        left = (resp.get("UnprocessedItems") or {}).get(table) or []
        consumed = sum(
            float(c.get("CapacityUnits") or 0) for c in resp.get("ConsumedCapacity") or []
        )
        return WriteResult(
            unprocessed=[encode_item(r["PutRequest"]["Item"]) for r in left if "PutRequest" in r],
            consumed=consumed,
            retries=int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0)),
        )

    def close(self) -> None:
        self.client.close()
