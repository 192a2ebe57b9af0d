"""The server's log lines as JSON (`--log-format json`), one object a line, secrets masked.

    {"time": "2026-12-01T22:30:00.123Z", "level": "DEBUG", "logger": "websock_actors",
     "event": "<Connection 7 ...>: closed: 1000", "connection": 7, "peer": "127.0.0.1:50312",
     "code": 1000}

A line names the connection it is about (its id and peer, taken from the Connection among
the record's arguments) and carries what the call site gave as `extra` (`code`, `status`,
...). Before anything is written, values that look like credentials are masked
(websock_actors.protocol.redact): a URL's userinfo (`redis://:***@host`), query parameters
such as `token=` or `password=`, and `Authorization`, `Cookie` and `Set-Cookie` header
values, in the message, the `extra` values and any exception text (the text format masks
them too).

The call sites mask what they format already; `MaskingFilter`, which `configure_logging`
puts on its handler, masks every record again (a third-party library's included) before
any handler behind it sees it: defence in depth. An application with logging of its own
can add it to its handlers.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..protocol.redact import mask_secrets

__all__ = ["JSONFormatter", "MaskingFilter", "MaskingFormatter", "configure_logging", "mask_secrets"]

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _connection_of(record: logging.LogRecord) -> tuple[int, str] | None:
    """The id and peer of the Connection among the record's arguments, if any."""
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        conn_id, address = getattr(arg, "id", None), getattr(arg, "address", None)
        if isinstance(conn_id, int) and isinstance(address, tuple) and len(address) >= 2:
            return conn_id, f"{address[0]}:{address[1]}"
    return None


class MaskingFilter(logging.Filter):
    """Masks credentials in a record itself (message, exception and stack text), for every
    handler and formatter behind it. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: the handler reports them when it formats
            return True
        masked = mask_secrets(message)
        if masked != message:
            found = _connection_of(record)
            if found is not None:  # the JSON format's fields, which the arguments gave
                vars(record).update(connection=found[0], peer=found[1])
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


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
        found = _connection_of(record)
        if found is not None:
            entry["connection"], entry["peer"] = found
        for name, value in vars(record).items():  # what the call gave as `extra`
            if name not in _RECORD_FIELDS and name not in entry:
                plain = isinstance(value, (int, float, bool)) or value is None
                entry[name] = value if plain else mask_secrets(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = mask_secrets(record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    """The text format, with credentials masked as in the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def configure_logging(level: str, log_format: str = "text", *, process: bool = False) -> None:
    """The command line's logging: text (as `logging.basicConfig` writes it) or JSON lines,
    to standard error; `process` adds the process id (several workers share the stream)."""
    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    if log_format == "json":
        handler.setFormatter(JSONFormatter(process=process))
    else:
        where = " [%(process)d]" if process else ""
        handler.setFormatter(MaskingFormatter(f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
