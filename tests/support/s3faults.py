"""A fault-injecting HTTP proxy for S3, for tests: put it between Hippolyte and a local S3 server
(moto, ``rclone serve s3``) and it corrupts or refuses chosen uploads on a fixed schedule.

    with S3FaultProxy(upstream=server.endpoint_url, match=r"/data/",
                      schedule=["ok", "flip"]) as proxy:
        ... s3_endpoint_url=proxy.endpoint_url ...

Every request is forwarded as it came (headers untouched: the signature still holds, the
Host being the proxy's in both). The schedule applies, in order, to the uploads (PUT with a
body: PutObject, UploadPart) whose path matches ``match``; once it is used up, ``then``
applies to the rest. Faults: ``flip`` (one byte of the body inverted, headers kept: the server
receives other bytes than were sent, as a bad NIC or proxy would deliver them), ``deny`` (403
AccessDenied, as S3 answers a role without s3:PutObject), ``500`` (InternalError), ``slow``
(forwarded after ``delay`` seconds: time to kill the client midway), ``ok``.
``counts`` tallies the faults applied; ``puts`` lists the paths of the uploads forwarded.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
_ERRORS = {
    "deny": (403, "AccessDenied", "Access Denied"),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
}


class S3FaultProxy:
    def __init__(
        self,
        *,
        upstream: str,
        schedule: Iterable[str] = (),
        then: str = "ok",
        match: str = "",
        delay: float = 0.5,
    ) -> None:
        url = urlsplit(upstream)
        self._upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self._schedule = list(schedule)
        self._then = then
        self._match = re.compile(match)
        self._delay = delay
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.puts: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _fault(self, method: str, path: str) -> str:
        if method != "PUT" or not self._match.search(path):
            return "ok"
        with self._lock:
            fault = self._schedule.pop(0) if self._schedule else self._then
            self.counts[fault] += 1
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                fault = proxy._fault(self.command, self.path)
                if fault in _ERRORS:
                    status, code, message = _ERRORS[fault]
                    self._reply(status, {"Content-Type": "application/xml"}, _error(code, message))
                    return
                if fault == "slow":
                    time.sleep(proxy._delay)
                if fault == "flip" and body:
                    middle = len(body) // 2
                    body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
                if self.command == "PUT" and body:
                    with proxy._lock:
                        proxy.puts.append(self.path)
                status, headers, data = proxy._forward(
                    self.command, self.path, dict(self.headers), body
                )
                self._reply(status, headers, data, head=self.command == "HEAD")

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any  # noqa: N815

            def _reply(
                self, status: int, headers: dict[str, str], data: bytes, *, head: bool = False
            ) -> None:
                length = headers.pop("_length", str(len(data)))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        return Handler

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            conn.request(method, path, body=body if body else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
            if method == "HEAD":  # no body, but the object's length
                out["_length"] = resp.getheader("Content-Length") or "0"
            return resp.status, out, data
        finally:
            conn.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> S3FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>s3faults</RequestId></Error>"
    ).encode()
