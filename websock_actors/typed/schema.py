"""Describe a typed app's messages: a JSON Schema document and an AsyncAPI 3.0 document.

Both come from the registered models, so they cannot drift from the code; the chat
app's copies in schemas/ are checked against this output by a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .messages import Ack, ErrorReply
from .router import Router, model_tag

__all__ = ["asyncapi_document", "json_schema_document", "sent_models"]


def _unique(models: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    seen: dict[type[BaseModel], None] = {}
    for model in models:
        seen.setdefault(model, None)
    return list(seen)


def sent_models(router: Router, pushes: Sequence[type[BaseModel]]) -> list[type[BaseModel]]:
    """Everything the server may send: replies, pushes, `ack` and `error`."""
    replies = [route.reply for route in router.routes.values() if route.reply is not None]
    return _unique([*replies, *pushes, Ack, ErrorReply])


# With resumption, what a room broadcast carries beside its model's fields (typed/resume.py).
_NUMBERED: dict[str, dict[str, Any]] = {
    "seq": {"type": "integer", "minimum": 1, "description": "The broadcast's number in its room (+1 each)."},
    "epoch": {"type": "string", "description": "The room's history; another epoch: history was lost."},
    "room": {"type": "string", "description": "The room (added when the model has no `room`)."},
}


def _definitions(
    router: Router, pushes: Sequence[type[BaseModel]], ref_template: str, numbered: bool = False
) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Schemas of all models: (tag -> ref of each request), (tag -> ref of each sent message), defs."""
    received = [route.model for route in router.routes.values()]
    sent = sent_models(router, pushes)
    keys = [(model, "validation") for model in received] + [(model, "serialization") for model in sent]
    refs, top = models_json_schema(keys, ref_template=ref_template)  # type: ignore[arg-type]
    received_refs = {model_tag(m): refs[(m, "validation")]["$ref"] for m in received}
    sent_refs = {model_tag(m): refs[(m, "serialization")]["$ref"] for m in sent}
    defs = top.get("$defs", {})
    for ref in sent_refs.values():
        # What the server sends always carries its `type` (a default is still sent); `id` is
        # left out when None, so it stays optional.
        schema = defs[ref.rsplit("/", 1)[-1]]
        required = schema.setdefault("required", [])
        if "type" not in required:
            required.insert(0, "type")
    if numbered:  # a push may be a room broadcast: then it is numbered
        for model in pushes:
            if model_tag(model) != "session":
                properties = defs[sent_refs[model_tag(model)].rsplit("/", 1)[-1]].setdefault("properties", {})
                for name, schema in _NUMBERED.items():
                    properties.setdefault(name, dict(schema))
    return received_refs, sent_refs, defs


def json_schema_document(
    title: str, router: Router, pushes: Sequence[type[BaseModel]], *, numbered: bool = False
) -> dict[str, Any]:
    """One JSON Schema (2020-12): a message is a ClientMessage or a ServerMessage.
    `numbered`: pushes carry `seq`, `epoch` and `room` when broadcast (resumption on)."""
    received, sent, defs = _definitions(router, pushes, "#/$defs/{model}", numbered)
    defs["ClientMessage"] = {
        "description": "A message the server accepts, tagged by `type`.",
        "oneOf": [{"$ref": ref} for ref in received.values()],
        "discriminator": {"propertyName": "type", "mapping": received},
    }
    defs["ServerMessage"] = {
        "description": "A message the server sends: a reply (with the request's `id`), a push, or an error.",
        "oneOf": [{"$ref": ref} for ref in sent.values()],
        "discriminator": {"propertyName": "type", "mapping": sent},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{title}: messages",
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": defs,
    }


def asyncapi_document(
    title: str,
    version: str,
    router: Router,
    pushes: Sequence[type[BaseModel]],
    *,
    address: str = "/",
    host: str = "localhost:8000",
    numbered: bool = False,
) -> dict[str, Any]:
    """An AsyncAPI 3.0 document: one WebSocket channel at `address`, an operation per message
    type; `numbered`: the app resumes sessions (the description says how)."""
    received, sent, schemas = _definitions(router, pushes, "#/components/schemas/{model}", numbered)
    messages: dict[str, Any] = {}
    for tag, ref in {**received, **sent}.items():
        messages[tag] = {"name": tag, "title": ref.rsplit("/", 1)[-1], "payload": {"$ref": ref}}
    channel_ref = {"$ref": "#/channels/websocket"}
    operations: dict[str, Any] = {}
    for tag, route in router.routes.items():
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": _summary(route),
            "messages": [{"$ref": f"#/channels/websocket/messages/{tag}"}],
        }
        answers = [model_tag(route.reply)] if route.reply is not None else ["ack"]
        operation["reply"] = {
            "channel": channel_ref,
            "messages": [{"$ref": f"#/channels/websocket/messages/{t}"} for t in [*answers, "error"]],
        }
        operations[f"receive_{tag}"] = operation
    for model in pushes:
        tag = model_tag(model)
        operations[f"send_{tag}"] = {
            "action": "send",
            "channel": channel_ref,
            "messages": [{"$ref": f"#/channels/websocket/messages/{tag}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "JSON text frames tagged by `type`; a request with an `id` gets one reply with that `id`."
                + (_RESUMPTION if numbered else "")
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"default": {"host": host, "protocol": "ws", "description": "the WebSocket endpoint"}},
        "channels": {
            "websocket": {
                "address": address,
                "title": "The WebSocket connection",
                "messages": {tag: {"$ref": f"#/components/messages/{tag}"} for tag in messages},
            }
        },
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _summary(route: Any) -> str:
    """The handler's docstring's first line, else what the operation answers."""
    if route.handler.__doc__:
        return str(route.handler.__doc__).strip().splitlines()[0]
    answer = model_tag(route.reply) if route.reply is not None else "ack"
    return f"A `{route.tag}` request, answered with `{answer}` (or `error`)."


_RESUMPTION = (
    " Sessions resume: the server's first message is `session` (a token); every room broadcast"
    " carries `seq` (+1 per broadcast in its room), `epoch` and `room`. A client whose connection"
    " dropped sends `resume` as its first message on a new one, with the token and the last"
    " `seq`/`epoch` it read of each room: the messages it missed come first, in order, then"
    " `resumed` (`recovered`: all restored; `lost`: rooms whose history is gone), then live ones."
)
