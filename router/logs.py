"""Process logging for the router's processes: one line per event on stderr, plain or JSON.

`setup_logging(json, process_name)` is called once by each process entry point
(listener, worker, supervisor). A log call may carry structured fields with
`extra={"fields": {...}}`: plain lines print them as `key=value` after the
message, JSON lines (`--log-json`) as keys of the object.
"""

from __future__ import annotations

import json as json_module
import logging
import re
import sys
import time

FIELDS = "fields"  # the `extra` key holding an event's structured fields
SPACE = re.compile(r"\s")


def setup_logging(json: bool, process_name: str, level: int = logging.INFO) -> None:
    """Send every log record of this process to stderr, one line each, tagged with `process_name`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process_name) if json else PlainFormatter(process_name))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("router.net").setLevel(logging.WARNING)  # the engine's chatter stays out of process logs


class ProcessFormatter(logging.Formatter):
    """A formatter that names the process on every line."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name


class PlainFormatter(ProcessFormatter):
    """`2024-01-02T10:15:00.123 INFO worker-0: message key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, FIELDS, None) or {}
        pairs = "".join(f" {key}={_plain(value)}" for key, value in fields.items())
        line = f"{_timestamp(record)} {record.levelname} {self.process_name}: {record.getMessage()}{pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(ProcessFormatter):
    """One JSON object per line: time, level, process, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname,
            "process": self.process_name,
            "logger": record.name,
            "message": record.getMessage(),
            **(getattr(record, FIELDS, None) or {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_module.dumps(entry, default=str)


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}"


def _plain(value: object) -> str:
    """A field's value for a plain line: quoted when it has spaces, so the line still splits on them."""
    text = str(value)
    return json_module.dumps(text) if not text or SPACE.search(text) else text
