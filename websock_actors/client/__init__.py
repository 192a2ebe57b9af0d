"""A WebSocket client on gevent, built on the same sans-I/O core as the server.

    from websock_actors.client import connect

    with connect("ws://127.0.0.1:8000/") as ws:
        ws.send("hello")                      # text frame; bytes go as a binary frame
        print(ws.recv(timeout=5))
        joined = ws.request({"type": "join", "room": "lobby", "name": "ann"})

    connect.py     connect(url, ...): the options, then the first opening
    connection.py  ClientConnection: send, recv, request, ping, close, reopening and resuming
    transport.py   ClientTransport: the socket read by whoever waits (or, idle, by itself), the writes
    endpoint.py    the URL, name resolution, TCP and TLS, Backoff
    requests.py    typed request-reply: ids, replies matched on the way in, error replies
"""

from typing import TYPE_CHECKING, Any

from ..errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    RemoteHandshakeRefusal,
    RequestError,
    RequestTimeout,
    deprecated_name,
)
from .connect import connect
from .connection import RECONNECT_CODES, ClientConnection
from .endpoint import Backoff

__all__ = [
    "RECONNECT_CODES",
    "Backoff",
    "ClientConnection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "RemoteHandshakeRefusal",
    "RequestError",
    "RequestTimeout",
    "connect",
]

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name from here

    def __getattr__(name: str) -> Any:
        if name == "HandshakeRejected":
            return deprecated_name(__name__, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
