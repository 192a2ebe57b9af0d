"""Routing typed messages: the `type` tag picks a pydantic model and its handler.

Registration reads the handler's type hints once and refuses mistakes at start-up (a
duplicate tag, a missing hint, a model without a `Literal` tag). `build` makes one
`TypeAdapter` over the tagged union of every registered model; `decode` validates a
frame's text or bytes with it directly, with no intermediate dict.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import ConfigurationError, InvalidMessage

__all__ = ["Handler", "Route", "Router", "model_tag", "peek", "push_adapter"]

Handler = Callable[..., Any]



@dataclass(frozen=True, slots=True)
class Route:
    """One registered message type."""

    tag: str
    model: type[BaseModel]
    handler: Handler
    reply: type[BaseModel] | None
    actor: str | None


def model_tag(model: type[BaseModel]) -> str:
    """The value of the model's `type: Literal["..."]` field, or a ConfigurationError."""
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        raise ConfigurationError(f"{model.__name__} needs a `type: Literal[\"...\"]` field to be routed")
    values = get_args(field.annotation)
    if len(values) != 1 or not isinstance(values[0], str):
        raise ConfigurationError(f"{model.__name__}.type must be a Literal of exactly one string")
    return values[0]


def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _reply_model(handler: Handler, hint: object) -> type[BaseModel] | None:
    """`None`, a model, or `Model | None` as a return hint; anything else is refused."""
    if hint is None or hint is type(None):
        return None
    if _is_model(hint):
        return hint  # type: ignore[return-value]
    if get_origin(hint) in (Union, types.UnionType):
        models = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(models) == 1 and _is_model(models[0]):
            return models[0]  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"handler {handler.__name__}() must return a pydantic model, `Model | None` or None, not {hint!r}"
    )


