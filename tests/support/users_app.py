"""An app whose clients are users: the tests of `send_to_user` and `disconnect_user`.

A client connects with `?user=NAME` (its identity; none: refused with 401); `tell` asks the
server to send a `notice` to another user through `ctx.send_to_user`.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

from websock_actors import App, AppRefusal, AuthRequest, ConnectionClosed, Context, Message, ResumePolicy
from websock_actors.client import ClientConnection, connect
from websock_actors.testing import ServerThread

__all__ = ["Notice", "Tell", "closed_with", "member", "notice", "users_app"]


class Notice(Message):
    type: Literal["notice"] = "notice"
    text: str


class Tell(Message):
    type: Literal["tell"] = "tell"
    to: str
    text: str


def users_app(resume: bool = True) -> App:
    """A fresh app (one per node); `resume`: with session resumption."""
    app = App("users", resume=ResumePolicy(window=60, grace=5) if resume else None)
    app.push(Notice)

    @app.authenticate
    def who(request: AuthRequest) -> str:
        user = request.query.get("user", [""])[0]
        if not user:
            raise AppRefusal(401, "no user")
        return user

    @app.handler
    def tell(msg: Tell, ctx: Context) -> None:
        ctx.send_to_user(msg.to, Notice(text=msg.text))

    return app


def member(server: ServerThread, name: str, room: str | None = None) -> ClientConnection:
    """A client of user `name`, its connect hooks done: it joined `room`, or (None) had a
    request answered."""
    ws = connect(f"{server.url}?user={name}")
    if room is not None:
        ws.request({"type": "join", "room": room})
    else:
        ws.request({"type": "tell", "to": "nobody", "text": "-"})
    return ws


def notice(ws: ClientConnection) -> Any:
    """The text of the next message, which must be a `notice`."""
    message = ws.recv_json(timeout=5)
    assert message["type"] == "notice", message
    return message["text"]


def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes `ws`: its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=5)
    return ws.close_code, ws.close_reason
