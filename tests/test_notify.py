"""Messages and channels: what the monitor says, read back from real local servers.

SNS runs on moto (an SQS queue subscribed to the topic receives what e-mail subscribers
would), SMTP on an aiosmtpd server started here, webhooks on a local ``http.server``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from pydantic import ValidationError

from hippolyte.adapters.notify import (
    EmailChannel,
    SnsChannel,
    WebhookChannel,
    parse_channels,
    send_all,
)
from hippolyte.core import messages
from hippolyte.core.messages import Message
from hippolyte.core.model import MonitorReport, TableCheck
from tests.support.servers import Server, free_port

RUN = "2026-11-22-00-10-00"
TARGET = "123456789012/eu-west-1"
NOW = dt.datetime(2026, 11, 22, 6, 15, tzinfo=dt.UTC)


def _report(**over: Any) -> MonitorReport:
    checks = [
        TableCheck(table="orders", target=TARGET, ok=False, reason="no backup", pipeline=1),
        TableCheck(
            table="orders-archive",
            target=TARGET,
            ok=False,
            reason="incomplete (no _SUCCESS)",
            pipeline=2,
            backup=f"orders-archive/{RUN}",
        ),
        TableCheck(table="orders-2024", target=TARGET, ok=True, reason=f"committed {RUN}"),
        TableCheck(table="users", target=TARGET, ok=False, reason="verify failed", pipeline=1),
    ]
    values: dict[str, Any] = {
        "run_id": RUN,
        "checked_at": NOW,
        "ran": True,
        "repository": "s3://backups",
        "logs": f"s3://backups/@runs/{RUN}/",
        "tables": checks,
        "capacity": ["orders: read capacity 400 -> 100 refused (daily decrease limit); will retry"],
    }
    return MonitorReport(**{**values, **over})


# -- messages (pure) -----------------------------------------------------------------------------


def test_failure_message_groups_failed_tables_by_pipeline_with_reasons() -> None:
    msg = messages.for_report(_report())
    lines = msg.text.splitlines()
    at = {line.strip(): i for i, line in enumerate(lines)}
    assert at["Pipeline 1"] < at["orders          no backup"] < at["Pipeline 2"]
    assert at["Pipeline 1"] < at["users           verify failed"] < at["Pipeline 2"]
    assert at["Pipeline 2"] < at["orders-archive  incomplete (no _SUCCESS)"]
    assert f"Target {TARGET}" in at
    assert "orders-2024" not in msg.text  # committed: not listed among failures
    assert "Logs:       s3://backups/@runs/2026-11-22-00-10-00/" in lines
    assert "hippolyte backup orders orders-archive users" in msg.text
    assert f"hippolyte monitor --run {RUN}" in msg.text
    assert "read capacity 400 -> 100 refused" in msg.text
    assert msg.subject == f"Hippolyte FAILED: 3 of 4 tables, run {RUN} ({TARGET})"


def test_failure_data_lists_exact_table_names_and_counts() -> None:
    data = messages.for_report(_report()).data
    # grouped as the e-mail lists them: by target, then pipeline, then name
    assert [f["table"] for f in data["failed"]] == ["orders", "users", "orders-archive"]
    assert data["counts"] == {"tables": 4, "ok": 1, "failed": 3}
    assert data["ok"] is False and data["run_id"] == RUN and data["kind"] == "report"
    assert data["failed"][2] == {
        "table": "orders-archive",
        "target": TARGET,
        "pipeline": 2,
        "reason": "incomplete (no _SUCCESS)",
        "backup": f"orders-archive/{RUN}",
    }
    json.dumps(data)  # JSON-ready


def test_slack_text_is_short_and_escaped() -> None:
    many = [
        TableCheck(table=f"t{i:02}", target="a<b>&c", ok=False, reason="no backup", pipeline=1)
        for i in range(15)
    ]
    slack = messages.for_report(_report(tables=many, logs="s3://b/runs/x/")).slack_text
    assert slack.startswith(":x: *Hippolyte*: 15 of 15 tables failed")
    assert "`t00` (pipeline 1, a&lt;b&gt;&amp;c): no backup" in slack
    assert "`t10`" not in slack and "_and 5 more_" in slack
    assert slack.endswith("Logs: `s3://b/runs/x/`")


def test_success_message() -> None:
    ok = [TableCheck(table=n, target=TARGET, ok=True, reason="committed") for n in ("a", "b")]
    msg = messages.for_report(_report(tables=ok, capacity=[], logs="s3://backups/runs/r/"))
    assert msg.subject == f"Hippolyte OK: 2 tables backed up, run {RUN} ({TARGET})"
    assert f"Target {TARGET}: 2 tables committed" in msg.text
    assert "Nothing left to revert." in msg.text and "s3://backups/runs/r/" in msg.text
    assert msg.data["ok"] is True and msg.data["failed"] == []
    assert msg.slack_text.startswith(":white_check_mark:")


def test_nothing_ran_message() -> None:
    msg = messages.nothing_ran(expected_night="2026-11-22", repository="s3://backups")
    assert msg.subject == "Hippolyte: NOTHING RAN on the night of 2026-11-22"
    assert "no backup run for the night of 2026-11-22" in msg.text
    assert "s3://backups" in msg.text and "hippolyte backup --all" in msg.text
    assert msg.data["kind"] == "nothing_ran" and msg.data["ok"] is False
    assert messages.for_report(_report(ran=False, run_id=None, tables=[])) == msg


def test_subjects_follow_sns_rules() -> None:
    subject = messages.subject_line("Sauvegarde échouée:\n" + "x" * 200)
    assert subject.startswith("Sauvegarde echouee: x") and subject.endswith("...")
    assert len(subject) == 99 and subject.isascii() and "\n" not in subject
    long_run = messages.for_report(_report(run_id="r" * 150))
    assert len(long_run.subject) < 100
    with pytest.raises(ValueError, match="subject"):
        Message(subject="two\nlines", text="", slack_text="")
    with pytest.raises(ValueError, match="'text'"):
        Message(subject="s", text="", slack_text="", data={"text": "clash"})


def a_message() -> Message:
    """Any message: the channel tests check delivery, not wording."""
    return Message(
        subject="Hippolyte: channel check",
        text="A message for the channel tests.",
        slack_text="*Hippolyte*: channel check",
        data={"kind": "check", "run_id": None, "ok": True, "ran": False},
    )


# -- local servers -------------------------------------------------------------------------------


@dataclass
class Webhook:
    base: str
    received: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _handler(hook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append((self.path, dict(self.headers), json.loads(body)))
            status = {"/fail": 500, "/redirect": 302}.get(self.path, 200)
            if self.path == "/slow":
                time.sleep(1.0)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/ok")
            self.send_header("Content-Length", "4")
            self.end_headers()
            try:
                self.wfile.write(b"boom" if status == 500 else b"done")
            except BrokenPipeError:  # /slow: the client gave up, as the test wants
                pass

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hook := Webhook(base="")))
    server.daemon_threads = True
    hook.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((envelope, parsed))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
    good = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (b"ops", b"s3cret")
    return AuthResult(success=good, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield port, inbox
    controller.stop()


@dataclass(frozen=True)
class Topic:
    arn: str
    endpoint_url: str
    read: Callable[[], list[dict[str, Any]]]


@pytest.fixture
def sns_topic(moto_server: Server) -> Topic:
    """A topic with an SQS queue subscribed: the queue sees what e-mail subscribers would."""
    url = moto_server.endpoint_url
    sns = boto3.client("sns", endpoint_url=url, region_name="eu-west-1")
    sqs = boto3.client("sqs", endpoint_url=url, region_name="eu-west-1")
    name = f"hippolyte-{time.monotonic_ns()}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=attrs["QueueArn"])

    def read() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    return Topic(arn=arn, endpoint_url=url, read=read)


def _email_channel(port: int, **over: Any) -> EmailChannel:
    values = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "from_addr": "hippolyte@example.com",
        "to": ["ops@example.com", "dba@example.com"],
    }
    channel = parse_channels([{**values, **over}])[0]
    assert isinstance(channel, EmailChannel)
    return channel


# -- delivery ------------------------------------------------------------------------------------


@pytest.mark.servers
def test_every_channel_delivers_and_is_read_back(
    sns_topic: Topic, smtp: tuple[int, Inbox], webhook: Webhook
) -> None:
    port, inbox = smtp
    msg = messages.for_report(_report())
    channels = [
        SnsChannel(topic_arn=sns_topic.arn, endpoint_url=sns_topic.endpoint_url),
        _email_channel(port),
        WebhookChannel(url=webhook.url("/hook?token=secret"), headers={"X-Team": "dba"}),
    ]
    results = send_all(channels, msg)

    assert [r.ok for r in results] == [True, True, True], results
    assert results[0].channel == f"sns {sns_topic.arn}"
    assert results[1] == results[1].__class__(
        channel=f"email 127.0.0.1:{port}",
        ok=True,
        detail="sent to ops@example.com, dba@example.com",
    )
    assert results[2].channel == f"webhook {webhook.base}/..." and "secret" not in str(results)

    (note,) = sns_topic.read()
    assert note["Subject"] == msg.subject and note["Message"] == msg.text

    ((envelope, mail),) = inbox.mails
    assert envelope.rcpt_tos == ["ops@example.com", "dba@example.com"]
    assert mail["Subject"] == msg.subject and mail["From"] == "hippolyte@example.com"
    assert mail.get_content().replace("\r\n", "\n").rstrip("\n") == msg.text

    ((path, headers, body),) = webhook.received
    assert path == "/hook?token=secret" and headers["Content-Type"] == "application/json"
    assert headers["X-Team"] == "dba"
    assert body == {"text": msg.slack_text, **msg.data}


@pytest.mark.servers
def test_failing_channels_are_reported_and_do_not_stop_the_others(
    sns_topic: Topic, smtp: tuple[int, Inbox], webhook: Webhook
) -> None:
    port, inbox = smtp
    closed = free_port()
    missing_topic = sns_topic.arn.rsplit(":", 1)[0] + ":no-such-topic"
    channels = [
        WebhookChannel(url=f"http://127.0.0.1:{closed}/hook"),
        WebhookChannel(url=webhook.url("/fail"), name="failing"),
        SnsChannel(topic_arn=missing_topic, endpoint_url=sns_topic.endpoint_url),
        _email_channel(closed),
        WebhookChannel(url=webhook.url("/ok")),
        SnsChannel(topic_arn=sns_topic.arn, endpoint_url=sns_topic.endpoint_url),
        _email_channel(port),
    ]
    results = send_all(channels, messages.for_report(_report()))

    assert [r.ok for r in results] == [False, False, False, False, True, True, True], results
    assert results[0].detail == f"cannot reach http://127.0.0.1:{closed}/...: Connection refused"
    assert results[1].channel == "webhook failing"
    assert results[1].detail == f"{webhook.base}/... answered HTTP 500 Internal Server Error: boom"
    assert results[2].channel == f"sns {missing_topic}"
    assert results[2].detail.startswith(f"SNS topic {missing_topic} does not exist")
    assert results[3].detail == f"cannot send through 127.0.0.1:{closed}: Connection refused"
    assert [p for p, _, _ in webhook.received] == ["/fail", "/ok"]
    assert len(sns_topic.read()) == 1 and len(inbox.mails) == 1


def test_webhook_timeout_and_redirect_are_failures(webhook: Webhook) -> None:
    results = send_all(
        [
            WebhookChannel(url=webhook.url("/slow"), timeout_s=0.2),
            WebhookChannel(url=webhook.url("/redirect")),
        ],
        a_message(),
    )
    assert not results[0].ok and results[0].detail.endswith("timed out"), results
    assert results[1].detail == f"{webhook.base}/... answered HTTP 302 Found: done"


def test_smtp_login_with_the_password_from_the_environment(
    smtp: tuple[int, Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, inbox = smtp
    channel = _email_channel(port, username="ops", password_env="HIPPOLYTE_TEST_SMTP_PASSWORD")
    (missing,) = send_all([channel], a_message())
    assert missing.detail == "environment variable HIPPOLYTE_TEST_SMTP_PASSWORD is not set"

    monkeypatch.setenv("HIPPOLYTE_TEST_SMTP_PASSWORD", "wrong")
    (refused,) = send_all([channel], a_message())
    assert not refused.ok and refused.detail.startswith(f"127.0.0.1:{port} answered 535")

    monkeypatch.setenv("HIPPOLYTE_TEST_SMTP_PASSWORD", "s3cret")
    (sent,) = send_all([channel], a_message())
    assert sent.ok, sent
    assert [m["Subject"] for _, m in inbox.mails] == ["Hippolyte: channel check"]


# -- configuration -------------------------------------------------------------------------------

TOML = """
[[notifications]]
type = "sns"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:hippolyte"

