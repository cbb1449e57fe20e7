"""Notification channels as configured (``[[notifications]]``). Pure: pydantic only.

An unknown ``type``, a malformed topic ARN, URL or address is a validation error naming the
field. Secrets stay out of the config: an SMTP password is read, when a message is sent, from
the environment variable that ``password_env`` names.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
EMAIL = r"^[^@\s<>,;]+@[^@\s<>,;]+$"
HTTP_URL = r"^https?://[^\s/?#]+[^\s]*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _shaped(pattern: str, what: str) -> AfterValidator:
    """A validator whose error says what was expected, not which regex failed."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


TopicArn = Annotated[str, _shaped(TOPIC_ARN, "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")]
HttpUrl = Annotated[str, _shaped(HTTP_URL, "an http:// or https:// URL")]
Address = Annotated[str, _shaped(EMAIL, "an e-mail address (name@domain)")]
Host = Annotated[
    str,
    _shaped(r"^([^\s/:@]+|[0-9A-Fa-f:.]+)$", "a host name or IP address (the port goes in port)"),
]
Region = Annotated[str, _shaped(r"^[a-z]{2}(-[a-z]+)+-\d+$", "an AWS region (e.g. eu-west-1)")]


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=64)  # a label for reports


class SnsChannel(_Channel):
    """An SNS topic (the original's): e-mail subscribers get the subject and the text body."""

    type: Literal["sns"] = "sns"
    topic_arn: TopicArn
    region: Region | None = None
    endpoint_url: HttpUrl | None = None
    timeout_s: float = Field(default=10, gt=0, le=300)

    @property
    def label(self) -> str:
        return f"sns {self.name or self.topic_arn}"

    @property
    def topic_region(self) -> str:
        """The channel's region, else the one in the topic's ARN."""
        return self.region or self.topic_arn.split(":")[3]


class EmailChannel(_Channel):
    """SMTP: plain-text e-mail to ``to``; ``ssl`` (port 465) or ``starttls`` (587), not both."""

    type: Literal["email"] = "email"
    host: Host
    port: int = Field(default=25, ge=1, le=65535)
    from_addr: Address
    to: list[Address] = Field(min_length=1)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=ENV_NAME)  # the variable's NAME
    timeout_s: float = Field(default=10, gt=0, le=300)

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "do not put the password in the config: set it in an environment variable "
                "and give that variable's name as password_env"
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> EmailChannel:
        if self.ssl and self.starttls:
            raise ValueError("choose one of ssl (implicit TLS, port 465) and starttls (587)")
        if self.password_env and not self.username:
            raise ValueError("password_env needs a username")
        return self

    @property
    def label(self) -> str:
        return f"email {self.name or f'{self.host}:{self.port}'}"


class WebhookChannel(_Channel):
    """A JSON POST: ``{"text": <Slack mrkdwn>, **data}``, so a Slack incoming webhook works."""

    type: Literal["webhook"] = "webhook"
    url: HttpUrl
    headers: dict[str, str] = {}
    timeout_s: float = Field(default=10, gt=0, le=300)

    @property
    def label(self) -> str:
        return f"webhook {self.name or redacted(self.url)}"


Channel = Annotated[SnsChannel | EmailChannel | WebhookChannel, Field(discriminator="type")]
_CHANNELS: TypeAdapter[list[Channel]] = TypeAdapter(list[Channel])


def parse_channels(data: Sequence[Any]) -> list[Channel]:
    """Validate a config's ``notifications`` list; raises pydantic's ValidationError."""
    return _CHANNELS.validate_python(list(data))


def redacted(url: str) -> str:
    """Scheme, host and port only: webhook paths and queries often hold the secret token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    more = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"
