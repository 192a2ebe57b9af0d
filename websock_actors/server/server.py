"""The WebSocket server: gevent's StreamServer accepting connections, one actor each.

The server admits or refuses connections (capacity, the `on_request` hook), keeps the
registry of open connections, runs keepalive over them, and shuts them all down in order
on `stop`: stop accepting, close every connection with 1001 after what its mailbox holds,
wait up to a timeout, then drop the rest. Its options come in groups (server_options.py),
its own HTTP endpoints are routed by endpoints.py, its figures gathered by server_metrics.py,
its handshake slots and per-IP caps counted at accept by admission.py.
"""

from __future__ import annotations

import _socket
import errno
import logging
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any, cast

import gevent
import gevent.event
import gevent.socket
from gevent.server import StreamServer

from ..errors import CloseCode, ConfigurationError
from ..protocol.deflate import CompressorPool
from ..protocol.http import Response, error_response
from .acceptor import Acceptor, check_open_files
from .admission import Admission
from .app import Application
from .broadcast import encode_broadcast
from .connection import Connection
from .dormancy import IdleSweep
from .edge import TrustedProxies
from .endpoints import app_api, builtin_router
from .keepalive import Keepalive
from .metrics import Snapshot
from .server_metrics import ServerMetrics
from .server_options import (
    GROUPS,
    EndpointOptions,
    HandshakeOptions,
    LimitOptions,
    ListenOptions,
    TimeoutOptions,
    connection_options,
    group_flat_keywords,
)
from .status_page import StatusPage
from .tls import TLSConnection

__all__ = ["Server", "bind_listener", "tls_context"]

RESTART_HANDSHAKE_WAIT = 2.0  # seconds a restart's drain waits for the handshakes under way

log = logging.getLogger("websock_actors")


