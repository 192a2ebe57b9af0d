"""Typed applications: a pydantic model per JSON message `type`, validated, routed, answered.

    messages.py  the wire protocol's base models: Message, Ack, ErrorReply
    router.py    registration (type hints read once) and the one validator over all models
    context.py   Context: what a handler may do (reply, push, rooms, close)
    rooms.py     room membership and fan-out, behind the Rooms interface
    app.py       App: the typed Application, where a handler is called
    schema.py    JSON Schema and AsyncAPI documents of an app's messages
"""

from .app import App
from .context import Context
from .messages import Ack, ErrorReply, Message, MessageId
from .rooms import LocalRooms, Rooms
from .router import Route, Router

__all__ = [
    "Ack",
    "App",
    "Context",
    "ErrorReply",
    "LocalRooms",
    "Message",
    "MessageId",
    "Rooms",
    "Route",
    "Router",
]
