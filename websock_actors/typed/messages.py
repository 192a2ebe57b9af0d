"""The typed wire protocol: flat JSON objects tagged by `type`, with an optional `id`.

A request that carries an `id` gets exactly one reply carrying the same `id`: the
handler's reply model, an `ack` when the handler returned nothing, or an `error`.

The error codes the framework itself sends: `invalid_json` (the text frame is not JSON),
`unknown_type` (no handler for this `type`, or no `type`), `validation_error` (the message
does not fit its model; `errors` lists why), `unsupported_data` (a binary frame to an app
without a bytes handler), `handler_error` (the handler raised; details stay in the server
log), `handler_unavailable` (the handler's actor is down after too many crashes) and
`overloaded` (the handler's actor has no room in its mailbox) and `rate_limited` (the
connection sent faster than its rate limit; `retry_after_ms` says when to try again).
Handlers add their own by raising MessageError.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "Ack", "ErrorReply", "Message", "MessageId", "stamp_request_id", "to_json", "user_address", "user_key",
]  # fmt: skip

MessageId = str | int

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
    retry_after_ms: int | None = None  # with `rate_limited`: when to try again


def stamp_request_id(message: BaseModel, request_id: MessageId) -> None:
    """Give a reply the request's `id`, unless it carries one already. A model without an
    `id` field raises (pydantic's own error), as assigning it would."""
    fields = message.__dict__  # every field of the model is in it; extras and privates are not
    if "id" in fields:
        if fields["id"] is None:
            # What pydantic's assignment does, without its validation round trip on the hot
            # path (benchmarks/typed_bench.sh): the request's id was validated coming in.
            fields["id"] = request_id
            message.__pydantic_fields_set__.add("id")
    else:
        message.id = request_id  # type: ignore[attr-defined]  # raises: no such field


_WITHOUT_ID = {"id"}
_WITHOUT_RETRY = {"retry_after_ms"}
_WITHOUT_BOTH = {"id", "retry_after_ms"}


def to_json(message: BaseModel) -> str:
    """The message as it goes on the wire: its JSON text, without `id` when that is None (a
    push, or the reply to a request that carried none), and without an error's
    `retry_after_ms` when that is None."""
    # The model's serializer itself, as model_dump_json calls it with its defaults: that
    # wrapper's keyword handling costs more than the serializing of a small reply
    # (benchmarks/typed_bench.sh).
    to_bytes = message.__pydantic_serializer__.to_json
    no_id = getattr(message, "id", 0) is None
    if type(message) is ErrorReply and message.retry_after_ms is None:
        return to_bytes(message, exclude=_WITHOUT_BOTH if no_id else _WITHOUT_RETRY).decode()
    if no_id:
        return to_bytes(message, exclude=_WITHOUT_ID).decode()
    return to_bytes(message).decode()


def user_address(identity: Any) -> str | None:
    """The address of a user's `identity` (typed/users.py): a str, or an int as its decimal
    text; None for any other type (a bool too), which cannot be addressed. Here, gevent-free,
    for the Emitter."""
    if isinstance(identity, (str, int)) and not isinstance(identity, bool):
        return str(identity)
    return None


def user_key(identity: Any) -> str:
    """`user_address`, or TypeError for an identity that cannot be one (given to address)."""
    key = user_address(identity)
    if key is None:
        raise TypeError(f"a user's identity is a str or an int, not {type(identity).__name__}")
    return key
