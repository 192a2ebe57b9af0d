"""The chat demo: rooms, typed messages, and a page at GET / on the same port.

    websock-actors run examples.chat:app --port 8000      # then open http://127.0.0.1:8000/

Protocol (JSON text frames):
  {"type": "join", "id"?, "room", "name"}  -> {"type": "joined", "id", "room", "members"}
                                             others: {"type": "member_joined", "room", "name"}
  {"type": "say", "id"?, "room", "text"}   -> everyone in the room, sender included:
                                             {"type": "message", "room", "name", "text", "ts"}
                                             the sender, when it sent an id: {"type": "said", "id"}
  {"type": "leave", "id"?, "room"}         -> {"type": "left", "id", "room"}
                                             others: {"type": "member_left", "room", "name"}
Saying to or leaving a room one has not joined gets an error with code "not_in_room";
closing the connection leaves every room like "leave". With `--redis` (several processes or
hosts), `members` lists the room's members on every node, and the members of a node that
died are reported as left (member_left) by a surviving node.

Rate limits: 50 messages a second per client (100 at once), and `say` 5 a second (20 at
once); beyond them the answer is an error with code "rate_limited" and `retry_after_ms`,
and after 200 refused `say` in a row the connection is closed with 1008. A client is its
token's name in token mode, else its address: reconnecting does not refill its buckets.
Joins: the App's default, 5 a second (100 at once).

Token mode: with `CHAT_TOKENS=ann:s3cret,bob:hunter2` in the environment (read at import), a
connection must carry `?token=<token>` (HTTP 401 otherwise), and its name in every room is
the token's name, whatever `join` says.
"""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from websock_actors import (
    App,
    AppRefusal,
    AuthRequest,
    Context,
    Message,
    MessageError,
    RateLimit,
    ResumePolicy,
)

# Resumption: a dropped client resumes within 2 minutes with its rooms and the messages it
# missed (the last 1,000 per room); the room hears nothing of a drop shorter than 10 s.
app = App(
    "websock_actors chat",
    "1.0.0",
    rate_limit=RateLimit(rate=50, burst=100),
    resume=ResumePolicy(window=120, history=1000, grace=10),
)
app.page("/", (Path(__file__).parent / "chat.html").read_bytes())


def _tokens(spec: str) -> dict[str, str]:
    """`name1:token1,name2:token2` -> {token: name}."""
    tokens: dict[str, str] = {}
    for entry in spec.split(","):
        name, sep, token = entry.strip().partition(":")
        if sep and name and token:
            tokens[token] = name
    return tokens


TOKENS = _tokens(os.environ.get("CHAT_TOKENS", ""))

if TOKENS:

    @app.authenticate
    def check_token(request: AuthRequest) -> str:
        given = request.query.get("token", [""])[0].encode()
        for token, name in TOKENS.items():
            if hmac.compare_digest(given, token.encode()):
                return name  # the connection's chat name: ctx.identity
        raise AppRefusal(401, "a valid ?token= is needed")

Room = Field(min_length=1, max_length=64)


class Join(Message):
    type: Literal["join"]
    room: str = Room
    name: str = Field(min_length=1, max_length=32)


class Joined(Message):
    type: Literal["joined"] = "joined"
    room: str
    members: list[str]


class Say(Message):
    type: Literal["say"]
    room: str = Room
    text: str = Field(min_length=1, max_length=2000)


class Said(Message):
    type: Literal["said"] = "said"


class Leave(Message):
    type: Literal["leave"]
    room: str = Room


class Left(Message):
    type: Literal["left"] = "left"
    room: str


@app.push
class MemberJoined(BaseModel):
    type: Literal["member_joined"] = "member_joined"
    room: str
    name: str


@app.push
class MemberLeft(BaseModel):
    type: Literal["member_left"] = "member_left"
    room: str
    name: str


@app.push
class ChatMessage(BaseModel):
    type: Literal["message"] = "message"
    room: str
    name: str
    text: str
    ts: float


def _names(ctx: Context) -> dict[str, str]:
    """This connection's name in each room it joined."""
    names: dict[str, str] = ctx.state.setdefault("names", {})
    return names


def _require_member(ctx: Context, room: str) -> str:
    if not ctx.in_room(room):
        raise MessageError("not_in_room", f"join {room!r} first")
    return _names(ctx)[room]


@app.handler
def join(msg: Join, ctx: Context) -> Joined:
    name: str = ctx.identity if ctx.identity is not None else msg.name  # token mode: the token's name
    first_time = ctx.join(msg.room, presence=name)  # the name every member (on any node) sees
    _names(ctx)[msg.room] = name
    if first_time:
        ctx.broadcast(msg.room, MemberJoined(room=msg.room, name=name), exclude_self=True)
    return Joined(room=msg.room, members=ctx.presence(msg.room))


@app.handler(rate_limit=RateLimit(rate=5, burst=20, close_after=200))
def say(msg: Say, ctx: Context) -> Said | None:
    name = _require_member(ctx, msg.room)
    ctx.broadcast(msg.room, ChatMessage(room=msg.room, name=name, text=msg.text, ts=time.time()))
    return Said() if msg.id is not None else None


@app.handler
def leave(msg: Leave, ctx: Context) -> Left:
    name = _require_member(ctx, msg.room)
    ctx.leave(msg.room)
    del _names(ctx)[msg.room]  # the session keeps only the rooms the member is in
    ctx.broadcast(msg.room, MemberLeft(room=msg.room, name=name))
    return Left(room=msg.room)


@app.on_disconnect
def gone(ctx: Context) -> None:
    names = _names(ctx)
    for room in ctx.rooms:
        ctx.broadcast(room, MemberLeft(room=room, name=names[room]), exclude_self=True)


@app.on_resume
def back(ctx: Context, rooms: set[str]) -> None:
    """Resumed after its grace: the rooms heard it left, so they hear it is back."""
    names = _names(ctx)
    for room in rooms:
        ctx.broadcast(room, MemberJoined(room=room, name=names[room]), exclude_self=True)


@app.on_member_lost
def lost(room: str, name: str) -> MemberLeft:
    """A member of a server process that died (with --redis): the others hear it left."""
    return MemberLeft(room=room, name=name)
