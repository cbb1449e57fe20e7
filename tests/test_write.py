"""The two BatchWriteItem writers: the direct one signs like botocore and answers in our error
tree; both write exactly the items they are given, on real local servers."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import botocore.auth
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hippolyte.adapters import aws, dynamodb_write
from hippolyte.adapters.dynamodb import encode_item
from hippolyte.adapters.dynamodb_direct import CONTENT_TYPE, TARGET_PREFIX, SigV4
from hippolyte.adapters.dynamodb_write import BotocoreWriter, DirectWriter
from hippolyte.core.errors import AwsError, TableNotFound, Throttled, Transient
from tests.corpus import nasty_items, same_items
from tests.helpers import Db, db_for
from tests.support.faults import FaultProxy
from tests.support.servers import Server

TARGET = TARGET_PREFIX + "BatchWriteItem"

pytestmark = pytest.mark.servers


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8123", "https://dynamodb.eu-west-1.amazonaws.com"]
)
def test_signature_is_botocores(
    token: str | None, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    when = datetime.datetime(2026, 11, 23, 1, 2, 3, tzinfo=datetime.UTC)
    body = dynamodb_write.request_body("t", [b'{"pk":{"S":"a"}}'])
    ours = SigV4(
        host=url.split("://")[1], path="/", region="eu-west-1", service="dynamodb"
    ).headers(body, target=TARGET, keys=creds.get_frozen_credentials(), now=when)

    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={
            "Content-Type": CONTENT_TYPE,
            "X-Amz-Target": TARGET,
        },
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    SigV4Auth(creds, "dynamodb", "eu-west-1").add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def _writers(db: Db) -> list[Any]:
    direct = dynamodb_write.open_writer(db.conn, pool=2)
    assert isinstance(direct, DirectWriter)
    return [direct, BotocoreWriter(dynamodb_write.raw_write_client(db.conn, pool=2))]


def test_both_writers_write_exactly(ddb_server: Server) -> None:
    db = db_for(ddb_server)
    items = nasty_items()
    for writer in _writers(db):
        table = db.table()
        for item in items:  # one at a time: the 400 KB items do not fit 25 to a request
            result = writer.write_batch(table=table, items=[encode_item(item)])
            assert result.unprocessed == []
        writer.close()
        assert same_items(db.stock_items(table), items)


def test_errors_are_ours(dynalite: Server) -> None:
    db = db_for(dynalite)
    table = db.table()
    for writer in _writers(db):
        with pytest.raises(TableNotFound, match="no-such-table"):
            writer.write_batch(table="no-such-table", items=[b'{"pk":{"S":"a"}}'])
        with pytest.raises(AwsError, match="ValidationException") as bad:
            writer.write_batch(table=table, items=[b'{"other":{"S":"no key"}}'])
        assert not bad.value.retryable
        writer.close()


@pytest.mark.parametrize(
    ("fault", "error"),
    [("throttle", Throttled), ("503", Transient), ("crc", Transient), ("garbage", Transient)],
)
def test_direct_writer_faults_are_retryable(dynalite: Server, fault: str, error: type) -> None:
    db = db_for(dynalite)
    table = db.table()
    with FaultProxy(
        upstream=dynalite.endpoint_url, schedule=[fault], operation="BatchWriteItem"
    ) as proxy:
        writer = dynamodb_write.open_writer(
            aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url), pool=1
        )
        with pytest.raises(error) as caught:
            writer.write_batch(table=table, items=[b'{"pk":{"S":"a"}}'])
        assert caught.value.retryable
        writer.close()


def test_unprocessed_items_come_back_byte_for_byte(dynalite: Server) -> None:
    db = db_for(dynalite)
    table = db.table()
    items = [b'{"pk":{"S":"k%d"},"b":{"B":"AAEC/w=="},"n":{"N":"1.50"}}' % i for i in range(10)]
    with FaultProxy(
        upstream=dynalite.endpoint_url, schedule=["unprocessed"], operation="BatchWriteItem"
    ) as proxy:
        writer = dynamodb_write.open_writer(
            aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url), pool=1
        )
        result = writer.write_batch(table=table, items=items)
        writer.close()
    assert result.unprocessed == [orjson.dumps(orjson.loads(i)) for i in items[5:]]


def test_a_closed_keep_alive_connection_is_replaced(dynalite: Server) -> None:
    """The server closes an idle connection: the next request goes out again on a new one."""
    db = db_for(dynalite)
    table = db.table()
    with FaultProxy(
        upstream=dynalite.endpoint_url, schedule=["ok", "drop"], operation="BatchWriteItem"
    ) as proxy:
        writer = dynamodb_write.open_writer(
            aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url), pool=1
        )
        for i in range(3):
            writer.write_batch(table=table, items=[b'{"pk":{"S":"k%d"}}' % i])
        writer.close()
    assert proxy.counts == {"ok": 3, "drop": 2}  # each drop followed at once by a resend
    assert len(db.stock_items(table)) == 3


def test_a_proxy_sends_writes_through_botocore(
    dynalite: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = db_for(dynalite).conn
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    assert isinstance(dynamodb_write.open_writer(conn, pool=1), BotocoreWriter)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert isinstance(dynamodb_write.open_writer(conn, pool=1), DirectWriter)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key) as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hippolyte test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


def test_https_with_the_callers_ca_bundle(
    dynalite: Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_for(dynalite)
    table = db.table()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    with FaultProxy(
        upstream=dynalite.endpoint_url, schedule=["ok"], operation="BatchWriteItem", tls=tls
    ) as proxy:
        assert proxy.endpoint_url.startswith("https://")
        conn = aws.Connection(region="us-east-1", endpoint_url=proxy.endpoint_url)
        with pytest.raises(AwsError, match="cannot verify the TLS certificate") as caught:
            dynamodb_write.open_writer(conn, pool=1).write_batch(
                table=table, items=[b'{"pk":{"S":"a"}}']
            )
        assert not caught.value.retryable
        monkeypatch.setattr(aws, "_sessions", {})  # a new session reads AWS_CA_BUNDLE
        monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
        writer = dynamodb_write.open_writer(conn, pool=1)
        writer.write_batch(table=table, items=[b'{"pk":{"S":"a"}}'])
        writer.close()
    assert db.stock_items(table) == [{"pk": {"S": "a"}}]


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n"
        b"x-amz-crc32: 2745614147\r\nx-amzn-RequestId: ABC\r\n\r\n",
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: close\r\nX-Odd:no space\r\n\r\n",
        b"X-Trailing: spaced  \t\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\n",
        b"X-Folded: one\r\n  two\r\nX-After: three\r\n\r\n",  # obsolete folding: the stock parser
        b"no colon here\r\nX-A: b\r\n\r\n",
        b"",
    ],
)
def test_the_answers_headers_parse_as_http_client_parses_them(head: bytes) -> None:
    import http.client
    import io

    from hippolyte.adapters.dynamodb_direct import parse_headers

    ours, stock = parse_headers(io.BytesIO(head)), http.client.parse_headers(io.BytesIO(head))
    assert type(ours) is type(stock)
    assert ours.items() == stock.items()
    assert ours.get("content-length") == stock.get("content-length")
    assert ours.get_all("set-cookie") == stock.get_all("set-cookie")


@pytest.mark.parametrize("count", [1, 2, 25])
def test_request_body_is_the_json_of_the_puts(count: int) -> None:
    items = [orjson.dumps({"pk": {"S": f"k{i}"}, "n": {"N": str(i)}}) for i in range(count)]
    body = dynamodb_write.request_body('t"able', items)
    assert orjson.loads(body) == {
        "RequestItems": {'t"able': [{"PutRequest": {"Item": orjson.loads(i)}} for i in items]},
        "ReturnConsumedCapacity": "TOTAL",
    }
    with pytest.raises(ValueError, match="at least one item"):
        dynamodb_write.request_body("t", [])
