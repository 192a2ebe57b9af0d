"""Typed applications: a pydantic model per JSON message `type`, validated, routed, answered.

    messages.py    the wire protocol's base models: Message, Ack, ErrorReply
    router.py      registration (type hints read once) and the one validator over all models
    dispatch.py    Dispatcher: the message path (rate limit, decode, route, run, reply)
    context.py     Context: what a handler may do (reply, push, rooms, close)
    app.py         App: registration and lifecycle; the one place a broadcast is sent from
    rooms.py       Rooms: membership, presence and fan-out of bytes (LocalRooms in process)
    streams.py     what numbered broadcasting is made of: Position, RoomStream
    numbered.py    NumberedBroadcasts: seq, epoch, catch-up, replay (resumption on)
    history.py     LocalStream: the in-process history of each room
    resume.py      ResumePolicy and the resume protocol's messages
    resumption.py  Resumption: the sessions of one App
    sessions.py    session records and where they are kept (SessionStore, in process)
    auth.py        AuthRequest: what an `@app.authenticate` hook sees, before the upgrade
    ratelimit.py   RateLimit: token buckets per connection, in total and per message type
    schema.py      JSON Schema and AsyncAPI documents of an app's messages
    room_use.py    whether an app uses rooms (the CLI's check for --workers without --redis)
"""

from .app import App
from .auth import AuthRequest
from .context import Context
from .messages import Ack, ErrorReply, Message, MessageId
from .ratelimit import RateLimit
from .resume import ResumePolicy
from .rooms import LocalRooms, LostMember, Rooms
from .router import Route, Router

__all__ = [
    "Ack",
    "App",
    "AuthRequest",
    "Context",
    "ErrorReply",
    "LocalRooms",
    "LostMember",
    "Message",
    "MessageId",
    "RateLimit",
    "ResumePolicy",
    "Rooms",
    "Route",
    "Router",
]
