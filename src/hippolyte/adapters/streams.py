"""DynamoDB Streams: the stream of a table, its shards, and its records, botocore errors
translated into ours.

The three failures a reader must tell apart get their own classes: throttling
(``LimitExceededException``, Streams' spelling; botocore's standard mode retries it first),
an expired iterator (15 minutes after it was issued: get a new one from the last record read)
and trimmed data (records older than the stream's 24 hours are gone: a gap in the chain).
Records are parsed by botocore as any client would, so binary values arrive as bytes;
``adapters.dynamodb.encode_item`` turns an image back into DynamoDB JSON.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from hippolyte.adapters import aws, dynamodb
from hippolyte.core.errors import AwsError, NotFound, Throttled, Transient
from hippolyte.core.model import Connection, Json

STREAM_VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE")  # the views a capture can replay
THROTTLING = aws.THROTTLING | {"LimitExceededException"}


class StreamNotFound(NotFound):
    """The stream (or its table) does not exist any more."""


class IteratorExpired(Transient):
    """A shard iterator older than 15 minutes: get a new one from the last record read."""


class TrimmedData(AwsError):
    """The records asked for are older than the stream's retention (24 hours): they are gone."""


class StreamRecordUnreadable(AwsError):
    """A stream record whose image is not DynamoDB JSON (DynamoDB Local sends an empty map as
    ``{}``, without its type): it cannot be written as a change, and it is not skipped."""


def client(conn: Connection, *, max_attempts: int = 10, pool: int = 4) -> Any:
    """A Streams client; it reaches the same endpoint as DynamoDB (as local servers serve
    both), or ``AWS_ENDPOINT_URL_DYNAMODBSTREAMS`` / AWS when none is given."""
    return aws.client(
        conn,
        "dynamodbstreams",
        pool=pool,
        endpoint_url=conn.endpoint_url,
        max_attempts=max_attempts,
    )


@dataclass(frozen=True, kw_only=True)
class Shard:
    id: str
    parent: str | None
    start: str  # StartingSequenceNumber
    end: str | None  # EndingSequenceNumber: set once the shard is closed

    @property
    def closed(self) -> bool:
        return self.end is not None


@dataclass(frozen=True, kw_only=True)
class Stream:
    arn: str
    status: str  # ENABLING | ENABLED | DISABLING | DISABLED
    view: str
    created: dt.datetime
    shards: list[Shard]


@dataclass(frozen=True, kw_only=True)
class Records:
    records: list[Json]  # botocore's parse: binary values as bytes
    next_iterator: str | None  # None: the shard is closed and read to its end


@contextlib.contextmanager
def stream_errors(what: str) -> Iterator[None]:
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "") or code
        if code == "ResourceNotFoundException":
            raise StreamNotFound(f"{what}: the stream does not exist ({msg})") from exc
        if code == "ExpiredIteratorException":
            raise IteratorExpired(f"{what}: the shard iterator expired") from exc
        if code == "TrimmedDataAccessException":
            raise TrimmedData(f"{what}: the records are past the stream's retention") from exc
        if code in THROTTLING:
            raise Throttled(f"{what}: still throttled after retries ({code})") from exc
        raise aws.translate(exc, what=what) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise aws.translate(exc, what=what) from exc


def describe(streams: Any, arn: str) -> Stream:
    """DescribeStream, every page of shards (paged by ExclusiveStartShardId)."""
    kwargs: dict[str, Any] = {"StreamArn": arn}
    shards: list[Shard] = []
    while True:
        with stream_errors(f"stream {arn}"):
            desc = streams.describe_stream(**kwargs)["StreamDescription"]
        for s in desc.get("Shards", []):
            seq = s.get("SequenceNumberRange", {})
            shards.append(
                Shard(
                    id=s["ShardId"],
                    parent=s.get("ParentShardId"),
                    start=str(seq.get("StartingSequenceNumber", "")),
                    end=seq.get("EndingSequenceNumber"),
                )
            )
        last = desc.get("LastEvaluatedShardId")
        if not last:
            break
        kwargs["ExclusiveStartShardId"] = last
    created = desc.get("CreationRequestDateTime") or dt.datetime.now(dt.UTC)
    return Stream(
        arn=arn,
        status=str(desc.get("StreamStatus", "ENABLED")),
        view=str(desc.get("StreamViewType", "")),
        created=created.astimezone(dt.UTC),
        shards=shards,
    )


def shard_iterator(streams: Any, *, arn: str, shard: str, after: str | None) -> str:
    """An iterator after sequence number ``after``, or at the shard's oldest record."""
    kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
        kwargs["SequenceNumber"] = after
    with stream_errors(f"shard {shard} of {arn}"):
        return str(streams.get_shard_iterator(**kwargs)["ShardIterator"])


def get_records(streams: Any, *, iterator: str, shard: str, limit: int = 1000) -> Records:
    with stream_errors(f"shard {shard}"):
        resp = streams.get_records(ShardIterator=iterator, Limit=limit)
    return Records(
        records=list(resp.get("Records", [])), next_iterator=resp.get("NextShardIterator")
    )


# --- the table side ----------------------------------------------------------------------------


def table_stream(table: Json) -> tuple[str | None, str | None]:
    """A DescribeTable ``Table``'s stream: (ARN of its latest stream, view) when enabled."""
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled"):
        return None, None
    return table.get("LatestStreamArn"), spec.get("StreamViewType")


def enable_stream(control: Any, table: str, *, view: str = "NEW_AND_OLD_IMAGES") -> None:
    """UpdateTable with a stream of ``view``."""
    with dynamodb.table_errors(table, what=f"enabling the stream of {table!r}"):
        control.update_table(
            TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": view}
        )
