"""The server's log lines as JSON (`--log-format json`), one object a line, secrets masked.

    {"time": "2026-12-01T22:30:00.123Z", "level": "DEBUG", "logger": "websock_actors",
     "event": "<Connection 7 ...>: closed: 1000", "connection": 7, "peer": "127.0.0.1:50312",
     "code": 1000}

A line names the connection it is about (its id and peer, taken from the Connection among
the record's arguments) and carries what the call site gave as `extra` (`code`, `status`,
...). Before anything is written, values that look like credentials are masked: query
parameters such as `token=` or `password=`, and `Authorization`, `Cookie` and `Set-Cookie`
header values, in the message and in any exception text (the text format masks them too).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

__all__ = ["JSONFormatter", "MaskingFormatter", "configure_logging", "mask_secrets"]

_SECRET_QUERY = re.compile(
    r"(?i)((?<![\w.-])(?:access_token|token|auth|key|api_key|apikey|password|passwd|secret|signature|sig|session)=)"
    r"[^&;\s'\"#]*"
)
_SECRET_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie)(['\"]?\s*[:=,]\s*['\"]?)([^'\"\r\n]+)"
)
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_secrets(text: str) -> str:
    """`text` with credentials replaced by `***`."""
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1***", text)
    return _SECRET_HEADER.sub(r"\1\2***", text)


class JSONFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, *, process: bool = False) -> None:
        super().__init__()
        self.process = process  # with --workers: which process wrote the line

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": mask_secrets(record.getMessage()),
        }
        if self.process:
            entry["pid"] = record.process
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            conn_id, address = getattr(arg, "id", None), getattr(arg, "address", None)
            if isinstance(conn_id, int) and isinstance(address, tuple) and len(address) >= 2:
                entry["connection"] = conn_id
                entry["peer"] = f"{address[0]}:{address[1]}"
                break
        for name, value in vars(record).items():  # what the call gave as `extra`
            if name not in _RECORD_FIELDS and name not in entry:
                entry[name] = value if isinstance(value, (int, float, bool)) or value is None else str(value)
        if record.exc_info:
            entry["exception"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    """The text format, with credentials masked as in the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def configure_logging(level: str, log_format: str = "text", *, process: bool = False) -> None:
    """The command line's logging: text (as `logging.basicConfig` writes it) or JSON lines,
    to standard error; `process` adds the process id (several workers share the stream)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JSONFormatter(process=process))
    else:
        where = " [%(process)d]" if process else ""
        handler.setFormatter(MaskingFormatter(f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
