"""websock_actors: an actor-model WebSocket server on gevent greenlets.

Every connection is an actor that alone owns its socket and its sans-I/O codec. The
package never monkey-patches on import; only the command line does, and only when asked.

The layers, in order; a module imports only from its own layer and those listed above it
(tests/test_layers.py):

    errors.py    the one exception tree
    protocol/    sans-I/O RFC 6455 and 7692: frames, HTTP heads, handshake, state machine
    actors/      Actor and ActorRef, Supervisor with restart policy, offload
    server/      the connection actor, its transport, keepalive, broadcast, edge, Server
    typed/       pydantic messages, router, dispatch, context, rooms, resumption, App, schema
    scale/       the Redis backplane (rooms, presence, streams, sessions) and --workers
    client/      connect, ClientConnection, typed requests
    compat/      WebSock's API, WSGIMount
    contrib/     Locust's WebSocketUser
    testing/     TestClient, ServerThread, the pytest plugin
    emitter/     Emitter: push to rooms and users from any Python process (no gevent)
    compiled.py  which hot modules run compiled (setup.py's mypyc build), imported first
    cli/         the command line (`websock-actors`, also `python -m websock_actors`)

The names below are imported on first use (PEP 562), so `import websock_actors.protocol`
works where gevent and pydantic cannot be imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .compiled import use_sources_if_edited

use_sources_if_edited()  # before any hot module is imported

if TYPE_CHECKING:
    from .actors import Actor, ActorRef, RestartPolicy, Supervisor, offload
    from .compat import (
        FrameType,
        WebSocketInvalidDataFrame,
        WebSocketInvalidHandshake,
        WebSocketServer,
        WSGIMount,
    )
    from .emitter import Emitter
    from .errors import (
        ActorStopped,
        ApiRefusal,
        AppRefusal,
        BackplaneUnavailable,
        CloseCode,
        ConfigurationError,
        ConnectionClosed,
        ConnectionClosedError,
        ConnectionClosedOK,
        HandshakeError,
        InvalidMessage,
        LocalHandshakeRefusal,
        MailboxFull,
        MessageError,
        OffloadTimeout,
        RemoteHandshakeRefusal,
        RequestError,
        RequestTimeout,
        ServerUnreachable,
        WebSocketError,
    )
    from .protocol import DeflateOptions, Request, Response
    from .scale.redis_backplane import RedisBackplane
    from .server import (
        Application,
        Connection,
        EndpointOptions,
        HandshakeOptions,
        LimitOptions,
        ListenOptions,
        Server,
        TimeoutOptions,
        WebSocketApp,
        encode_broadcast,
        tls_context,
    )
    from .typed import (
        Ack,
        App,
        AuthRequest,
        Context,
        ErrorReply,
        LocalRooms,
        Message,
        RateLimit,
        ResumePolicy,
        Rooms,
    )

_HOMES = {
    ".actors": ("Actor", "ActorRef", "RestartPolicy", "Supervisor", "offload"),
    ".compat": (
        "FrameType",
        "WSGIMount",
        "WebSocketInvalidDataFrame",
        "WebSocketInvalidHandshake",
        "WebSocketServer",
    ),
    ".emitter": ("Emitter",),
    ".errors": (
        "ActorStopped",
        "ApiRefusal",
        "AppRefusal",
        "BackplaneUnavailable",
        "CloseCode",
        "ConfigurationError",
        "ConnectionClosed",
        "ConnectionClosedError",
        "ConnectionClosedOK",
        "HandshakeError",
        "InvalidMessage",
        "LocalHandshakeRefusal",
        "MailboxFull",
        "MessageError",
        "OffloadTimeout",
        "ProtocolError",
        "RemoteHandshakeRefusal",
        "RequestError",
        "RequestTimeout",
        "ServerUnreachable",
        "WebSocketError",
    ),
    ".protocol": ("DeflateOptions", "Request", "Response"),
    ".scale.redis_backplane": ("RedisBackplane",),
    ".server": (
        "Application",
        "Connection",
        "EndpointOptions",
        "HandshakeOptions",
        "LimitOptions",
        "ListenOptions",
        "Server",
        "TimeoutOptions",
        "WebSocketApp",
        "encode_broadcast",
        "tls_context",
    ),
    ".typed": (
        "Ack",
        "App",
        "AuthRequest",
        "Context",
        "ErrorReply",
        "LocalRooms",
        "Message",
        "RateLimit",
        "ResumePolicy",
        "Rooms",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
# Deprecated aliases of the exceptions (errors.DEPRECATED_NAMES), not imported to keep this light.
_DEPRECATED = frozenset({"HandshakeRefused", "HandshakeRejected", "Refuse"})

# ProtocolError stays importable from here (it was exported), but no user code receives
# one: the connection turns it into a close. It is the parent of WebSocketInvalidDataFrame.
__all__ = [
    "Ack",
    "Actor",
    "ActorRef",
    "ActorStopped",
    "ApiRefusal",
    "App",
    "AppRefusal",
    "Application",
    "AuthRequest",
    "BackplaneUnavailable",
    "CloseCode",
    "ConfigurationError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Context",
    "DeflateOptions",
    "Emitter",
    "EndpointOptions",
    "ErrorReply",
    "FrameType",
    "HandshakeError",
    "HandshakeOptions",
    "InvalidMessage",
    "LimitOptions",
    "ListenOptions",
    "LocalHandshakeRefusal",
    "LocalRooms",
    "MailboxFull",
    "Message",
    "MessageError",
    "OffloadTimeout",
    "RateLimit",
    "RedisBackplane",
    "RemoteHandshakeRefusal",
    "Request",
    "RequestError",
    "RequestTimeout",
    "Response",
    "RestartPolicy",
    "ResumePolicy",
    "Rooms",
    "Server",
    "ServerUnreachable",
    "Supervisor",
    "TimeoutOptions",
    "WSGIMount",
    "WebSocketApp",
    "WebSocketError",
    "WebSocketInvalidDataFrame",
    "WebSocketInvalidHandshake",
    "WebSocketServer",
    "encode_broadcast",
    "offload",
    "tls_context",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None and name in _DEPRECATED:
        from .errors import deprecated_name

        return deprecated_name(__name__, name)  # not cached: every use warns
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME_OF})
