"""A repository in an S3 bucket (or under a prefix): objects appear only when their upload
completes; S3 Object Lock on every write under ``[object_lock]``; conditional writes for the
lock; uploads S3 checks on arrival, for copy."""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import botocore.exceptions

from hippolyte.adapters.aws import Connection, client, denied, translate
from hippolyte.adapters.storage_common import (
    PART_SIZE,
    PROBE_PREFIX,
    _folder,
    check_key,
    refuse_delete,
)
from hippolyte.core.config import ObjectLock
from hippolyte.core.errors import (
    ConfigError,
    CredentialsError,
    HippolyteError,
    NotFound,
    RepositoryError,
)


def _s3_storage(
    bucket: str,
    prefix: str,
    conn: Connection,
    endpoint_url: str | None,
    object_lock: ObjectLock | None = None,
    append_only: bool = False,
) -> S3Storage:
    return S3Storage(
        bucket=bucket,
        prefix=prefix,
        conn=conn,
        endpoint_url=endpoint_url,
        object_lock=object_lock,
        append_only=append_only,
    )


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        conn: Connection,
        endpoint_url: str | None = None,
        object_lock: ObjectLock | None = None,
        append_only: bool = False,
    ) -> None:
        from boto3.s3.transfer import TransferConfig

        self.bucket: str | None = bucket
        self.prefix = prefix.strip("/")
        self.object_lock: ObjectLock | None = object_lock
        self.append_only = append_only
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._conn, self._endpoint_url = conn, endpoint_url
        custom = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._custom = bool(custom)
        extra: dict[str, Any] = {"s3": {"addressing_style": "path"}} if custom else {}
        self._client = client(conn, "s3", endpoint_url=endpoint_url, **extra)
        self._transfer = TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its settings, the endpoint as resolved here: another process builds its
        own client."""
        endpoint = self._client.meta.endpoint_url if self._custom else self._endpoint_url
        return (
            _s3_storage,
            (self.bucket, self.prefix, self._conn, endpoint, self.object_lock, self.append_only),
        )

    def _lock_args(self) -> dict[str, Any]:
        """The Object Lock retention of an object written now (none without [object_lock])."""
        if self.object_lock is None:
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.object_lock.days)
        return {"ObjectLockMode": self.object_lock.mode, "ObjectLockRetainUntilDate": until}

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _root(self) -> str:
        return self.prefix + "/" if self.prefix else ""

    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with tempfile.SpooledTemporaryFile(max_size=PART_SIZE) as spool:
            yield cast(BinaryIO, spool)
            spool.seek(0)
            with self._errors(key):
                self._client.upload_fileobj(
                    spool, self.bucket, full, Config=self._transfer, ExtraArgs=self._lock_args()
                )

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        with self._errors(key):
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data, **self._lock_args())

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as body:
            with self._errors(key):
                return body.read()

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with self._errors(key):
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
        with contextlib.closing(body):
            yield cast(BinaryIO, body)

    def list(self, prefix: str = "") -> Iterator[str]:
        root = self._root()
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        )
        with self._errors(prefix):
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield obj["Key"][len(root) :]

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        full = self._root() + _folder(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, Delimiter="/"
        )
        with self._errors(prefix):
            names = [
                p["Prefix"][len(full) :].rstrip("/")
                for page in pages
                for p in page.get("CommonPrefixes", ())
            ]
        return sorted(names)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        full = self._key(key)
        with self._errors(key):
            return int(self._client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])

    def delete(self, key: str) -> None:
        refuse_delete(self, key)
        full = self._key(key)
        with self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def delete_many(self, keys: builtins.list[str]) -> None:
        for key in keys:
            refuse_delete(self, key)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            objects = [{"Key": self._key(k)} for k in batch]
            with self._errors(batch[0]):
                out = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
            errors = out.get("Errors") or []
            if errors:
                first = errors[0]
                if first.get("Code") == "AccessDenied":
                    raise CredentialsError(
                        f"{len(errors)} objects of {self.url} were not deleted, e.g. "
                        f"{first.get('Key')!r}: s3:DeleteObject is not allowed"
                    )
                raise RepositoryError(
                    f"{len(errors)} objects of {self.url} were not deleted, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}".strip()
                )

    def check_writable(self) -> None:
        if self.object_lock is not None:
            self._check_object_lock()
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            with self._errors(probe):  # never locked: the probe must go again
                self._client.put_object(Bucket=self.bucket, Key=self._key(probe), Body=b"probe")
            self.delete(probe)
        except (RepositoryError, CredentialsError) as exc:
            raise type(exc)(f"repository {self.url} is not writable: {exc}") from exc

    def lock_enabled(self) -> bool:
        """Whether the bucket has S3 Object Lock: only then can any object be locked."""
        try:
            with self._errors(""):
                conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except RepositoryError as exc:
            if "ObjectLockConfigurationNotFound" not in repr(exc.__cause__):
                raise
            return False
        return bool(conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def _check_object_lock(self) -> None:
        if not self.lock_enabled():
            raise ConfigError(
                f"[object_lock] is set but bucket {self.bucket!r} has no Object Lock enabled: "
                "nothing was written (create the bucket with Object Lock, e.g. the deploy "
                "template's ObjectLockDays, or remove [object_lock])"
            )

    def locked_until(self, key: str) -> tuple[str, dt.datetime] | None:
        with self._errors(key):
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        until = head.get("ObjectLockRetainUntilDate")
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        if hold:
            return "LEGAL HOLD", until or dt.datetime.max.replace(tzinfo=dt.UTC)
        if until is None or until <= dt.datetime.now(dt.UTC):
            return None
        return str(head.get("ObjectLockMode") or "GOVERNANCE"), until

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, key) from exc

    def _translate(self, exc: Exception, key: str) -> HippolyteError:
        where = self._where(key)
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchBucket":
                return RepositoryError(
                    f"bucket {self.bucket!r} does not exist (repository {self.url})"
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"no object {key!r} in repository {self.url}")
            if code == "InvalidAccessKeyId":
                return CredentialsError(f"AWS rejected the access key while accessing {where}")
            if refused := denied(exc, service="s3"):  # the policy: exit 6, naming the action
                return CredentialsError(f"access denied to {where}: {refused}")
            if code == "AllAccessDisabled":
                return RepositoryError(f"access denied to {where}: {error.get('Message') or code}")
        translated = translate(exc, what=where)
        if isinstance(translated, CredentialsError):
            return translated
        return RepositoryError(str(translated))

    # -- checked uploads (copy): S3 checks each body against its Content-MD5 on arrival -----------

    def endpoint(self) -> str | None:
        """The S3 endpoint this storage talks to when it is not AWS's own (None on AWS, where a
        bucket name is unique in the world)."""
        return str(self._client.meta.endpoint_url) if self._custom else None

    def head(self, key: str) -> tuple[int, str, dict[str, str]] | None:
        """(size, ETag without quotes, user metadata with lower-case names), None if absent."""
        full = self._key(key)
        try:
            with self._errors(key):
                head = self._client.head_object(Bucket=self.bucket, Key=full)
        except NotFound:
            return None
        meta = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        return int(head["ContentLength"]), str(head.get("ETag", "")).strip('"'), meta

    def put_checked(
        self, key: str, data: bytes | BinaryIO, *, md5: str, metadata: dict[str, str]
    ) -> str:
        """One PUT with Content-MD5 (``md5``: base64); returns the ETag of what was stored (for
        a plain PUT, the hex MD5 of the stored bytes). ``data``: bytes, or a seekable file."""
        with self._checked(key):
            out = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentMD5=md5,
                Metadata=metadata,
                **self._lock_args(),
            )
        return str(out.get("ETag", "")).strip('"')

    def start_parts(self, key: str, *, metadata: dict[str, str]) -> str:
        """Begin a multipart upload; its upload id."""
        with self._checked(key):
            out = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), Metadata=metadata, **self._lock_args()
            )
        return str(out["UploadId"])

    def put_part(self, key: str, upload_id: str, number: int, data: bytes, *, md5: str) -> str:
        """Part ``number`` (from 1) with Content-MD5; the ETag S3 gives the part it stored."""
        with self._checked(key):
            out = self._client.upload_part(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=md5,
            )
        return str(out.get("ETag", "")).strip('"')

    def finish_parts(self, key: str, upload_id: str, etags: builtins.list[str]) -> str:
        """The object appears, made of these parts in order; its ETag."""
        parts = [{"PartNumber": n, "ETag": f'"{etag}"'} for n, etag in enumerate(etags, 1)]
        with self._checked(key):
            out = self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        return str(out.get("ETag", "")).strip('"')

    def abort_parts(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload's parts (best effort: S3's lifecycle rule is the backstop)."""
        with contextlib.suppress(HippolyteError), self._errors(key):
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
            )

    @contextlib.contextmanager
    def _checked(self, key: str) -> Iterator[None]:
        """As ``_errors``; a body S3 found different from its Content-MD5 (or an upload it lost
        meanwhile) is Transient: sending it again may well succeed."""
        from hippolyte.core.errors import Transient

        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("BadDigest", "InvalidDigest", "NoSuchUpload", "InvalidPart"):
                raise Transient(
                    f"{self._where(key)}: {code}: what arrived is not what was sent"
                ) from exc
            raise self._translate(exc, key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, key) from exc

    # -- conditional writes (the repository lock): If-None-Match / If-Match ------------------------

    def conditional_writes(self) -> bool:
        """Whether this server honours If-None-Match and If-Match on PUT. AWS S3 has since
        August 2024; another server (MinIO, Ceph, rclone, moto...) is asked once per process
        and bucket, with two conditional PUTs of a probe object: a server that ignores the
        header (``rclone serve s3`` does) overwrites it silently instead of answering 412."""
        if not self._custom:
            return True
        where = (str(self._client.meta.endpoint_url), str(self.bucket))
        if where not in _CONDITIONAL:
            _CONDITIONAL[where] = self._probe_conditions()
        return _CONDITIONAL[where]

    def _probe_conditions(self) -> bool:
        """Only a definite answer counts (any other error is raised, not remembered: processes
        sharing a repository must agree on the protocol)."""
        probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            first = self._put_condition(probe, b"1", IfNoneMatch="*")
            second = self._put_condition(probe, b"2", IfNoneMatch="*")
        except RepositoryError as exc:
            cause = exc.__cause__
            code = ""
            if isinstance(cause, botocore.exceptions.ClientError):
                code = str(cause.response.get("Error", {}).get("Code", ""))
            if code not in ("NotImplemented", "InvalidArgument", "InvalidRequest", "501"):
                raise
            return False  # the header refused outright
        finally:
            self.delete(probe)
        return first is not None and second is None

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        with self._errors(key):
            out = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            with contextlib.closing(out["Body"]) as body:
                return body.read(), str(out.get("ETag", "")).strip('"')

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        self._need_conditions(key)
        return self._put_condition(key, data, IfNoneMatch="*")

    def replace_if(self, key: str, data: bytes, etag: str) -> str | None:
        self._need_conditions(key)
        return self._put_condition(key, data, IfMatch=f'"{etag}"')

    def delete_if(self, key: str, etag: str) -> bool:
        """DeleteObject with If-Match. A server that refuses a conditional delete (501 or an
        invalid argument) is answered with HEAD, compare, then a plain DELETE: a writer that
        replaces the object between the two requests would lose it (then logged here)."""
        self._need_conditions(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=f'"{etag}"')
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _LOST:
                return False
            if code not in ("NotImplemented", "InvalidArgument", "501"):
                raise self._translate(exc, key) from exc
            return self._delete_after_head(key, etag)
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, key) from exc
        return True

    def _delete_after_head(self, key: str, etag: str) -> bool:
        head = self.head(key)
        if head is None or head[1] != etag:
            return False
        log.warning(
            "the server refuses conditional deletes: compared the ETag, then deleted",
            extra={"repository": self.url, "key": key},
        )
        self.delete(key)
        return True

    def _need_conditions(self, key: str) -> None:
        if not self.conditional_writes():
            raise RepositoryError(
                f"{self._where(key)}: this S3 server ignores conditional writes "
                "(If-None-Match/If-Match); nothing was written"
            )

    def _put_condition(self, key: str, data: bytes, **condition: str) -> str | None:
        """One PUT under ``condition``: the new ETag, or None if the condition failed (412, a
        409 from a concurrent conditional write, or 404 for If-Match on a missing object).
        Never with Object Lock arguments: a lease is not worth retaining."""
        try:
            out = self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **condition
            )
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _LOST:
                return None
            raise self._translate(exc, key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, key) from exc
        return str(out.get("ETag", "")).strip('"')


# A conditional write that lost: the object changed, appeared, vanished, or another conditional
# write to it was in flight (S3's 409 ConditionalRequestConflict).
_LOST = frozenset(
    {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"}
)
_CONDITIONAL: dict[tuple[str, str], bool] = {}  # (endpoint, bucket) -> honours conditions
log = logging.getLogger("hippolyte.storage")
