"""JSON log lines, as `serve` and the Lambda handler write them (CloudWatch, journald)."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message and any `extra` fields."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in self._standard})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("hippolyte")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