class Server:
    """Serve `app` on `host:port` (port 0 picks a free port; see `address`).

    Args:
        app: the application the server calls (a raw `Application`, or a typed `App`).
        host: the address to bind.
        port: the port to bind (0: a free one).
        limits: what the server admits and buffers (`LimitOptions`).
        timeouts: keepalive pings and the handshake and close deadlines (`TimeoutOptions`).
        handshake: origins, subprotocols, compression and the `on_request` hook
            (`HandshakeOptions`).
        listen: the listening socket: backlog, SO_REUSEPORT, an inherited listener, TLS,
            trusted proxies (`ListenOptions`).
        endpoints: the server's own HTTP endpoints (health, metrics, status page, API: `EndpointOptions`).
        backplane: a `RedisBackplane`, say, for a typed App's rooms (as
            `App(backplane=...)`); other applications have no rooms to share.
        **flat: the groups' fields as keywords (`max_connections=...`): deprecated, each
            warns and names its group. `Server.from_keywords` takes them without a warning.
    """

    def __init__(
        self,
        app: Application,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        limits: LimitOptions | None = None,
        timeouts: TimeoutOptions | None = None,
        handshake: HandshakeOptions | None = None,
        listen: ListenOptions | None = None,
        endpoints: EndpointOptions | None = None,
        backplane: Any = None,
        **flat: Any,
    ) -> None:
        if flat:
            given = (limits, timeouts, handshake, listen, endpoints)
            groups = group_flat_keywords(flat, dict(zip(GROUPS, given, strict=True)), warn=True)
            limits, timeouts, handshake, listen, endpoints = (groups.get(name) for name in GROUPS)
        self.limits = limits = limits or LimitOptions()
        self.timeouts = timeouts = timeouts or TimeoutOptions()
        self.handshake = handshake = handshake or HandshakeOptions()
        self.listen = listen = listen or ListenOptions()
        self.endpoints = endpoints = endpoints or EndpointOptions()
        if backplane is not None:
            use_backplane = getattr(app, "use_backplane", None)
            if use_backplane is None:
                raise ConfigurationError("a backplane shares the rooms of a typed App; this app has none")
            use_backplane(backplane)
        self.app = app
        self.host = host
        self.port = port
        self.max_connections = limits.max_connections
        self.ssl_context = listen.ssl_context
        self.on_request = handshake.on_request
        self.connections: dict[int, Connection] = {}  # admitted connections, by id
        self._actors: set[Connection] = set()  # every connection, handshaking ones too
        self.options = connection_options(limits, timeouts, handshake, app.max_message_size)
        self._metrics = ServerMetrics(self.options.stats, self.connections, app, endpoints.metrics_dir)
        self.status_page: StatusPage | None = None
        if endpoints.status_token is not None:
            try:
                self.status_page = StatusPage(
                    endpoints.status_token, self.metrics_total, app, summed=endpoints.metrics_dir is not None
                )
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
        exposition, api = self._metrics.exposition, app_api(app, endpoints)
        self._router = builtin_router(endpoints, self.not_ready, exposition, self.status_page, api)
        proxies = listen.forwarded_allow_ips
        self.trusted_proxies = None
        if proxies:
            bounds = listen.forwarded_max_bytes, listen.forwarded_max_entries
            self.trusted_proxies = TrustedProxies(proxies, *bounds, self.options.stats.forwarded_invalid)
        self.admission = Admission(limits, self.trusted_proxies, self.options.stats)  # at accept
        self._stream: StreamServer | None = None
        interval, timeout = timeouts.ping_interval, timeouts.ping_timeout
        self._keepalive = Keepalive(self.connections.values, interval, timeout) if interval else None
        self._idle_sweep = IdleSweep(self.connections.values)  # idle actors give up their greenlet
        self._stopping = False
        self._finishing_handshakes = False  # a restart's drain admits the handshakes under way
        self._hooks: tuple[Any, ...] | None = None  # the connections' callbacks, bound once
        self._stopped = gevent.event.Event()
        self._all_gone = gevent.event.Event()  # set whenever no connection is left
        # One read buffer for all this server's connections (they share one hub).
        self._recv_buffer = memoryview(bytearray(self.options.read_size))
        # The permessage-deflate compressors shared by this server's connections.
        deflate = self.options.handshake.compression
        self._compressors = None if deflate is None else CompressorPool(deflate)

    @classmethod
    def from_keywords(
        cls, app: Application, host: str = "127.0.0.1", port: int = 8000, **keywords: Any
    ) -> Server:
        """A Server from the groups' fields as flat keywords (`max_connections=...`), mixed
        with groups and `backplane` if need be, without a deprecation warning: the form of
        the testing helpers (`websock_actors.testing`), whose callers list a few options."""
        groups = {name: keywords.pop(name) for name in GROUPS if name in keywords}
        backplane = keywords.pop("backplane", None)
        return cls(app, host, port, backplane=backplane, **group_flat_keywords(keywords, groups))

    # -- lifecycle -----------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port), valid once started."""
        if self._stream is None:
            return self.host, self.port
        return str(self._stream.server_host), int(self._stream.server_port or 0)

    def start(self) -> None:
        """Bind, listen and start accepting in the background of the current hub."""
        if self._stream is not None:
            return
        listener = self.listen.listener
        if listener is None:
            listener = bind_listener(self.host, self.port, self.listen)
        listener.setblocking(False)  # an inherited socket may be blocking: the acceptor never waits
        check_open_files(self.max_connections)
        stream = self._stream = Acceptor(listener, self._handle)
        stream.loop_hub = gevent.get_hub()
        stream.admit = self.admission.accept
        self.app.handle_start()
        self._stream.start()
        if self._keepalive is not None:
            self._keepalive.start()
        if self.options.dormant_when_idle:
            self._idle_sweep.start()
        # (the status page's sampler saves the figures every second already, through metrics_total)
        port = self.endpoints.metrics_port
        metrics_host = self.endpoints.metrics_host
        metrics_listener = None if port is None else bind_listener(metrics_host, port, self.listen)
        self._metrics.start(write=self.status_page is None, listener=metrics_listener)
        if self.status_page is not None:
            self.status_page.start()
        log.info("serving on %s:%d", *self.address)

    def serve_forever(self) -> None:
        """Start, then block the calling greenlet until `stop` has finished."""
        self.start()
        self._stopped.wait()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, timeout: float = 10.0, *, restart: bool = False) -> None:
        """Graceful shutdown: stop accepting, close every connection (1001, or the app's
        `drain_close`: 1012 when its sessions resume elsewhere), wait, drop the rest.
        `restart`: the service comes back at once (a rolling restart): 1012 in any case."""
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        if self._stream is not None:
            self._stream.close()
        if self._keepalive is not None:
            self._keepalive.stop()
        self._idle_sweep.stop()
        self._metrics.stop()
        if self.status_page is not None:
            self.status_page.stop()
        if restart:  # let the handshakes under way open, to be closed with 1012 as the others
            self._finish_handshakes(min(timeout, RESTART_HANDSHAKE_WAIT))
        code, reason = (CloseCode.SERVICE_RESTART, "service restart") if restart else self.app.drain_close()
        for conn in list(self._actors):
            if conn.open:
                conn.close(code, reason)
            elif not conn.established:
                conn.abort(CloseCode.GOING_AWAY, "server shutting down")
        if self._actors:
            self._all_gone.clear()
            if not self._all_gone.wait(timeout):
                for conn in list(self._actors):  # the same code: a drain's 1012 stays resumable
                    conn.abort(code, reason)
                self._all_gone.wait(1.0)
        try:
            self.app.handle_stop()
        except Exception:
            log.exception("the application failed to stop")
        self._metrics.save()  # with --workers, the last counts of this worker stay in the sum
        self._stopped.set()

    def _finish_handshakes(self, timeout: float) -> None:
        """Wait (polling: once per restart) until no connection is in its opening handshake."""
        self._finishing_handshakes = True
        deadline = time.monotonic() + timeout
        while self.admission.handshaking and time.monotonic() < deadline:
            gevent.sleep(0.01)
        self._finishing_handshakes = False

    # -- connections ---------------------------------------------------------------

    @property
    def max_handshakes(self) -> int | None:
        return self.admission.max_handshakes

    @property
    def refused_sockets(self) -> int:
        """Sockets closed at accept: too many handshakes in progress, a per-IP cap."""
        return self.admission.refused_sockets

    def _handle(self, sock: _socket.socket, address: Any, accepted_ip: str = "") -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        hooks = self._hooks
        if hooks is None:  # bound once: four bound methods less to keep per connection
            ended = self.admission.handshake_ended
            hooks = self._hooks = (self._on_open, self._on_received, ended, self._on_finish)
        try:
            conn = (Connection if self.ssl_context is None else TLSConnection)(
                sock,
                address,
                self.app,
                self.options,
                on_open=hooks[0],
                on_received=hooks[1],
                on_request=self.on_request,
                on_handshake_end=hooks[2],
                on_finish=hooks[3],
                recv_buffer=self._recv_buffer,
                compressors=self._compressors,
            )
            if self.ssl_context is not None:
                cast(TLSConnection, conn).start_tls(self.ssl_context)
        except BaseException:
            self.admission.not_started(accepted_ip)
            sock.close()
            raise
        self._actors.add(conn)
        self.admission.started(conn, accepted_ip)
        conn.run()

    def _on_received(self, conn: Connection, upgrade: bool) -> Response | None:
        """Called as soon as a request is parsed, before any hook of the application's: who
        the client is (behind a trusted proxy), the server's own endpoints, and for an
        upgrade the per-IP caps, so that a refusal by the application (authentication)
        still counts against them."""
        request = conn.request
        assert request is not None
        if self.ssl_context is not None:
            request.scheme = "wss"
        if self.trusted_proxies is not None:
            resolved = self.trusted_proxies.resolve(request, conn.address)
            if resolved is not None:
                conn.address, request.scheme = resolved
                request.peer = conn.address
        if self._router:
            routed = self._router.route(request, upgrade)
            if isinstance(routed, Response):
                return routed
            if routed is not None:  # the endpoint's own application serves this connection
                conn.app = routed
        return self.admission.check_upgrade(conn) if upgrade else None

    # -- metrics -------------------------------------------------------------------

    def metrics_snapshot(self) -> Snapshot:
        """This process's figures, by metric name and label value (server/metrics.py)."""
        return self._metrics.snapshot()

    def metrics_total(self) -> Snapshot:
        """The figures to expose: this process's, or with `metrics_dir` every worker's summed."""
        return self._metrics.total()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where `metrics_port` serves (its port, when 0 was asked for), once started."""
        return self._metrics.address

    def not_ready(self) -> str | None:
        """Why GET /readyz answers 503 (draining, or the application's reason), or None."""
        if self._stopping:
            return "draining: the server is shutting down"
        return self.app.not_ready()

    def _on_open(self, conn: Connection) -> Response | None:
        """Called with the validated upgrade request, before the 101: refuse with an HTTP
        answer, or admit (the connection then counts against the capacity)."""
        if self._stopping and not self._finishing_handshakes:
            return error_response(503, "server shutting down")
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            return error_response(503, "too many connections", [("Retry-After", "1")])
        request = conn.request
        assert request is not None
        if self.on_request is not None and conn.app is self.app:  # not an endpoint's connection
            answer = self.on_request(request)
            if answer is not None:
                return answer
        self.connections[conn.id] = conn
        self.options.stats.connections_total += 1
        self.admission.opened(conn)
        return None

    def _on_finish(self, conn: Connection) -> None:
        """The connection's actor has ended: out of the registry and the per-IP counts."""
        self._actors.discard(conn)
        was_open = self.connections.pop(conn.id, None) is not None
        if was_open:
            self.options.stats.closed(conn.close_code)
        self.admission.finished(conn, was_open)
        if not self._actors:
            self._all_gone.set()

    def broadcast(self, message: str | bytes, connections: Iterable[Connection] | None = None) -> int:
        """Send one message to many connections, encoding the frame once; returns how many took it.

        Members that compress without context takeover share one compressed frame.
        """
        frame = encode_broadcast(message)
        targets = self.connections.values() if connections is None else connections
        if connections is None and self.status_page is not None and self.status_page.viewers:
            targets = [conn for conn in targets if conn.app is not self.status_page]  # not the page's
        return sum(1 for conn in list(targets) if conn.send_frame(frame))


def bind_listener(host: str, port: int, listen: ListenOptions) -> socket.socket:
    """A socket bound to (host, port) and listening, with SO_REUSEPORT if `listen` asks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = gevent.socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if listen.reuse_port:
            reuse_port = getattr(socket, "SO_REUSEPORT", None)  # not on every platform
            if reuse_port is None:
                raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this platform")
            listener.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
        listener.bind((host, port))
        listener.listen(listen.backlog)
    except BaseException:
        listener.close()
        raise
    return listener


def tls_context(
    certfile: str, keyfile: str | None = None, *, ca_certs: str | None = None, verify_client: bool = False
) -> ssl.SSLContext:
    """A server-side TLS context: our certificate chain, and with `ca_certs` the CAs whose
    client certificates are accepted (`verify_client` requires one: mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if ca_certs is not None:
        context.load_verify_locations(ca_certs)
        context.verify_mode = ssl.CERT_REQUIRED if verify_client else ssl.CERT_OPTIONAL
    elif verify_client:
        raise ConfigurationError("verify_client needs ca_certs: the CAs that sign client certificates")
    return context
