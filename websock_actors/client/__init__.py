"""A WebSocket client on gevent, built on the same sans-I/O core as the server.

    from websock_actors.client import connect

    with connect("ws://127.0.0.1:8000/") as ws:
        ws.send("hello")                      # text frame; bytes go as a binary frame
        print(ws.recv(timeout=5))
        joined = ws.request({"type": "join", "room": "lobby", "name": "ann"})

    connect.py     connect(url, ...): the options, then the first opening
    connection.py  ClientConnection: send, recv, ping, close, reading by whoever waits
    endpoint.py    the URL, name resolution, TCP and TLS, Backoff
    requests.py    typed request-reply: ids, replies matched on the way in, error replies
"""

from ..errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    HandshakeRejected,
    RequestError,
    RequestTimeout,
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
    "HandshakeRejected",
    "RequestError",
    "RequestTimeout",
    "connect",
]
