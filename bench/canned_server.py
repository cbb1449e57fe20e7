"""A DynamoDB stand-in that answers Scan as fast as it can, from canned items (bench/items.py).

Run as its own process: ``python bench/canned_server.py [--port 0]``; it prints the port it
listens on (127.0.0.1 only) as its first line of output, then serves until SIGTERM.

Tables exist by name: ``canned-<N>`` is a provisioned table (40,000 RCU) of N MiB of
DynamoDB-sized data (about 1,000 items per MiB), so one server answers every size. A Scan
honours ``Segment``/``TotalSegments`` (contiguous index ranges), ``Limit`` and
``ExclusiveStartKey`` (the binary ``sk`` carries the item index: a key that arrives
base64-encoded twice is refused with a ValidationException, as DynamoDB would), fills a page up
to 1 MiB of DynamoDB-sized data, and reports ``ConsumedCapacity`` as bytes / 8192 (eventually
consistent). It also answers DescribeTable, DescribeTimeToLive, ListTagsOfResource and
DescribeContinuousBackups; ``--no-extras`` answers those three with UnknownOperationException.
Responses carry ``x-amz-crc32`` like DynamoDB's, so botocore checks them.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import signal
import sys
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import items  # noqa: E402

PAGE_BYTES = 1 << 20  # DynamoDB stops a page after 1 MB of data
RCU = 40_000
ACCOUNT = "000000000000"
_TABLE = re.compile(r"canned-(\d+)")


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Table:
    """``canned-<mib>``: items 0..count-1, about ``mib`` MiB as DynamoDB sizes them."""

    def __init__(self, name: str) -> None:
        match = _TABLE.fullmatch(name)
        if not match:
            raise ApiError("ResourceNotFoundException", f"Requested resource not found: {name}")
        self.name = name
        sizes = items.template_sizes()
        self.count = round(int(match.group(1)) * PAGE_BYTES * len(sizes) / sum(sizes))

    def describe(self) -> dict[str, Any]:
        return {"Table": {
            "TableName": self.name,
            "TableArn": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{self.name}",
            "TableId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
            "TableStatus": "ACTIVE",
            "KeySchema": items.KEY_SCHEMA,
            "AttributeDefinitions": items.ATTRIBUTE_DEFINITIONS,
            "ProvisionedThroughput": {"ReadCapacityUnits": RCU, "WriteCapacityUnits": 1000,
                                      "NumberOfDecreasesToday": 0},
            "BillingModeSummary": {"BillingMode": "PROVISIONED"},
            "TableSizeBytes": items.table_size(self.count),
            "ItemCount": self.count,
            "CreationDateTime": 1_700_000_000.0,
        }}

    def segment_range(self, request: dict[str, Any]) -> range:
        total = int(request.get("TotalSegments", 1))
        segment = int(request.get("Segment", 0))
        if not 0 <= segment < total:
            raise ApiError("ValidationException", "Segment must be less than TotalSegments")
        return range(segment * self.count // total, (segment + 1) * self.count // total)

    def scan(self, request: dict[str, Any]) -> bytes:
        span = self.segment_range(request)
        start = span.start
        if "ExclusiveStartKey" in request:
            start = _index_of_key(request["ExclusiveStartKey"]) + 1
            if start not in span and start != span.stop:
                raise ApiError("ValidationException", "The provided starting key is invalid")
        limit = int(request.get("Limit") or 0) or span.stop
        sizes = items.template_sizes()
        bodies = items.template_bodies()
        parts = [b'{"Items":[']
        used = 0
        end = start
        while end < span.stop and end - start < limit and used < PAGE_BYTES:
            t = end % items.TEMPLATES
            parts += (items.key_json(end), bodies[t], b",")
            used += sizes[t]
            end += 1
        if end > start:
            parts[-1] = b"]"
        else:
            parts.append(b"]")
        count = end - start
        parts.append(b',"Count":%d,"ScannedCount":%d' % (count, count))
        if end < span.stop:
            parts += (b',"LastEvaluatedKey":', items.key_json(end - 1), b"}")
        units = max(used / 8192, 0.5)
        parts.append(b',"ConsumedCapacity":{"TableName":"%s","CapacityUnits":%s}}'
                     % (self.name.encode(), repr(units).encode()))
        return b"".join(parts)


def _index_of_key(key: dict[str, Any]) -> int:
    try:
        index = items.index_of_sk(base64.b64decode(key["sk"]["B"], validate=True))
        if key["pk"]["S"] != items.pk_of(index):
            raise ValueError("pk and sk disagree")
        return index
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ApiError("ValidationException",
                       f"The provided starting key is invalid: {exc}") from None


_tables: dict[str, Table] = {}


def table(name: str) -> Table:
    if name not in _tables:
        _tables[name] = Table(name)
    return _tables[name]


def answer(operation: str, request: dict[str, Any], *, extras: bool) -> bytes:
    if operation == "Scan":
        return table(request["TableName"]).scan(request)
    if operation == "DescribeTable":
        return orjson.dumps(table(request["TableName"]).describe())
    if operation == "ListTables":
        return orjson.dumps({"TableNames": sorted(_tables)})
    if extras and operation == "DescribeTimeToLive":
        table(request["TableName"])
        return b'{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}'
    if extras and operation == "ListTagsOfResource":
        return b'{"Tags":[]}'
    if extras and operation == "DescribeContinuousBackups":
        table(request["TableName"])
        return (b'{"ContinuousBackupsDescription":{"ContinuousBackupsStatus":"ENABLED",'
                b'"PointInTimeRecoveryDescription":{"PointInTimeRecoveryStatus":"DISABLED"}}}')
    raise ApiError("UnknownOperationException", f"unknown operation {operation}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per client thread
    extras = True

    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        operation = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        try:
            body, status = answer(operation, orjson.loads(raw), extras=self.extras), 200
        except ApiError as exc:
            body, status = orjson.dumps({
                "__type": f"com.amazonaws.dynamodb.v20120810#{exc.code}",
                "message": exc.message}), 400
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            body, status = orjson.dumps({
                "__type": "com.amazon.coral.validate#ValidationException",
                "message": f"bad request: {exc}"}), 400
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "canned")
        self.send_header("x-amz-crc32", str(zlib.crc32(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


def serve(port: int, *, extras: bool) -> None:
    Handler.extras = extras
    items.template_sizes()  # build the templates before announcing the port
    items.template_bodies()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-extras", action="store_true",
                        help="answer TTL/tags/PITR calls with UnknownOperationException")
    args = parser.parse_args()
    serve(args.port, extras=not args.no_extras)


if __name__ == "__main__":
    main()
