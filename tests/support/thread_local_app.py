"""A raw app in the style of legacy code written for a thread per client: `on_connect` keeps
the client's name in a `threading.local`, and `on_message` answers with what it finds there,
beside where the server runs its handlers (`shared_runner`) and whether idle actors give up
their greenlets (`dormant_when_idle`). tests/cli/test_legacy.py serves it with and without
monkey-patching."""

from __future__ import annotations

import json
import threading

from websock_actors import Connection, WebSocketApp

app = WebSocketApp()
local = threading.local()


@app.on_connect
def remember(conn: Connection) -> None:
    local.name = f"client-{conn.id}"


@app.on_message
def answer(conn: Connection, message: str | bytes) -> None:
    found = getattr(local, "name", None)
    conn.send(json.dumps({
        "name": found, "mine": found == f"client-{conn.id}", "runner": app.shared_runner,
        "dormant_when_idle": conn.options.dormant_when_idle,
    }))  # fmt: skip
