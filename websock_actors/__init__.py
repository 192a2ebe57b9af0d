"""websock_actors: an actor-model WebSocket server on gevent greenlets.

Every connection is an actor that alone owns its socket and its sans-I/O codec. The
package never monkey-patches on import; only the command line does, and only when asked.
"""

from .app import Application, WebSocketApp
from .compat import FrameType, WebSocketInvalidDataFrame, WebSocketInvalidHandshake, WebSocketServer
from .connection import Connection
from .errors import (
    CloseCode,
    ConfigurationError,
    ConnectionClosed,
    HandshakeError,
    MailboxFull,
    ProtocolError,
    WebSocketError,
)
from .server import Server

__all__ = [
    "Application",
    "CloseCode",
    "ConfigurationError",
    "Connection",
    "ConnectionClosed",
    "FrameType",
    "HandshakeError",
    "MailboxFull",
    "ProtocolError",
    "Server",
    "WebSocketApp",
    "WebSocketError",
    "WebSocketInvalidDataFrame",
    "WebSocketInvalidHandshake",
    "WebSocketServer",
]
__version__ = "0.1.0"
