"""websock_actors: an actor-model WebSocket server on gevent greenlets.

Every connection is an actor that alone owns its socket and its sans-I/O codec. The
package never monkey-patches on import; only the command line does, and only when asked.
"""

from .actor import Actor, ActorRef
from .app import Application, WebSocketApp
from .compat import FrameType, WebSocketInvalidDataFrame, WebSocketInvalidHandshake, WebSocketServer
from .connection import Connection
from .context import Context
from .errors import (
    ActorStopped,
    CloseCode,
    ConfigurationError,
    ConnectionClosed,
    HandshakeError,
    InvalidMessage,
    MailboxFull,
    MessageError,
    ProtocolError,
    WebSocketError,
)
from .messages import Ack, ErrorReply, Message
from .protocol.deflate import DeflateOptions
from .server import Server
from .supervisor import RestartPolicy, Supervisor
from .typed_app import App

__all__ = [
    "Ack",
    "Actor",
    "ActorRef",
    "ActorStopped",
    "App",
    "Application",
    "CloseCode",
    "ConfigurationError",
    "Connection",
    "ConnectionClosed",
    "Context",
    "DeflateOptions",
    "ErrorReply",
    "FrameType",
    "HandshakeError",
    "InvalidMessage",
    "MailboxFull",
    "Message",
    "MessageError",
    "ProtocolError",
    "RestartPolicy",
    "Server",
    "Supervisor",
    "WebSocketApp",
    "WebSocketError",
    "WebSocketInvalidDataFrame",
    "WebSocketInvalidHandshake",
    "WebSocketServer",
]
__version__ = "0.1.0"
