"""The cheapest Scan client there is: signed raw HTTP, one keep-alive connection per segment,
bodies read and discarded except for ``Count`` and ``LastEvaluatedKey``. What it reaches is the
server's ceiling, the yardstick a backup client's throughput is compared with."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from common import REGION


class _PageTail(msgspec.Struct):
    Count: int = 0
    # Raw cannot sit in a Union with None: an empty Raw means "no key" (the last page).
    LastEvaluatedKey: msgspec.Raw = msgspec.Raw()


_decode_tail = msgspec.json.Decoder(_PageTail).decode


@dataclass(frozen=True, kw_only=True)
class ScanTotals:
    wall_s: float
    client_cpu_s: float
    pages: int
    items: int
    body_bytes: int


class _Signer:
    def __init__(self, endpoint_url: str, *, key: str = "testing", secret: str = "testing"):
        self.url = endpoint_url.rstrip("/") + "/"
        self.auth = SigV4Auth(Credentials(key, secret), "dynamodb", REGION)

    def headers(self, operation: str, body: bytes) -> dict[str, str]:
        request = AWSRequest(method="POST", url=self.url, data=body, headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        })
        self.auth.add_auth(request)
        return dict(request.headers.items())


def _scan_segment(endpoint_url: str, request: dict[str, Any], out: list[tuple[int, int, int]],
                  errors: list[BaseException]) -> None:
    try:
        parts = urlsplit(endpoint_url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        signer = _Signer(endpoint_url)
        pages = items = size = 0
        while True:
            body = orjson.dumps(request)
            conn.request("POST", "/", body=body, headers=signer.headers("Scan", body))
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"Scan answered {response.status}: {data[:300]!r}")
            tail = _decode_tail(data)
            pages, items, size = pages + 1, items + tail.Count, size + len(data)
            if not tail.LastEvaluatedKey:
                break
            request = {**request, "ExclusiveStartKey": orjson.loads(bytes(tail.LastEvaluatedKey))}
        conn.close()
        out.append((pages, items, size))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
        errors.append(exc)


def parallel_scan(endpoint_url: str, *, table: str, segments: int) -> ScanTotals:
    """Scan every segment at once, one thread each, as fast as the server answers."""
    out: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    base: dict[str, Any] = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
    threads = [
        threading.Thread(target=_scan_segment, args=(
            endpoint_url,
            {**base, "Segment": s, "TotalSegments": segments} if segments > 1 else base,
            out, errors))
        for s in range(segments)
    ]
    began, cpu = time.monotonic(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    if errors:
        raise errors[0]
    return ScanTotals(wall_s=wall, client_cpu_s=cpu, pages=sum(p for p, _, _ in out),
                      items=sum(i for _, i, _ in out), body_bytes=sum(b for _, _, b in out))
