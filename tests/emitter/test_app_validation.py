"""`Emitter(..., app=...)`: each message is checked against the app's declared pushes by its
`type` before anything is published (the server API's validator, typed/router.py)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from websock_actors import App, BackplaneUnavailable, ConfigurationError
from websock_actors.emitter import Emitted, Emitter
from websock_actors.testing import ServerThread

from ..support.api_app import api_app
from ..support.users_app import Notice, member, notice

pytestmark = pytest.mark.timeout(30)

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens: a message that got to publishing raises


class Impostor(BaseModel):
    type: Literal["notice"] = "notice"
    text: str


def test_a_message_that_fails_the_apps_pushes_is_never_published() -> None:
    emitter = Emitter(NOWHERE, app=api_app(), timeout=0.5)
    with pytest.raises(ValidationError, match="text"):
        emitter.broadcast("r", {"type": "notice"})
    with pytest.raises(ValidationError, match="nope"):
        emitter.send_to_user("ann", {"type": "nope", "text": "x"})
    with pytest.raises(ValidationError):
        emitter.broadcast("r", Impostor(text="not the app's model"))
    with pytest.raises(BackplaneUnavailable):  # a valid one goes on to Redis (down here)
        emitter.broadcast("r", {"type": "notice", "text": "fits"})
    with pytest.raises(BackplaneUnavailable):
        emitter.broadcast("r", Notice(text="the app's own model"))


def test_a_module_path_names_the_app() -> None:
    emitter = Emitter(NOWHERE, app="examples.chat:app", timeout=0.5)
    with pytest.raises(ValidationError, match="ts"):
        emitter.broadcast("lobby", {"type": "message", "room": "lobby", "name": "ops", "text": "x"})
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        Emitter(NOWHERE, app="examples.chat")
    with pytest.raises(ValueError, match="no attribute"):
        Emitter(NOWHERE, app="examples.chat:nothing")


def test_an_app_without_pushes_or_not_typed_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no pushes"):
        Emitter(NOWHERE, app=App("bare"))
    with pytest.raises(ConfigurationError, match="typed App"):
        Emitter(NOWHERE, app=object())


def test_the_validated_message_is_what_is_sent() -> None:
    with ServerThread(api_app(), api_key="k") as server:
        ann = member(server, "ann")
        emitter = Emitter(f"http://127.0.0.1:{server.port}", api_key="k", app=api_app())
        done = emitter.send_to_user("ann", {"text": "typed", "type": "notice", "id": None})
        assert done == Emitted(deliveries=1)
        assert ann.recv_json(timeout=5) == {"type": "notice", "text": "typed"}  # as the model sends it
        assert emitter.send_to_user("ann", Notice(text="model")).deliveries == 1
        assert notice(ann) == "model"
        emitter.close()
        ann.close()
