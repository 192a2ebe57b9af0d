"""Registration mistakes fail at start-up with a clear message, not at the first message."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from websock_actors import App, ConfigurationError, Context, Message


class Ping(Message):
    type: Literal["ping"]


class Pong(Message):
    type: Literal["pong"] = "pong"


class Untagged(Message):
    text: str


class OpenTag(Message):
    type: str


class NoId(BaseModel):
    type: Literal["noid"] = "noid"


def test_duplicate_tag() -> None:
    app = App()

    @app.handler
    def first(msg: Ping, ctx: Context) -> Pong:
        return Pong()

    with pytest.raises(ConfigurationError, match=r"'ping' is handled twice: by first\(\) and second\(\)"):

        @app.handler
        def second(msg: Ping, ctx: Context) -> Pong:
            return Pong()


def test_missing_message_hint() -> None:
    with pytest.raises(ConfigurationError, match="first parameter needs a type hint"):
        App().add(lambda msg, ctx: None)


def test_missing_return_hint() -> None:
    def handler(msg: Ping, ctx: Context):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ConfigurationError, match="needs a return type hint"):
        App().add(handler)


@pytest.mark.parametrize("model", [Untagged, OpenTag])
def test_model_without_a_literal_tag(model: type[Message]) -> None:
    def handler(msg, ctx):  # type: ignore[no-untyped-def]
        return None

    handler.__annotations__ = {"msg": model, "ctx": Context, "return": None}
    with pytest.raises(ConfigurationError, match=r"needs a `type: Literal\[\"...\"\]` field"):
        App().add(handler)


def test_reply_model_without_id() -> None:
    def handler(msg: Ping, ctx: Context) -> NoId:
        return NoId()

    with pytest.raises(ConfigurationError, match="needs an `id` field"):
        App().add(handler)


def test_bad_return_hint() -> None:
    def handler(msg: Ping, ctx: Context) -> int:
        return 1

    with pytest.raises(ConfigurationError, match="must return a pydantic model"):
        App().add(handler)


def test_app_without_handlers_fails_at_start() -> None:
    with pytest.raises(ConfigurationError, match="no message handlers"):
        App().handle_start()
