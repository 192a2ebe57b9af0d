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

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ..errors import ConfigurationError, InvalidMessage

__all__ = ["Handler", "Route", "Router", "model_tag"]

Handler = Callable[..., Any]

_MAX_DETAIL = 200


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
        self._adapter = None
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
        adapter = self._adapter or self.build()
        try:
            return adapter.validate_json(data)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise self._explain(exc, data) from None

    def _explain(self, exc: ValidationError, data: str | bytes) -> InvalidMessage:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        kinds = {error["type"] for error in errors}
        message_id = _peek_id(data) if "json_invalid" not in kinds else None
        if "json_invalid" in kinds:
            return InvalidMessage("invalid_json", "the message is not valid JSON")
        if "union_tag_invalid" in kinds:
            tag = _peek_type(data)
            detail = f"no handler for type {tag!r}"[:_MAX_DETAIL]
            return InvalidMessage("unknown_type", detail, message_id=message_id)
        if "union_tag_not_found" in kinds:
            return InvalidMessage("unknown_type", "the message has no `type` field", message_id=message_id)
        if len(errors) == 1 and not errors[0]["loc"]:
            detail = "a message must be a JSON object"
            return InvalidMessage("validation_error", detail, message_id=message_id)
        listed = [
            {"loc": list(error["loc"][1:]), "msg": error["msg"][:_MAX_DETAIL], "type": error["type"]}
            for error in errors[:20]
        ]
        return InvalidMessage(
            "validation_error", f"{len(errors)} invalid field(s)", listed, message_id=message_id  # type: ignore[arg-type]
        )


class _NoMessage(BaseModel):
    type: Literal["\x00"]


def _parameters(handler: Handler) -> list[str]:
    code = getattr(handler, "__code__", None)
    if code is None:
        return []
    return list(code.co_varnames[: code.co_argcount])


def _peek(data: str | bytes) -> dict[str, Any] | None:
    """The frame as a dict, only on the error path (to echo `id` and name the bad `type`)."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _peek_id(data: str | bytes) -> str | int | None:
    value = (_peek(data) or {}).get("id")
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _peek_type(data: str | bytes) -> object:
    value = (_peek(data) or {}).get("type")
    return value if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
