"""Typed applications: a pydantic model per JSON message `type`, validated, routed, answered.

    messages.py    the wire protocol's base models (Message, Ack, ErrorReply), the request-id stamp
    router.py      registration (type hints read once) and the one validator over all models
    app.py         App: registration and lifecycle (what the server calls)
    dispatch.py    Dispatcher: the message path (rate limit, decode, route, run, reply)
    context.py     Context: what a handler may do (reply, push, rooms, close), one per message
    services.py    HandlerServices: what the Contexts share (rooms, the one broadcast, error counts)
    members.py     MemberHooks: on_connect, on_disconnect, on_member_lost, on_resume
    users.py       Users: each identity's connections, send_to_user and disconnect_user
    api.py         ServerApi: the server API under /_api/ (broadcast, users, presence over HTTP)
    pages.py       HttpSide: the app's HTTP pages and the authentication hook
    auth.py        AuthRequest: what an `@app.authenticate` hook sees, before the upgrade
    ratelimit.py   RateLimit: token buckets per connection, in total and per message type
    metrics.py     app_metrics: the app's figures for /metrics and the status page
    schema.py      JSON Schema and AsyncAPI documents of an app's messages
    typescript.py  TypeScript types of an app's messages, and the reply of each request
    rooms.py       Rooms: membership, presence and fan-out of bytes (LocalRooms in process)
    streams.py     what numbered broadcasting is made of: Position, RoomStream
    numbered.py    NumberedBroadcasts: seq, epoch, catch-up, replay (resumption on)
    history.py     LocalStream: the in-process history of each room; stamp_head
    resume.py      ResumePolicy and the resume protocol's messages
    resumption.py  Resumption: the sessions of one App (open, resumable close, resume)
    graces.py      Graces: closed sessions waiting for their resume, and their timers
    reattach.py    reattach: a resumed session back in its rooms, with what it missed
    sessions.py    session records and where they are kept (SessionStore, in process)

The names below are imported on first use (PEP 562), so that the gevent-free modules
(messages.py, router.py, ... tests/test_layers.py) import without gevent: the Emitter
encodes with messages.py's `to_json` in a process that has none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .auth import AuthRequest
    from .context import Context
    from .messages import Ack, ErrorReply, Message, MessageId
    from .ratelimit import RateLimit
    from .resume import ResumePolicy
    from .rooms import LocalRooms, LostMember, Rooms
    from .router import Route, Router

_HOMES = {
    ".app": ("App",),
    ".auth": ("AuthRequest",),
    ".context": ("Context",),
    ".messages": ("Ack", "ErrorReply", "Message", "MessageId"),
    ".ratelimit": ("RateLimit",),
    ".resume": ("ResumePolicy",),
    ".rooms": ("LocalRooms", "LostMember", "Rooms"),
    ".router": ("Route", "Router"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME_OF})
