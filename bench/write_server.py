"""A DynamoDB stand-in that accepts BatchWriteItem as fast as it can (bench/bench_restore.py).

Run as its own process: ``python bench/write_server.py [--port 0]``; it prints the port it
listens on (127.0.0.1 only) as its first line of output, then serves until SIGTERM.

One asyncio event loop, a hand-rolled HTTP/1.1 keep-alive parser and no JSON parsing on the
write path: a BatchWriteItem body is read, its first table name found with a regex near its
start, its ``PutRequest``s counted with ``bytes.count`` and the answer is
``{"UnprocessedItems":{},"ConsumedCapacity":[{"TableName":T,"CapacityUnits":N}]}`` with N the
larger of the item count and the body's KiB (an estimate: DynamoDB charges one unit per
started KB of each item). Every response carries ``x-amz-crc32`` like DynamoDB's, so botocore
checks it.

Tables made with CreateTable are ACTIVE at once (DescribeTable, UpdateTable, the TTL, tag and
PITR calls answer as DynamoDB would) and keep the bodies written to them; a Scan parses those
bodies once (msgspec, items kept as raw bytes, last put of a key wins) and replays the items
(``Segment``/``TotalSegments`` as contiguous ranges, ``Limit``, ``ExclusiveStartKey``, 1 MB
pages), so ``hippolyte restore`` can run its proof against this server. BatchWriteItem into a
table that was never created is accepted and counted but not kept: that is the pure write
ceiling. ``BenchStats`` (X-Amz-Target ``DynamoDB_20120810.BenchStats``) returns per table the
requests, puts and body bytes received.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

PAGE_BYTES = 1 << 20
ACCOUNT = "000000000000"
REGION = "us-east-1"
MAX_ITEMS = 25
_TABLE_NAME = re.compile(rb'"RequestItems"\s*:\s*\{\s*"((?:[^"\\]|\\.)*)"')
_PUT = b'"PutRequest"'
_DELETE = b'"DeleteRequest"'
_SORT = orjson.OPT_SORT_KEYS


class ApiError(Exception):
    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


# -- parsing kept bodies (Scan only) -----------------------------------------------------------

class _Put(msgspec.Struct):
    Item: msgspec.Raw


class _Delete(msgspec.Struct):
    Key: msgspec.Raw


class _Request(msgspec.Struct):
    PutRequest: _Put | None = None
    DeleteRequest: _Delete | None = None


class _Batch(msgspec.Struct):
    RequestItems: dict[str, list[_Request]]


_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_attrs = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


@dataclass
class Tally:
    requests: int = 0
    puts: int = 0
    deletes: int = 0
    bytes: int = 0


@dataclass
class Table:
    request: dict[str, Any]  # the CreateTable request
    created: float
    bodies: list[bytes] = field(default_factory=list)  # BatchWriteItem bodies not yet parsed
    items: dict[bytes, bytes] = field(default_factory=dict)  # canonical key -> item JSON
    order: list[bytes] = field(default_factory=list)  # keys, for Scan positions
    position: dict[bytes, int] = field(default_factory=dict)
    ttl: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    pitr: bool = False

    @property
    def name(self) -> str:
        return str(self.request["TableName"])

    @property
    def key_names(self) -> list[str]:
        return [str(k["AttributeName"]) for k in self.request["KeySchema"]]

    def canonical_key(self, item: bytes) -> bytes:
        attrs = _decode_attrs(item)
        try:
            return orjson.dumps({n: orjson.loads(bytes(attrs[n])) for n in self.key_names},
                                option=_SORT)
        except KeyError as exc:
            raise ApiError("ValidationException",
                           f"One of the required keys was not given a value: {exc}") from None

    def settle(self) -> None:
        """Parse the bodies written since the last Scan into the item map."""
        if not self.bodies:
            return
        for body in self.bodies:
            for request in _decode_batch(body).RequestItems.get(self.name, []):
                if request.PutRequest is not None:
                    raw = bytes(request.PutRequest.Item)
                    self.items[self.canonical_key(raw)] = raw
                elif request.DeleteRequest is not None:
                    self.items.pop(self.canonical_key(bytes(request.DeleteRequest.Key)), None)
        self.bodies.clear()
        self.order = list(self.items)
        self.position = {k: i for i, k in enumerate(self.order)}

    def describe(self) -> dict[str, Any]:
        r = self.request
        billing = r.get("BillingMode") or "PROVISIONED"
        pt = r.get("ProvisionedThroughput") or {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
        desc: dict[str, Any] = {
            "TableName": self.name,
            "TableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.name}",
            "TableId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.name)),
            "TableStatus": "ACTIVE",
            "KeySchema": r["KeySchema"],
            "AttributeDefinitions": r["AttributeDefinitions"],
            "ProvisionedThroughput": {**pt, "NumberOfDecreasesToday": 0},
            "BillingModeSummary": {"BillingMode": billing},
            "TableSizeBytes": 0,
            "ItemCount": len(self.items),
            "CreationDateTime": self.created,
            "DeletionProtectionEnabled": bool(r.get("DeletionProtectionEnabled")),
        }
        if r.get("GlobalSecondaryIndexes"):
            desc["GlobalSecondaryIndexes"] = [
                {**g, "IndexStatus": "ACTIVE", "IndexSizeBytes": 0, "ItemCount": 0,
                 "IndexArn": f"{desc['TableArn']}/index/{g['IndexName']}"}
                for g in r["GlobalSecondaryIndexes"]]
        if r.get("LocalSecondaryIndexes"):
            desc["LocalSecondaryIndexes"] = r["LocalSecondaryIndexes"]
        if r.get("StreamSpecification"):
            desc["StreamSpecification"] = r["StreamSpecification"]
        return desc

    def scan(self, request: dict[str, Any]) -> bytes:
        self.settle()
        total = int(request.get("TotalSegments", 1))
        segment = int(request.get("Segment", 0))
        if not 0 <= segment < total:
            raise ApiError("ValidationException", "Segment must be less than TotalSegments")
        n = len(self.order)
        stop = (segment + 1) * n // total
        start = segment * n // total
        if "ExclusiveStartKey" in request:
            key = orjson.dumps(request["ExclusiveStartKey"], option=_SORT)
            if key not in self.position:
                raise ApiError("ValidationException", "The provided starting key is invalid")
            start = self.position[key] + 1
        limit = int(request.get("Limit") or 0) or n
        parts = [b'{"Items":[']
        used = 0
        end = start
        while end < stop and end - start < limit and used < PAGE_BYTES:
            item = self.items[self.order[end]]
            parts += (item, b",")
            used += len(item)
            end += 1
        if end > start:
            parts[-1] = b"]"
        else:
            parts.append(b"]")
        parts.append(b',"Count":%d,"ScannedCount":%d' % (end - start, end - start))
        if end < stop:
            parts += (b',"LastEvaluatedKey":', self.order[end - 1])
        parts.append(b',"ConsumedCapacity":{"TableName":%s,"CapacityUnits":%s}}'
                     % (orjson.dumps(self.name), repr(max(used / 8192, 0.5)).encode()))
        return b"".join(parts)


class Store:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.tallies: dict[str, Tally] = {}

    def table(self, name: str) -> Table:
        found = self.tables.get(name)
        if found is None:
            raise ApiError("ResourceNotFoundException", f"Requested resource not found: "
                           f"Table: {name} not found")
        return found

    def batch_write(self, body: bytes) -> bytes:
        match = _TABLE_NAME.search(body, 0, 4096)
        if match is None:
            raise ApiError("ValidationException", "no RequestItems")
        name = str(orjson.loads(b'"' + match.group(1) + b'"'))
        puts, deletes = body.count(_PUT), body.count(_DELETE)
        if puts + deletes > MAX_ITEMS:
            raise ApiError("ValidationException", "Too many items requested for the "
                           "BatchWriteItem call")
        if puts + deletes == 0:
            raise ApiError("ValidationException", "The batch write request list is empty")
        tally = self.tallies.setdefault(name, Tally())
        tally.requests += 1
        tally.puts += puts
        tally.deletes += deletes
        tally.bytes += len(body)
        kept = self.tables.get(name)
        if kept is not None:
            kept.bodies.append(body)
        units = max(puts + deletes, len(body) >> 10)
        return (b'{"UnprocessedItems":{},"ConsumedCapacity":[{"TableName":%s,'
                b'"CapacityUnits":%d.0}]}' % (orjson.dumps(name), units))

    def create(self, request: dict[str, Any]) -> bytes:
        name = request["TableName"]
        if name in self.tables:
            raise ApiError("ResourceInUseException", f"Table already exists: {name}")
        table = Table(request=request, created=time.time())
        self.tables[name] = table
        return orjson.dumps({"TableDescription": table.describe()})

    def update(self, request: dict[str, Any]) -> bytes:
        table = self.table(request["TableName"])
        for key in ("ProvisionedThroughput", "BillingMode", "DeletionProtectionEnabled",
                    "StreamSpecification"):
            if key in request:
                table.request[key] = request[key]
        for update in request.get("GlobalSecondaryIndexUpdates") or []:
            change = update.get("Update")
            for g in table.request.get("GlobalSecondaryIndexes") or []:
                if change and g["IndexName"] == change["IndexName"]:
                    g.update({k: v for k, v in change.items() if k != "IndexName"})
        return orjson.dumps({"TableDescription": table.describe()})

    def answer(self, operation: str, raw: bytes) -> bytes:
        if operation == "BatchWriteItem":
            return self.batch_write(raw)
        request: dict[str, Any] = orjson.loads(raw) if raw else {}
        if operation == "Scan":
            return self.table(request["TableName"]).scan(request)
        if operation == "DescribeTable":
            return orjson.dumps({"Table": self.table(request["TableName"]).describe()})
        if operation == "CreateTable":
            return self.create(request)
        if operation == "UpdateTable":
            return self.update(request)
        if operation == "DeleteTable":
            table = self.table(request["TableName"])
            del self.tables[table.name]
            return orjson.dumps({"TableDescription": {**table.describe(),
                                                      "TableStatus": "DELETING"}})
        if operation == "ListTables":
            return orjson.dumps({"TableNames": sorted(self.tables)})
        if operation == "DescribeTimeToLive":
            ttl = self.table(request["TableName"]).ttl
            if ttl and ttl.get("Enabled"):
                return orjson.dumps({"TimeToLiveDescription": {
                    "TimeToLiveStatus": "ENABLED", "AttributeName": ttl["AttributeName"]}})
            return b'{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}'
        if operation == "UpdateTimeToLive":
            spec = request["TimeToLiveSpecification"]
            self.table(request["TableName"]).ttl = spec
            return orjson.dumps({"TimeToLiveSpecification": spec})
        if operation in ("ListTagsOfResource", "TagResource"):
            table = self.table(request["ResourceArn"].rsplit("/", 1)[-1])
            if operation == "TagResource":
                table.tags.update({t["Key"]: t["Value"] for t in request["Tags"]})
                return b"{}"
            return orjson.dumps({"Tags": [{"Key": k, "Value": v} for k, v in table.tags.items()]})
        if operation in ("DescribeContinuousBackups", "UpdateContinuousBackups"):
            table = self.table(request["TableName"])
            if operation == "UpdateContinuousBackups":
                spec = request["PointInTimeRecoverySpecification"]
                table.pitr = bool(spec["PointInTimeRecoveryEnabled"])
            status = "ENABLED" if table.pitr else "DISABLED"
            return orjson.dumps({"ContinuousBackupsDescription": {
                "ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": status}}})
        if operation == "BenchStats":
            return orjson.dumps({"tables": {n: t.__dict__ for n, t in self.tallies.items()}})
        raise ApiError("UnknownOperationException", f"unknown operation {operation}")


# -- HTTP ---------------------------------------------------------------------------------------

class Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; POST bodies by Content-Length only."""

    store: Store

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.length = -1  # body length of the request being read; -1: reading headers
        self.operation = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            if self.length < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > 65536:
                        self.transport.close()
                    return
                self._headers(bytes(self.buffer[:end]))
                del self.buffer[:end + 4]
            if len(self.buffer) < self.length:
                return
            body = bytes(self.buffer[:self.length])
            del self.buffer[:self.length]
            self.length = -1
            self._respond(body)

    def _headers(self, head: bytes) -> None:
        length, target, expect = 0, b"", False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-amz-target":
                target = value.strip()
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                expect = True
        self.length = length
        self.operation = target.rpartition(b".")[2].decode("ascii", "replace")
        if expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _respond(self, raw: bytes) -> None:
        status = b"200 OK"
        try:
            body = self.store.answer(self.operation, raw)
        except ApiError as exc:
            status = b"%d Bad Request" % exc.status
            body = orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{exc.code}",
                                 "message": exc.message})
        except (orjson.JSONDecodeError, msgspec.DecodeError, KeyError, TypeError,
                ValueError) as exc:
            status = b"400 Bad Request"
            body = orjson.dumps({"__type": "com.amazon.coral.validate#ValidationException",
                                 "message": f"bad request: {exc!r}"})
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n"
            b"x-amzn-RequestId: write-server\r\nx-amz-crc32: %d\r\n\r\n%s"
            % (status, len(body), zlib.crc32(body), body))


async def _serve(port: int) -> None:
    Http.store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=256)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_serve(args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
