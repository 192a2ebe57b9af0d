"""The users app (tests/support/users_app.py) with rooms: the tests of the server API.

`join` puts the client in a room, shown in the room's presence as its user name.
"""

from __future__ import annotations

from typing import Literal

from websock_actors import App, Context, Message

from .users_app import users_app

__all__ = ["Join", "api_app"]


class Join(Message):
    type: Literal["join"] = "join"
    room: str


def api_app(resume: bool = False) -> App:
    """A fresh users app whose clients may join rooms."""
    app = users_app(resume=resume)

    @app.handler
    def join(msg: Join, ctx: Context) -> None:
        ctx.join(msg.room, presence=ctx.identity)

    return app
