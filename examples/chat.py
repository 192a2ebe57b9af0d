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
closing the connection leaves every room like "leave".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from websock_actors import App, Context, Message, MessageError

app = App("websock_actors chat", "1.0.0")
app.page("/", (Path(__file__).parent / "chat.html").read_bytes())

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
    first_time = ctx.join(msg.room)
    _names(ctx)[msg.room] = msg.name
    if first_time:
        ctx.broadcast(msg.room, MemberJoined(room=msg.room, name=msg.name), exclude_self=True)
    members = [member.state["names"][msg.room] for member in ctx.members(msg.room)]
    return Joined(room=msg.room, members=members)


@app.handler
def say(msg: Say, ctx: Context) -> Said | None:
    name = _require_member(ctx, msg.room)
    ctx.broadcast(msg.room, ChatMessage(room=msg.room, name=name, text=msg.text, ts=time.time()))
    return Said() if msg.id is not None else None


@app.handler
def leave(msg: Leave, ctx: Context) -> Left:
    name = _require_member(ctx, msg.room)
    ctx.leave(msg.room)
    ctx.broadcast(msg.room, MemberLeft(room=msg.room, name=name))
    return Left(room=msg.room)


@app.on_disconnect
def gone(ctx: Context) -> None:
    names = _names(ctx)
    for room in ctx.rooms:
        ctx.broadcast(room, MemberLeft(room=room, name=names[room]), exclude_self=True)
