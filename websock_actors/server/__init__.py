"""The server: connection actors on gevent, the raw application interface, admission and stop.

    app.py            Application (what the server calls) and WebSocketApp (hooks by decorator)
    server.py         Server: accepts, admits or refuses, keeps the registry, stops gracefully
    acceptor.py       the accept loop: admission before any byte is read, out of descriptors
    admission.py      Admission: handshake slots and per-IP caps counted at accept time
    server_options.py the option groups Server is configured with (limits, timeouts, ...)
    endpoints.py      the router of the server's own HTTP endpoints (reserved paths)
    health.py         GET /healthz and /readyz
    metrics.py        the counters of the hot path and their Prometheus exposition
    server_metrics.py a server's figures: gathered, summed over workers, served on a port
    status_page.py    the live status page at /_status and its WebSocket
    client_js.py      GET /_wsa/client.js: the browser client library, gzipped, with an ETag
    edge.py           a client's address: trusted proxies and the per-IP caps
    connection.py     Connection: the actor of one connection (its run, its message loop)
    opening.py        the opening handshake a Connection drives, within its deadline
    inline.py         delivery to the app, and the reader that answers in the readiness callback
    runner.py         the shared runner: one greenlet answers every ready connection of a turn
    dormancy.py       idle actors without a greenlet: the watcher revives them; the idle sweep
    mailbox.py        the actor's outgoing mailbox and its flush
    transport.py      the actor's socket I/O: non-blocking reads and writes, parking
    tls.py            TLSConnection: TLS through the ssl module's SSLObject, in the actor
    broadcast.py      a frame encoded once for many mailboxes
    keepalive.py      pings for quiet connections, 1011 for silent ones
    options.py        per-connection limits and policies
    logs.py           the server's log lines as JSON, secrets masked
    systemd_notify.py sd_notify: READY=1 once listening, RELOADING=1, STOPPING=1 to systemd
"""

from .app import Application, WebSocketApp
from .broadcast import BroadcastFrame, encode_broadcast
from .connection import Connection
from .options import ConnectionOptions, OverflowPolicy
from .server import Server, tls_context
from .server_options import EndpointOptions, HandshakeOptions, LimitOptions, ListenOptions, TimeoutOptions

__all__ = [
    "Application",
    "BroadcastFrame",
    "Connection",
    "ConnectionOptions",
    "EndpointOptions",
    "HandshakeOptions",
    "LimitOptions",
    "ListenOptions",
    "OverflowPolicy",
    "Server",
    "TimeoutOptions",
    "WebSocketApp",
    "encode_broadcast",
    "tls_context",
]
