"""The typed wire protocol: flat JSON objects tagged by `type`, with an optional `id`.

A request that carries an `id` gets exactly one reply carrying the same `id`: the
handler's reply model, an `ack` when the handler returned nothing, or an `error`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["ERROR_CODES", "Ack", "ErrorReply", "Message", "MessageId"]

MessageId = str | int

# Error codes the framework itself sends; handlers add their own with MessageError.
ERROR_CODES = (
    "invalid_json",  # the text frame is not JSON
    "unknown_type",  # no handler for this `type` (or no `type` at all)
    "validation_error",  # the message does not fit its model; `errors` lists why
    "unsupported_data",  # a binary frame to an app without a bytes handler
    "handler_error",  # the handler raised; details stay in the server log
    "handler_unavailable",  # the handler's actor is down after too many crashes
    "overloaded",  # the handler's actor has no room in its mailbox
)


class Message(BaseModel):
    """Base of messages in both directions: `id` correlates a reply with its request."""

    id: MessageId | None = None


class Ack(Message):
    """The reply to a request with an `id` whose handler returned nothing."""

    type: Literal["ack"] = "ack"


class ErrorReply(Message):
    """A typed error; the connection stays open after it."""

    type: Literal["error"] = "error"
    code: str
    detail: str = ""
    errors: list[dict[str, Any]] = []
