"""The typed App's default path with dormant actors (server/dormancy.py): an idle connection
holds no greenlet, and the shared runner serves it as before once it speaks again, a handler
that waits included."""

from __future__ import annotations

import contextlib
import json

import pytest
from websockets.sync.client import connect

from ..support.dormancy import live_greenlets, sweep_idle
from .test_shared_runner import ask, make_app

pytestmark = pytest.mark.timeout(60)


def test_idle_typed_connections_hold_no_greenlet_and_answer_after_a_sweep(serve) -> None:
    app, _seen = make_app()
    server = serve(app)
    before = live_greenlets(server)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.url)) for _ in range(20)]
        assert ask(clients[0], {"type": "echo", "id": 0, "text": "first"})["text"] == "first"
        assert live_greenlets(server) - before < 5
        sweep_idle(server)
        held, other = clients[0], clients[1]
        held.send(json.dumps({"type": "hold", "id": "h"}))
        held.send(json.dumps({"type": "echo", "id": "after", "text": "2"}))  # waits behind "hold"
        for i in range(5):  # the others are served while the handler waits
            assert ask(other, {"type": "echo", "id": i, "text": "o"})["id"] == i
        sweep_idle(server)  # the held connection is busy: it stays as it is
        assert ask(other, {"type": "release", "id": "r"})["text"] == "released"
        assert json.loads(held.recv(timeout=10)) == {"type": "echoed", "id": "h", "text": "held"}
        assert json.loads(held.recv(timeout=10))["id"] == "after"
        for i, ws in enumerate(clients):
            assert ask(ws, {"type": "echo", "id": i, "text": "x"}) == {"type": "echoed", "id": i, "text": "x"}
        assert live_greenlets(server) - before < 5
