"""One error tree. Every expected failure is a HippolyteError; the CLI maps each class to an
exit code and prints its message as one line. Adapters translate botocore/OS errors into these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented in README.md; stable across releases."""

    OK = 0
    FAILED = 1  # an operation ran and failed (a table's backup did not complete)
    USAGE = 2  # bad arguments or configuration; nothing was touched
    NOT_FOUND = 3  # a table, backup or repository that does not exist
    CORRUPT = 4  # verification found a mismatch or unreadable data
    REPOSITORY = 5  # the repository cannot be read or written
    AUTH = 6  # missing or rejected credentials
    AWS = 7  # an AWS call failed for another reason (after retries)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; nothing half-committed


class HippolyteError(Exception):
    exit_code: ExitCode = ExitCode.FAILED
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(HippolyteError):
    """Bad configuration file, option or argument."""

    exit_code = ExitCode.USAGE


class NotFound(HippolyteError):
    exit_code = ExitCode.NOT_FOUND


class TableNotFound(NotFound):
    pass


class BackupNotFound(NotFound):
    pass


class RepositoryError(HippolyteError):
    """The repository cannot be read or written (permissions, missing bucket, network)."""

    exit_code = ExitCode.REPOSITORY


class BackupCorrupt(HippolyteError):
    """A file's checksum, size or item count does not match its manifest."""

    exit_code = ExitCode.CORRUPT


class CredentialsError(HippolyteError):
    exit_code = ExitCode.AUTH


class AwsError(HippolyteError):
    """An AWS call failed after botocore's retries."""

    exit_code = ExitCode.AWS


class DataPipelineUnavailable(AwsError):
    """AWS Data Pipeline cannot be used from this account or region (AWS closed it to new
    customers on 2024-07-25; it exists in a few regions only)."""


class Transient(AwsError):
    """A 5xx, a dropped connection or throttling that outlasted botocore's own retries.
    The caller may retry the same request later; it must never skip it."""

    retryable = True


class Throttled(Transient):
    """DynamoDB kept throttling past botocore's retries."""


class BackupFailed(HippolyteError):
    """At least one table's backup did not commit. The partial folder stays without _SUCCESS."""

    exit_code = ExitCode.FAILED


class Interrupted(HippolyteError):
    exit_code = ExitCode.INTERRUPTED