[[notifications]]
type = "email"
host = "smtp.example.com"
port = 587
starttls = true
from_addr = "hippolyte@example.com"
to = ["dba@example.com"]
username = "hippolyte"
password_env = "HIPPOLYTE_SMTP_PASSWORD"

[[notifications]]
type = "webhook"
name = "slack-dba"
url = "https://hooks.slack.com/services/T000/B000/XXXX"
"""


def test_channels_from_toml() -> None:
    sns, mail, hook = parse_channels(tomllib.loads(TOML)["notifications"])
    assert isinstance(sns, SnsChannel) and sns.topic_region == "eu-west-1"
    assert isinstance(mail, EmailChannel) and mail.label == "email smtp.example.com:587"
    assert isinstance(hook, WebhookChannel) and hook.label == "webhook slack-dba"
    assert WebhookChannel(url=hook.url).label == "webhook https://hooks.slack.com/..."


@pytest.mark.parametrize(
    ("entry", "where", "says"),
    [
        ({"type": "slack", "url": "https://x"}, (0,), "expected tags: 'sns', 'email', 'webhook'"),
        ({"url": "https://x"}, (0,), "discriminator 'type'"),
        (
            {"type": "sns", "topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"},
            (0, "sns", "topic_arn"),
            "is not an SNS topic ARN",
        ),
        ({"type": "webhook", "url": "ftp://x/y"}, (0, "webhook", "url"), "http:// or https://"),
        (
            {"type": "email", "host": "h", "from_addr": "me", "to": ["a@b.c"]},
            (0, "email", "from_addr"),
            "is not an e-mail address",
        ),
        (
            {"type": "email", "host": "h", "from_addr": "a@b.c", "to": []},
            (0, "email", "to"),
            "at least 1 item",
        ),
        (
            {"type": "email", "host": "h", "from_addr": "a@b.c", "to": ["a@b.c"], "password": "x"},
            (0, "email"),
            "password_env",
        ),
        (
            {
                "type": "email",
                "host": "h",
                "from_addr": "a@b.c",
                "to": ["a@b.c"],
                "ssl": True,
                "starttls": True,
            },
            (0, "email"),
            "choose one of ssl",
        ),
        ({"type": "webhook", "url": "https://x", "method": "GET"}, (0, "webhook", "method"), ""),
        (
            {"type": "email", "host": "smtp.example:587", "from_addr": "a@b.c", "to": ["a@b.c"]},
            (0, "email", "host"),
            "the port goes in port",
        ),
    ],
    ids=[
        "unknown-type",
        "no-type",
        "not-a-topic-arn",
        "not-http",
        "bad-from",
        "no-recipient",
        "password-in-config",
        "ssl-and-starttls",
        "unknown-key",
        "port-in-host",
    ],
)
def test_bad_channel_config_names_the_field(
    entry: dict[str, Any], where: tuple[Any, ...], says: str
) -> None:
    with pytest.raises(ValidationError) as info:
        parse_channels([entry])
    error = info.value.errors()[0]
    assert error["loc"] == where and says in error["msg"]
