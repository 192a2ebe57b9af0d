"""The server: connection actors on gevent, the raw application interface, admission and stop.

    app.py        Application (what the server calls) and WebSocketApp (hooks by decorator)
    server.py     Server: accepts, admits or refuses, keeps the registry, stops gracefully
    connection.py Connection: the actor of one connection (mailbox, message loop, handshake)
    transport.py  the actor's socket I/O: non-blocking reads and writes, parking
    broadcast.py  a frame encoded once for many mailboxes
    keepalive.py  pings for quiet connections, 1011 for silent ones
    options.py    per-connection limits and policies
    tls.py        TLSConnection: TLS through the ssl module's SSLObject, in the actor
"""

from .app import Application, WebSocketApp
from .broadcast import BroadcastFrame, encode_broadcast
from .connection import Connection
from .options import ConnectionOptions, OverflowPolicy
from .server import Server, tls_context

__all__ = [
    "Application",
    "BroadcastFrame",
    "Connection",
    "ConnectionOptions",
    "OverflowPolicy",
    "Server",
    "WebSocketApp",
    "encode_broadcast",
    "tls_context",
]