class Router:
    """The registered routes and the one validator built over all of them."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._adapter: TypeAdapter[Any] | None = None
        # The schema validator's validate_json, bound once it is built: TypeAdapter's own is
        # a Python wrapper around it, a large share of a small message's validation.
        self._validate_json: Callable[[str | bytes], Any] | None = None

    def add(self, handler: Handler, *, actor: str | None = None) -> Route:
        """Register `def handler(msg: Model, ctx) -> Reply | None`."""
        name = getattr(handler, "__name__", repr(handler))
        try:
            hints = typing.get_type_hints(handler)
        except Exception as exc:
            raise ConfigurationError(f"cannot read the type hints of handler {name}(): {exc}") from exc
        params = [p for p in _parameters(handler) if p != "return"]
        if not params or params[0] not in hints or not _is_model(hints[params[0]]):
            raise ConfigurationError(
                f"handler {name}(): its first parameter needs a type hint naming a pydantic model"
            )
        if "return" not in hints:
            raise ConfigurationError(f"handler {name}() needs a return type hint (a reply model or None)")
        model: type[BaseModel] = hints[params[0]]
        tag = model_tag(model)
        if "id" not in model.model_fields:
            # Without the field, pydantic drops the frame's `id`: no ack, replies with "id": null.
            raise ConfigurationError(
                f"request model {model.__name__} of {name}() needs an `id` field"
                " (subclass websock_actors.Message)"
            )
        if tag in self.routes:
            other = self.routes[tag].handler
            other_name = getattr(other, "__name__", other)
            raise ConfigurationError(f"message type {tag!r} is handled twice: by {other_name}() and {name}()")
        reply = _reply_model(handler, hints["return"])
        if reply is not None and "id" not in reply.model_fields:
            raise ConfigurationError(
                f"reply model {reply.__name__} of {name}() needs an `id` field"
                " (subclass websock_actors.Message)"
            )
        route = Route(tag, model, handler, reply, actor)
        self.routes[tag] = route
        self._adapter = self._validate_json = None
        return route

    def build(self) -> TypeAdapter[Any]:
        """The validator over the tagged union of all routes (built once, then cached)."""
        if self._adapter is None:
            if not self.routes:
                raise ConfigurationError("the app has no message handlers")
            # A placeholder member keeps it a union with one route too, so errors look alike.
            models = (*(route.model for route in self.routes.values()), _NoMessage)
            union: Any = Union[models]  # noqa: UP007
            self._adapter = TypeAdapter(Annotated[union, Field(discriminator="type")])
        return self._adapter

    def decode(self, data: str | bytes) -> BaseModel:
        """Validate one frame into its model, or raise InvalidMessage with the code to answer."""
        validate_json = self._validate_json
        if validate_json is None:
            validate_json = self._validate_json = self.build().validator.validate_json
        if len(data) > _SCAN_ABOVE and _first_char(data) not in _OBJECT_START:
            # A large frame that cannot be an object is not validated at all: pydantic would
            # build the whole value first, and the hub waits (benchmarks/under_attack.py).
            raise _not_an_object(data)
        try:
            message: BaseModel = validate_json(data)
        except ValidationError as exc:
            raise self._explain(exc, data) from None
        if type(message) is _NoMessage:  # the placeholder's tag, sent by a client
            raise InvalidMessage("unknown_type", "no handler for type '\\x00'", message_id=None)
        return message

    def _explain(self, exc: ValidationError, data: str | bytes) -> InvalidMessage:
        """The error reply for a frame that did not validate: bounded whatever the frame.

        At most _MAX_ERRORS errors are listed with their input keys cut short, and the frame
        is not decoded again in Python: its `id` and `type` are read by a two-field model
        that skips everything else.
        """
        count = exc.error_count()
        errors = _first_errors(exc, count)
        kinds = {error["type"] for error in errors}
        if "json_invalid" in kinds:
            return InvalidMessage("invalid_json", "the message is not valid JSON")
        message_id, tag = peek(data)
        if "union_tag_invalid" in kinds:
            detail = f"no handler for type {_cut(tag if isinstance(tag, str) else repr(tag))!r}"
            return InvalidMessage("unknown_type", detail, message_id=message_id)
        if "union_tag_not_found" in kinds:
            return InvalidMessage("unknown_type", "the message has no `type` field", message_id=message_id)
        if count == 1 and not errors[0]["loc"]:
            return _not_an_object(data, message_id)
        listed: list[dict[str, object]] = []
        for error in errors:
            loc = [_cut(part) for part in error["loc"][1:]]
            listed.append({"loc": loc, "msg": error["msg"][:200], "type": error["type"]})
        return InvalidMessage("validation_error", f"{count} invalid field(s)", listed, message_id=message_id)


class _NoMessage(BaseModel):
    type: Literal["\x00"]


def _parameters(handler: Handler) -> list[str]:
    code = getattr(handler, "__code__", None)
    if code is None:
        return []
    return list(code.co_varnames[: code.co_argcount])


class _Envelope(BaseModel):
    """The two fields an error reply needs from a frame that did not validate."""

    model_config = ConfigDict(extra="ignore")
    id: Any = None
    type: Any = None


def push_adapter(pushes: tuple[type[BaseModel], ...]) -> TypeAdapter[Any] | None:
    """One validator over an app's declared pushes, told apart by their `type` (None: no
    pushes), for messages that come from outside a handler: the server API's, an Emitter's.
    A push without a Literal `type`: ConfigurationError."""
    if not pushes:
        return None
    union: Any = pushes[0] if len(pushes) == 1 else Union[pushes]  # noqa: UP007
    try:
        return TypeAdapter(Annotated[union, Field(discriminator="type")])
    except Exception as exc:
        raise ConfigurationError(f"the app's pushes must be told apart by `type`: {exc}") from None


_ENVELOPE = TypeAdapter(_Envelope)
_MAX_ERRORS = 20
_MAX_ITEM = 64  # characters of an input key (a `loc` item) or a tag echoed back
_SCAN_ABOVE = 4096
_OBJECT_START = frozenset("{ \t\r\n")


def _first_char(data: str | bytes) -> str:
    first = data[:1]
    return first.decode("latin-1") if isinstance(first, bytes) else first


def _not_an_object(data: str | bytes, message_id: str | int | None = None) -> InvalidMessage:
    if _first_char(data) not in '[{"-0123456789tfn':
        return InvalidMessage("invalid_json", "the message is not valid JSON")
    return InvalidMessage("validation_error", "a message must be a JSON object", message_id=message_id)


def _first_errors(exc: ValidationError, count: int) -> list[Any]:
    """The first _MAX_ERRORS errors. `errors()` builds a dict for every one of them, which
    a hostile message makes slow (benchmarks/under_attack.py); past the limit, the first few
    are read off pydantic's own JSON rendering."""
    options: Any = {"include_url": False, "include_input": False, "include_context": False}
    if count <= _MAX_ERRORS:
        return exc.errors(**options)
    rendered = exc.json(**options)
    decoder = json.JSONDecoder()
    first: list[Any] = []
    position = 1  # after the opening bracket
    while len(first) < _MAX_ERRORS:
        error, position = decoder.raw_decode(rendered, position)
        first.append(error)
        position += 1  # the comma
    return first


def _cut(value: object) -> object:
    if isinstance(value, str) and len(value) > _MAX_ITEM:
        return value[:_MAX_ITEM] + "..."
    return value


def peek(data: str | bytes) -> tuple[str | int | None, object]:
    """The frame's `id` (when a str or an int) and `type`, without validating it: for error
    replies and per-type rate limits (a two-field model that skips the rest of the frame)."""
    try:
        envelope = _ENVELOPE.validate_json(data)
    except ValidationError:
        return None, None
    message_id = envelope.id
    if not isinstance(message_id, str | int) or isinstance(message_id, bool):
        message_id = None
    tag = envelope.type
    if not (isinstance(tag, str | int | float | bool) or tag is None):
        tag = type(tag).__name__
    return message_id, tag
