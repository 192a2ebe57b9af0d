"""An app whose clients are users: the tests of `send_to_user` and `disconnect_user`.

A client connects with `?user=NAME` (its identity; none: refused with 401); `tell` asks the
server to send a `notice` to another user through `ctx.send_to_user`.
"""

from __future__ import annotations

from typing import Literal

from websock_actors import App, AppRefusal, AuthRequest, Context, Message, ResumePolicy

__all__ = ["Notice", "Tell", "users_app"]


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
