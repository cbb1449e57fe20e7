"""Shared fixtures: local servers started once per session, and an environment that keeps every
test away from real AWS accounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hippolyte.adapters import aws
from tests.support import servers as testing
from tests.support.servers import Server

_AWS_VARS_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
)


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials and no profile or config file: no test can reach a real account."""
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_VARS_TO_DROP:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(nowhere))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        yield


# -- servers, one of each per session -----------------------------------------------------------


@pytest.fixture(scope="session")
def dynalite() -> Iterator[Server]:
    with testing.start_dynalite() as server:
        yield server


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[Server]:
    with testing.start_dynamodb_local() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Server]:
    with testing.start_moto() as server:
        yield server


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with testing.start_rclone_s3(tmp_path_factory.mktemp("rclone-root")) as server:
        yield server


@pytest.fixture(
    params=[
        pytest.param("dynamodb_local", marks=pytest.mark.servers),
        pytest.param("dynalite", marks=pytest.mark.servers),
    ]
)
def ddb_server(request: pytest.FixtureRequest) -> Server:
    """Data-path tests run on both DynamoDB servers."""
    server: Server = request.getfixturevalue(request.param)
    return server


# -- S3 -----------------------------------------------------------------------------------------


@pytest.fixture
def use_s3(monkeypatch: pytest.MonkeyPatch) -> Callable[[Server], None]:
    """Point the standard AWS variables (endpoint and credentials) at an S3 server.

    ``hippolyte.adapters.aws`` caches one boto3 session per connection, and a session keeps
    the credentials it resolved first, so the cache is emptied for this test.
    """

    def point(server: Server) -> None:
        for name, value in testing.aws_env(server, services=["s3"]).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(aws, "_sessions", {})

    return point


@dataclass(frozen=True)
class S3Bucket:
    server: Server
    name: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}"


@pytest.fixture
def make_s3_bucket(use_s3: Callable[[Server], None]) -> Callable[[Server], S3Bucket]:
    """Create a fresh, empty bucket on an S3 server and point the environment at it."""

    def make(server: Server) -> S3Bucket:
        use_s3(server)
        return S3Bucket(server=server, name=testing.create_bucket(server))

    return make


S3_SERVERS = [
    pytest.param("moto_server", marks=pytest.mark.servers),
    pytest.param("rclone_s3", marks=pytest.mark.servers),
]


@pytest.fixture(params=S3_SERVERS)
def s3_bucket(
    request: pytest.FixtureRequest, make_s3_bucket: Callable[[Server], S3Bucket]
) -> S3Bucket:
    """A fresh, empty bucket on each S3 server, with the environment pointed at it."""
    return make_s3_bucket(request.getfixturevalue(request.param))


@pytest.fixture
def local_repo(tmp_path: Path) -> Path:
    """A repository folder that does not exist yet (storage creates it on first write)."""
    return tmp_path / "repo"
