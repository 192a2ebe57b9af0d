"""Client steps of the chat demo (examples/chat.py) that several test files take.

`join`, `say` and `resume` send the demo's messages; `read_until` and `text_is` read up to a
given message; `position` is the (seq, epoch) a resume names; `wait_kept` waits until a
server keeps a dropped session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from websock_actors.client import ClientConnection
from websock_actors.testing import ServerThread

__all__ = ["both_join", "join", "position", "read_until", "resume", "say", "text_is", "wait_kept"]


def join(ws: ClientConnection, room: str, name: str) -> dict[str, Any]:
    return ws.request({"type": "join", "room": room, "name": name})


def both_join(ann: ClientConnection, bob: ClientConnection, room: str = "r") -> str:
    """ann, then bob, join `room`; ann's session token (the one a resume names)."""
    join(ann, room, "ann")
    join(bob, room, "bob")
    assert ann.session is not None
    return ann.session


def say(ws: ClientConnection, room: str, text: str) -> None:
    ws.request({"type": "say", "room": room, "text": text})


def read_until(
    ws: ClientConnection, last: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Every message read up to and including the first for which `last` is true."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while True:
        message: dict[str, Any] = ws.recv_json(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(message)
        if last(message):
            return seen


def text_is(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("type") == "message" and m.get("text") == text


def resume(
    ws: ClientConnection, session: str, rooms: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    return ws.request({"type": "resume", "session": session, "rooms": rooms or {}})


def position(message: dict[str, Any]) -> dict[str, Any]:
    return {"seq": message["seq"], "epoch": message["epoch"]}


def wait_kept(server: ServerThread, count: int = 1, timeout: float = 5.0) -> None:
    """Until the server keeps `count` dropped sessions (it saw the connection end)."""
    deadline = time.monotonic() + timeout
    resumption = server.app.resumption  # type: ignore[attr-defined]
    while server.call(lambda: len(resumption.graced)) < count:
        assert time.monotonic() < deadline, "the server did not keep the session"
        time.sleep(0.02)
