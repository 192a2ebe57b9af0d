"""Typed applications: a pydantic model per JSON message `type`, validated, routed, answered.

    messages.py  the wire protocol's base models: Message, Ack, ErrorReply
    router.py    registration (type hints read once) and the one validator over all models
    context.py   Context: what a handler may do (reply, push, rooms, close)
    rooms.py     room membership, presence and fan-out, behind the Rooms interface
    app.py       App: the typed Application, where a handler is called
    auth.py      AuthRequest: what an `@app.authenticate` hook sees, before the upgrade
    ratelimit.py RateLimit: token buckets per connection, in total and per message type
    schema.py    JSON Schema and AsyncAPI documents of an app's messages
    resume.py    ResumePolicy and the resume protocol: sessions, grace, replay
    history.py   numbered broadcasts (seq, epoch) and the in-process history of each room
    sessions.py  dropped sessions kept for a resume (SessionStore, in process)
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
