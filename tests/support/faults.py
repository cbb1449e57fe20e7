"""A fault-injecting HTTP proxy for DynamoDB, for tests: put it between Hippolyte and a real
local server and it throttles, fails, drops or corrupts chosen requests on a fixed schedule.

    with FaultProxy(upstream=server.endpoint_url, operation="Scan",
                    schedule=["ok", "throttle", "ok", "500", "drop", "crc"]) as proxy:
        ... endpoint_url=proxy.endpoint_url ...

Faults: ``throttle`` (400 ProvisionedThroughputExceededException), ``throttling`` (400
ThrottlingException), ``500`` (InternalServerError), ``503`` (ServiceUnavailable), ``drop``
(connection closed, no response), ``crc`` (a 200 whose body lost its last item but keeps the
original x-amz-crc32: botocore must notice and retry), ``garbage`` (a 200 whose body is not
JSON, as a captive proxy answers), ``denied`` (400 AccessDeniedException, as DynamoDB answers
credentials whose IAM policy does not allow the operation), ``unprocessed`` (BatchWriteItem:
only half the items are written, the rest come back as UnprocessedItems), ``slow`` (forwarded
after ``slow_s`` seconds, as an overloaded endpoint answers), ``ok`` (forward).

Instead of a schedule for one operation, ``mix`` draws a fault for every request of
``operations`` (default: all) from fixed probabilities, with a seed, so a run is repeatable:

    FaultProxy(upstream=..., mix={"throttle": 0.2, "500": 0.025, "slow": 0.05}, seed=7)
"""

from __future__ import annotations

import http.client
import itertools
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

import orjson

_ERRORS = {
    "throttle": (400, "ProvisionedThroughputExceededException"),
    "throttling": (400, "ThrottlingException"),
    "500": (500, "InternalServerError"),
    "503": (503, "ServiceUnavailable"),
    "decrease-limit": (400, "LimitExceededException"),
    "denied": (400, "AccessDeniedException"),
}
_MESSAGES = {
    "decrease-limit": b"Subscriber limit exceeded: Provisioned throughput decreases are limited "
    b"within a given UTC day",
}


class FaultProxy:
    def __init__(
        self,
        *,
        upstream: str,
        schedule: Iterable[str] = (),
        operation: str = "Scan",
        tls: ssl.SSLContext | None = None,
        mix: Mapping[str, float] | None = None,
        operations: Collection[str] | None = None,
        seed: int = 0,
        slow_s: float = 1.0,
    ) -> None:
        url = urlsplit(upstream)
        self._upstream = (url.hostname or "127.0.0.1", url.port or 80)
        steps = list(schedule)
        if not steps and mix is None:
            raise ValueError("FaultProxy needs a schedule or a mix")
        if mix is not None and sum(mix.values()) > 1:
            raise ValueError(f"the mix's probabilities add up to more than 1: {dict(mix)}")
        self._schedule = itertools.cycle(steps)
        self._operation = operation
        self._mix = list((mix or {}).items())
        self._operations = None if operations is None else set(operations)
        self._random = random.Random(seed)
        self.slow_s = slow_s
        self.enabled = True  # False: forward everything (faults paused, e.g. between phases)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.by_operation: Counter[tuple[str, str]] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls is not None:  # serve HTTPS with the caller's certificate
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    def _next_fault(self, target: str) -> str:
        if self._mix:
            return self._drawn_fault(target.rpartition(".")[2])
        if not target.endswith("." + self._operation):
            return "ok"
        with self._lock:
            fault = next(self._schedule)
            self.counts[fault] += 1
            return fault

    def _drawn_fault(self, operation: str) -> str:
        if not self.enabled or (self._operations is not None and operation not in self._operations):
            return "ok"
        with self._lock:
            draw, fault = self._random.random(), "ok"
            for name, p in self._mix:
                if draw < p:
                    fault = name
                    break
                draw -= p
            self.counts[fault] += 1
            self.by_operation[operation, fault] += 1
            return fault

    def _message(self, fault: str) -> bytes:
        if fault == "denied":  # DynamoDB's wording, which names the permission
            return (
                b"User: arn:aws:iam::123456789012:user/hippolyte is not authorized to perform: "
                b"dynamodb:%s because no identity-based policy allows the dynamodb:%s action"
                % (self._operation.encode(), self._operation.encode())
            )
        return _MESSAGES.get(fault, b"injected by FaultProxy")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next_fault(self.headers.get("X-Amz-Target", ""))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault in _ERRORS:
                    status, code = _ERRORS[fault]
                    message = proxy._message(fault)
                    self._reply(
                        status,
                        {"x-amz-crc32": None},
                        b'{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"%s"}'
                        % (code.encode(), message),
                    )
                    return
                if fault == "garbage":
                    self._reply(200, {}, b"<html>please sign in</html>")
                    return
                if fault == "unprocessed":
                    self._reply(200, {}, proxy._half_processed(self.path, dict(self.headers), body))
                    return
                if fault == "slow":
                    time.sleep(proxy.slow_s)
                status, headers, data = proxy._forward(self.path, dict(self.headers), body)
                if fault == "crc" and status == 200:
                    data = _drop_last_item(data)
                self._reply(status, headers, data)

            def _reply(self, status: int, headers: dict[str, str | None], data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                if headers.get("x-amz-crc32"):
                    self.send_header("x-amz-crc32", headers["x-amz-crc32"] or "")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _forward(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str | None], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {"x-amz-crc32": resp.getheader("x-amz-crc32")}, data
        finally:
            conn.close()

    def _half_processed(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """Forward half of a BatchWriteItem; answer with the other half as UnprocessedItems.
        The headers are re-signed by nobody: local servers do not check signatures."""
        doc = orjson.loads(body)
        (table, requests), *_ = doc["RequestItems"].items()
        keep, left = requests[: len(requests) // 2], requests[len(requests) // 2 :]
        if keep:
            doc["RequestItems"] = {table: keep}
            sub = orjson.dumps(doc)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            self._forward(path, {**headers, "Content-Length": str(len(sub))}, sub)
        return orjson.dumps({"UnprocessedItems": {table: left} if left else {}})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _drop_last_item(data: bytes) -> bytes:
    """Corrupt a Scan body the way a truncated transfer would: change its content."""
    cut = data.rfind(b'{"')
    return data[:cut] + b"}" if cut > 0 else data + b" "
