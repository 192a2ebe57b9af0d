"""A message's JSON text, as the server sends it, and the optional check against an app's
declared pushes (`Emitter(..., app="module:app")`).

Without an app: a dict with a string "type" goes as it is, a pydantic model through
typed/messages.py's `to_json` (the nodes' own: no `id` when it is None). With an app: each
message, dict or model, is validated by its `type` against the app's pushes (the server
API's validator, typed/router.py push_adapter) and the validated model is sent; one that
fails raises pydantic's ValidationError and nothing is published.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from pydantic import BaseModel, TypeAdapter

from ..errors import ConfigurationError
from ..typed.messages import to_json
from ..typed.router import push_adapter

__all__ = ["Encoder", "load_app"]


class Encoder:
    """Turns messages into their JSON text, validated against `app`'s pushes when given."""

    def __init__(self, app: Any = None) -> None:
        self.app = load_app(app) if isinstance(app, str) else app
        self._pushes: TypeAdapter[Any] | None = None
        if self.app is not None:
            pushes = getattr(self.app, "pushes", None)
            if pushes is None:
                raise ConfigurationError(f"app= needs a typed App, not {type(self.app).__name__}")
            self._pushes = push_adapter(tuple(pushes))
            if self._pushes is None:
                raise ConfigurationError("app= names an App that declares no pushes (@app.push)")

    def encode(self, message: Any) -> tuple[str, bool]:
        """The message's JSON text, and whether it has a "room" of its own."""
        if self._pushes is not None:
            message = self._pushes.validate_python(message)  # ValidationError: nothing sent
        if isinstance(message, dict):
            if not isinstance(message.get("type"), str):
                raise ValueError('a message given as a dict needs a "type" (a string)')
            return json.dumps(message, separators=(",", ":"), ensure_ascii=False), "room" in message
        if not isinstance(message, BaseModel):
            raise TypeError(f"a message is a pydantic model or a dict, not {type(message).__name__}")
        return to_json(message), "room" in type(message).__pydantic_fields__


def load_app(spec: str) -> Any:
    """The object `MODULE:ATTR` names (importing the module: a typed App's imports gevent,
    without patching anything)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"app= expects 'MODULE:ATTR', got {spec!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{module_name!r} has no attribute {attr!r}") from None
