"""The app the browser client library's Node tests talk to (tests/test_js_client.py).

A client connects with `?token=NAME` (its identity; none: refused with 401), as the
library's `token` option sends it. Requests:

  {"type": "join", "room"}            -> {"type": "joined", "room"}
  {"type": "post", "room", "text"}    -> {"type": "posted"}; the room: {"type": "note", "text"}
  {"type": "echo", "value"}           -> {"type": "echoed", "value"}
  {"type": "fail"}                    -> an error reply, code "refused"
  {"type": "silent"}                  -> no reply at all
  {"type": "cut"}                     -> the server drops this TCP connection, no close frame
  {"type": "bye", "code"}             -> the server closes this connection with `code`
  {"type": "kick"}                    -> disconnect_user(this identity): closed with 4000

`python -m websock_actors run tests.support.js_app:app --redis URL` serves `app`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from websock_actors import App, AppRefusal, AuthRequest, Context, Message, MessageError, ResumePolicy

__all__ = ["app", "js_app"]


class Join(Message):
    type: Literal["join"]
    room: str


class Joined(Message):
    type: Literal["joined"] = "joined"
    room: str


class Post(Message):
    type: Literal["post"]
    room: str
    text: str


class Posted(Message):
    type: Literal["posted"] = "posted"


class Note(BaseModel):
    type: Literal["note"] = "note"
    text: str


class Echo(Message):
    type: Literal["echo"]
    value: int


class Echoed(Message):
    type: Literal["echoed"] = "echoed"
    value: int


class Fail(Message):
    type: Literal["fail"]


class Silent(Message):
    type: Literal["silent"]


class Cut(Message):
    type: Literal["cut"]


class Bye(Message):
    type: Literal["bye"]
    code: int = Field(ge=1000, le=4999)


class Kick(Message):
    type: Literal["kick"]


def js_app(window: float = 120.0) -> App:
    """A fresh app (one per server); `window`: seconds a dropped session can be resumed."""
    app = App("js client tests", resume=ResumePolicy(window=window, history=1000, grace=5))
    app.push(Note)

    @app.authenticate
    def who(request: AuthRequest) -> str:
        token = request.query.get("token", [""])[0]
        if not token:
            raise AppRefusal(401, "a ?token= is needed")
        return token

    @app.handler
    def join(msg: Join, ctx: Context) -> Joined:
        ctx.join(msg.room)
        return Joined(room=msg.room)

    @app.handler
    def post(msg: Post, ctx: Context) -> Posted:
        if not ctx.in_room(msg.room):
            raise MessageError("not_in_room", f"join {msg.room!r} first")
        ctx.broadcast(msg.room, Note(text=msg.text))
        return Posted()

    @app.handler
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed(value=msg.value)

    @app.handler
    def fail(msg: Fail, ctx: Context) -> None:
        ctx.error("refused", "as asked", errors=[{"loc": ["value"], "msg": "not today"}])

    @app.handler
    def silent(msg: Silent, ctx: Context) -> None:
        ctx.replied = True  # as a handler that answers itself later would: no `ack`, no reply

    @app.handler
    def cut(msg: Cut, ctx: Context) -> None:
        ctx.conn.abort()  # TCP dropped: 1006 for the client, the session waits to be resumed

    @app.handler
    def bye(msg: Bye, ctx: Context) -> None:
        ctx.close(msg.code, "as asked")

    @app.handler
    def kick(msg: Kick, ctx: Context) -> None:
        app.disconnect_user(ctx.identity)

    return app


app = js_app()
