"""Deliver a ``Message`` to every configured channel: SNS, SMTP e-mail, a JSON webhook.

Each channel is tried on its own; one that fails (unreachable, refused, a topic that does
not exist, a non-2xx answer, a timeout) is reported in its ``ChannelResult`` and the others
still get the message. ``send_all`` never raises for a channel's failure.

Channels come from the config (``[[notifications]]`` tables), validated here at start-up:
an unknown ``type``, a malformed topic ARN, URL or address is a pydantic error naming the
field. Secrets stay out of the config: an SMTP password is read from the environment
variable that ``password_env`` names, when the message is sent.
"""

from __future__ import annotations

import os
import smtplib
import ssl as ssl_lib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import botocore.exceptions
import orjson

from hippolyte.adapters import aws
from hippolyte.core.channels import (  # noqa: F401 (re-exported)
    Channel,
    EmailChannel,
    SnsChannel,
    WebhookChannel,
    parse_channels,
    redacted,
)
from hippolyte.core.errors import HippolyteError
from hippolyte.core.messages import Message
from hippolyte.core.model import Connection

SNS_MAX_BYTES = 262_144  # SNS message size limit
DETAIL_MAX = 300


@dataclass(frozen=True, kw_only=True)
class ChannelResult:
    channel: str  # readable label: "sns arn:...", "email smtp.example:587", "webhook https://..."
    ok: bool
    detail: str


class ChannelFailed(Exception):
    """A channel's delivery failed; the message is the one line shown to the user."""


# -- sending -------------------------------------------------------------------------------------


def send_all(channels: Sequence[Channel], message: Message) -> list[ChannelResult]:
    """Send to every channel in turn; each one's outcome, in the channels' order."""
    return [send_one(channel, message) for channel in channels]


def send_one(channel: Channel, message: Message) -> ChannelResult:
    try:
        detail = _deliver(channel, message)
    except ChannelFailed as exc:
        return ChannelResult(channel=channel.label, ok=False, detail=_short(str(exc)))
    except Exception as exc:  # a channel's failure must never stop the others
        detail = f"{type(exc).__name__}: {exc}"
        return ChannelResult(channel=channel.label, ok=False, detail=_short(detail))
    return ChannelResult(channel=channel.label, ok=True, detail=detail)


def _deliver(channel: Channel, message: Message) -> str:
    """Send; return what happened on success, raise ChannelFailed (or anything) otherwise."""
    if isinstance(channel, SnsChannel):
        return _send_sns(channel, message)
    if isinstance(channel, EmailChannel):
        return _send_email(channel, message)
    return _send_webhook(channel, message)


def _send_sns(channel: SnsChannel, message: Message) -> str:
    try:
        sns = aws.client(
            Connection(region=channel.topic_region),
            "sns",
            endpoint_url=channel.endpoint_url,
            max_attempts=3,
            connect_timeout=channel.timeout_s,
            read_timeout=channel.timeout_s,
        )
        answer = sns.publish(**_sns_request(channel, message))
    except botocore.exceptions.ClientError as exc:
        raise ChannelFailed(_sns_error(exc, topic=channel.topic_arn)) from exc
    except (botocore.exceptions.BotoCoreError, HippolyteError) as exc:
        raise ChannelFailed(str(aws.translate(exc, what=channel.topic_arn))) from exc
    return f"published, message id {answer.get('MessageId', '?')}"


def _sns_request(channel: SnsChannel, message: Message) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TopicArn": channel.topic_arn,
        "Subject": message.subject,
        "Message": _fit(message.text, SNS_MAX_BYTES - 4096),  # room for the attributes
        "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": str(message.data.get("kind", "?"))},
            "ok": {"DataType": "String", "StringValue": str(message.data.get("ok")).lower()},
        },
    }
    if channel.topic_arn.endswith(".fifo"):
        request["MessageGroupId"] = "hippolyte"
        request["MessageDeduplicationId"] = uuid.uuid4().hex
    return request


def _sns_error(exc: Any, *, topic: str) -> str:
    error = exc.response.get("Error", {})
    code, text = error.get("Code", ""), error.get("Message", "")
    if code in {"NotFound", "NotFoundException"}:
        return f"SNS topic {topic} does not exist (or is in another region or account)"
    if code in {"AuthorizationError", "AuthorizationErrorException", "AccessDenied"}:
        return f"not allowed to publish to {topic}: {text or code}"
    return str(aws.translate(exc, what=topic))


def _send_email(channel: EmailChannel, message: Message) -> str:
    email = _email(channel, message)
    where = f"{channel.host}:{channel.port}"
    try:
        with _smtp(channel) as smtp:
            if channel.username:
                smtp.login(channel.username, _password(channel))
            refused = smtp.send_message(email)
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelFailed(
            f"{where} refused every recipient: {_refusals(exc.recipients)}"
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise ChannelFailed(f"{where} answered {exc.smtp_code}: {_decode(exc.smtp_error)}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelFailed(f"cannot send through {where}: {_os_error(exc)}") from exc
    if refused:
        raise ChannelFailed(f"{where} refused {_refusals(refused)}; sent to the others")
    return f"sent to {', '.join(channel.to)}"


def _smtp(channel: EmailChannel) -> smtplib.SMTP:
    if channel.ssl:
        context = ssl_lib.create_default_context()
        return smtplib.SMTP_SSL(
            channel.host, channel.port, timeout=channel.timeout_s, context=context
        )
    smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
    if channel.starttls:
        try:
            smtp.starttls(context=ssl_lib.create_default_context())
        except BaseException:
            smtp.close()
            raise
    return smtp


def _email(channel: EmailChannel, message: Message) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = channel.from_addr
    email["To"] = ", ".join(channel.to)
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = make_msgid(domain=channel.from_addr.rpartition("@")[2])
    email.set_content(message.text)
    return email


def _password(channel: EmailChannel) -> str:
    if not channel.password_env:
        raise ChannelFailed(f"username {channel.username!r} is set but password_env is not")
    password = os.environ.get(channel.password_env)
    if password is None:
        raise ChannelFailed(f"environment variable {channel.password_env} is not set")
    return password


def _send_webhook(channel: WebhookChannel, message: Message) -> str:
    body = orjson.dumps({"text": message.slack_text, **message.data})
    headers = {"User-Agent": "hippolyte", **channel.headers, "Content-Type": "application/json"}
    request = urllib.request.Request(channel.url, data=body, headers=headers, method="POST")
    where = redacted(channel.url)
    try:
        with _NO_REDIRECTS.open(request, timeout=channel.timeout_s) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        raise ChannelFailed(f"{where} answered HTTP {exc.code} {exc.reason}{_body(exc)}") from exc
    except urllib.error.URLError as exc:
        raise ChannelFailed(f"cannot reach {where}: {_os_error(exc.reason)}") from exc
    except OSError as exc:  # a timeout while reading the answer, a reset connection
        raise ChannelFailed(f"no answer from {where}: {_os_error(exc)}") from exc
    return f"HTTP {status}"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET without its body: report it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


# -- small helpers -------------------------------------------------------------------------------


def _fit(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = "\n... (cut to fit the message size limit; see the run's record)\n"
    return data[: limit - len(note)].decode("utf-8", "ignore") + note


def _body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(200).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f": {' '.join(text.split())}" if text else ""


def _os_error(exc: BaseException | str) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{rcpt} ({code} {_decode(why)})" for rcpt, (code, why) in recipients.items())


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _short(detail: str) -> str:
    one = " ".join(detail.split())
    return one if len(one) <= DETAIL_MAX else one[: DETAIL_MAX - 3] + "..."
