"""The WebSocket server: gevent's StreamServer accepting connections, one actor each.

The server admits or refuses connections (capacity, the `on_request` hook), keeps the
registry of open connections, runs keepalive over them, and shuts them all down in order
on `stop`: stop accepting, close every connection with 1001 after what its mailbox holds,
wait up to a timeout, then drop the rest.
"""

from __future__ import annotations

import _socket
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, cast

import gevent
import gevent.event
import gevent.socket
from gevent.server import StreamServer
from greenlet import greenlet

from ..errors import CloseCode, ConfigurationError
from ..protocol.connection import DEFAULT_MAX_FRAGMENTS
from ..protocol.deflate import CompressorPool, DeflateOptions
from ..protocol.handshake import HandshakePolicy
from ..protocol.http import DEFAULT_MAX_HEADER_BYTES, Headers, Request, Response, error_response
from .app import Application
from .broadcast import encode_broadcast
from .connection import Connection
from .edge import PerIPLimits, TrustedProxies, peer_ip
from .health import HEALTH_PATHS, health_answer
from .keepalive import Keepalive
from .metrics import Snapshot, merge_snapshots, metrics_response, read_worker_snapshots, write_snapshot
from .options import ConnectionOptions, OverflowPolicy
from .status_page import StatusPage, is_status_path
from .tls import TLSConnection

__all__ = ["Server", "tls_context"]

log = logging.getLogger("websock_actors")


class _Acceptor(StreamServer):
    """A StreamServer that hands a plain socket to a plain greenlet; the actor closes it."""

    loop_hub: Any = None

    def do_read(self) -> tuple[_socket.socket, Any] | None:  # type: ignore[override]
        listener: Any = self.socket
        try:
            fd, address = listener._accept()
        except BlockingIOError:
            return None
        return _socket.socket(fileno=fd), address

    def do_handle(self, sock: _socket.socket, address: Any) -> None:
        """Start the connection's actor in a plain greenlet: lighter than a gevent Greenlet."""
        actor = greenlet(self.handle, parent=self.loop_hub)
        self.loop_hub.loop.run_callback(actor.switch, sock, address)


class Server:
    """Serve `app` on `host:port` (port 0 picks a free port; see `address`)."""

    def __init__(
        self,
        app: Application,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        max_connections: int | None = 10_000,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        handshake_timeout: float = 10.0,
        close_timeout: float = 10.0,
        max_message_size: int | Literal["app"] | None = "app",
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_queue_bytes: int = 4 * 1024 * 1024,
        overflow: OverflowPolicy = "close",
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] = (),
        on_request: Callable[[Request], Response | None] | None = None,
        backlog: int = 1024,
        compression: bool | DeflateOptions = False,
        process_request: Callable[[Request], Response | None] | None = None,
        max_handshakes: int | None = None,
        max_connections_per_ip: int | None = None,
        max_handshakes_per_second_per_ip: float | None = None,
        forwarded_allow_ips: Sequence[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        listener: socket.socket | None = None,
        backplane: Any = None,
        health: bool = True,
        metrics: bool = False,
        metrics_port: int | None = None,
        metrics_dir: str | None = None,
        status_token: str | None = None,
    ) -> None:
        """`on_request(request)` runs before the upgrade, after the application's own hook:
        return a `Response` to refuse (authentication) or to answer plain HTTP.
        `process_request` is its older name.

        `max_message_size`: "app" (the default) takes the application's own limit (16 MiB
        for a raw app, 1 MiB for a typed App); None is no limit. `max_handshakes`: sockets
        still in the opening handshake (default: as many as `max_connections`); beyond it a
        new socket is closed at once, so silent sockets cannot exhaust file descriptors.
        `max_connections_per_ip` and `max_handshakes_per_second_per_ip` cap one client IP
        (None: no cap); beyond them the handshake gets HTTP 429 with `Retry-After`.
        `forwarded_allow_ips`: the proxies (IPs, networks, or "*") whose `X-Forwarded-For`
        and `X-Forwarded-Proto` give the client's address (`conn.address`, `request.peer`)
        and scheme (`request.scheme`); from any other peer those headers are ignored.
        `ssl_context` (built once, e.g. by `tls_context`) serves wss:// and https://; the TLS
        handshake runs in each connection's actor, within `handshake_timeout`.

        `reuse_port` sets SO_REUSEPORT before the bind, so that several processes (`--workers`)
        each listen on the same port and the kernel spreads new connections over them.
        `listener` is a socket already bound and listening, served instead of binding one (host,
        port and backlog then come from it; `stop` closes it): where SO_REUSEPORT is missing,
        the workers share the one socket their master bound before forking.
        `backplane` (a `RedisBackplane`, say) puts a typed App's rooms on it, as
        `App(backplane=...)` does; other applications have no rooms to share.
        `health`: answer GET /healthz and /readyz (server/health.py) before the application.
        `metrics`: answer GET /metrics (Prometheus, server/metrics.py) on this port, before the
        application; `metrics_port`: on a port of its own instead (plain HTTP, any path;
        with `reuse_port` too); `metrics_snapshot()` gives the figures in any case. `metrics_dir`
        (set by the `--workers` master): where the workers' snapshots meet, so that any
        worker answers with the sum.
        `status_token`: serve the live status page at GET /_status (server/status_page.py) to
        whoever gives this token (`?token=` or `Authorization: Bearer`), its WebSocket at
        /_status/ws; None (the default): off, and /_status is the application's like any path.
        """
        if on_request is not None and process_request is not None:
            raise ConfigurationError("give on_request or process_request (its older name), not both")
        if overflow not in ("close", "drop"):
            raise ConfigurationError(f"overflow must be 'close' or 'drop', not {overflow!r}")
        if max_connections is not None and max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        if max_handshakes is None:
            max_handshakes = max_connections
        elif max_handshakes < 1 or (max_connections is not None and max_handshakes > max_connections):
            raise ConfigurationError("max_handshakes must be from 1 to max_connections")
        if backplane is not None:
            use_backplane = getattr(app, "use_backplane", None)
            if use_backplane is None:
                raise ConfigurationError("a backplane shares the rooms of a typed App; this app has none")
            use_backplane(backplane)
        if max_message_size == "app":
            max_message_size = app.max_message_size
        self.app = app
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.ssl_context = ssl_context
        self.health = health
        self.metrics = metrics
        self.metrics_dir = metrics_dir
        self.metrics_port = metrics_port
        self._metrics_writer: Any = None
        self._metrics_server: Any = None
        self.status_page: StatusPage | None = None
        if status_token is not None:
            try:
                self.status_page = StatusPage(
                    status_token, self.metrics_total, app, summed=metrics_dir is not None
                )
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
        self.on_request = on_request or process_request
        self.trusted_proxies = TrustedProxies(forwarded_allow_ips) if forwarded_allow_ips else None
        self._per_ip = (
            PerIPLimits(max_connections_per_ip, max_handshakes_per_second_per_ip)
            if max_connections_per_ip is not None or max_handshakes_per_second_per_ip is not None
            else None
        )
        self.options = ConnectionOptions(
            handshake=HandshakePolicy(
                max_header_bytes=max_header_bytes,
                origins=None if origins is None else tuple(origins),
                subprotocols=tuple(subprotocols),
                compression=_compression_options(compression),
                max_message_size=max_message_size,
                max_fragments=max_fragments,
            ),
            handshake_timeout=handshake_timeout,
            close_timeout=close_timeout,
            max_queue_bytes=max_queue_bytes,
            overflow=overflow,
        )
        self.connections: dict[int, Connection] = {}  # admitted connections, by id
        self._actors: set[Connection] = set()  # every connection, handshaking ones too
        self.refused_sockets = 0  # closed at once: too many handshakes in progress
        self._handshaking = 0  # connections still in their opening handshake
        self._backlog = backlog
        self.reuse_port = reuse_port
        self._listener = listener
        self._stream: StreamServer | None = None
        self._keepalive = (
            Keepalive(self.connections.values, ping_interval, ping_timeout) if ping_interval else None
        )
        self._stopping = False
        self._hooks: tuple[Any, ...] | None = None  # the connections' callbacks, bound once
        self._stopped = gevent.event.Event()
        self._all_gone = gevent.event.Event()  # set whenever no connection is left
        # One read buffer for all this server's connections (they share one hub).
        self._recv_buffer = memoryview(bytearray(self.options.read_size))
        # The permessage-deflate compressors shared by this server's connections.
        deflate = self.options.handshake.compression
        self._compressors = None if deflate is None else CompressorPool(deflate)

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
        listener = self._listener if self._listener is not None else self._bind()
        listener.setblocking(False)  # an inherited socket may be blocking: the acceptor never waits
        self._stream = _Acceptor(listener, self._handle)
        self._stream.loop_hub = gevent.get_hub()
        self.app.handle_start()
        self._stream.start()
        if self._keepalive is not None:
            self._keepalive.start()
        if self.metrics_dir is not None and self.status_page is None:
            # (the status page's sampler writes it every second already, through metrics_total)
            self._metrics_writer = gevent.spawn(self._write_metrics)
        if self.status_page is not None:
            self.status_page.start()
        if self.metrics_port is not None:
            from gevent.pywsgi import WSGIServer

            self._metrics_server = WSGIServer(self._bind(self.metrics_port), self._metrics_wsgi, log=None)
            self._metrics_server.start()
        log.info("serving on %s:%d", *self.address)

    def _bind(self, port: int | None = None) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = gevent.socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                reuse_port = getattr(socket, "SO_REUSEPORT", None)  # not on every platform
                if reuse_port is None:
                    raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this platform")
                listener.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
            listener.bind((self.host, self.port if port is None else port))
            listener.listen(self._backlog)
        except BaseException:
            listener.close()
            raise
        return listener

    def serve_forever(self) -> None:
        """Start, then block the calling greenlet until `stop` has finished."""
        self.start()
        self._stopped.wait()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: stop accepting, close every connection (1001, or the app's
        `drain_close`: 1012 when its sessions resume elsewhere), wait, drop the rest."""
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        if self._stream is not None:
            self._stream.close()
        if self._keepalive is not None:
            self._keepalive.stop()
        if self._metrics_writer is not None:
            self._metrics_writer.kill(block=False)  # it waits in gevent.sleep only
            self._metrics_writer = None
        if self._metrics_server is not None:
            self._metrics_server.stop(timeout=1.0)
            self._metrics_server = None
        if self.status_page is not None:
            self.status_page.stop()
        code, reason = self.app.drain_close()
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
        if self.metrics_dir is not None:  # the last counts of this worker stay in the sum
            self._save_metrics()
        self._stopped.set()

    # -- connections ---------------------------------------------------------------

    def _handle(self, sock: _socket.socket, address: Any) -> None:
        if self.max_handshakes is not None and self._handshaking >= self.max_handshakes:
            self.refused_sockets += 1
            self.options.stats.failed("overload")
            log.debug("%s: %d handshakes in progress: closed at once", address, self.max_handshakes)
            sock.close()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        hooks = self._hooks
        if hooks is None:  # bound once: four bound methods less to keep per connection
            hooks = self._hooks = (self._admit, self._received, self._handshake_ended, self._forget)
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
        self._actors.add(conn)
        self._handshaking += 1
        conn.run()

    def _handshake_ended(self, conn: Connection) -> None:
        self._handshaking -= 1

    def _received(self, conn: Connection, upgrade: bool) -> Response | None:
        """Called as soon as a request is parsed, before any hook of the application's: who
        the client is (behind a trusted proxy), and for an upgrade the per-IP caps, so that a
        refusal by the application (authentication) still counts against them."""
        request = conn.request
        assert request is not None
        if self.ssl_context is not None:
            request.scheme = "wss"
        if self.trusted_proxies is not None:
            resolved = self.trusted_proxies.resolve(request, conn.address)
            if resolved is not None:
                conn.address, request.scheme = resolved
                request.peer = conn.address
        path = request.bare_path
        if not upgrade and self.health and path in HEALTH_PATHS:
            return health_answer(request, self.not_ready())
        if not upgrade and self.metrics and path == "/metrics" and request.method == "GET":
            body, content_type = metrics_response(self.metrics_total())
            return Response(200, "OK", Headers([("Content-Type", content_type)]), body)
        status_page = self.status_page
        if status_page is not None and is_status_path(path):
            answer = status_page.answer(request, upgrade)
            if answer is not None:
                return answer
            # A viewer of the page: served by the status page's application, never the user's
            # (its hooks, authentication and rooms). It counts as a connection like any other.
            conn.app = status_page
        per_ip = self._per_ip
        if upgrade and per_ip is not None:
            answer = per_ip.admit(peer_ip(conn.address))
            if answer is not None:
                log.debug("%r: refused: %s", conn, answer.body[:64])
                return answer
        return None

    # -- metrics -------------------------------------------------------------------

    def metrics_snapshot(self) -> Snapshot:
        """This process's figures, by metric name and label value (server/metrics.py)."""
        stats = self.options.stats
        snapshot: Snapshot = {
            "websock_connections": {"": len(self.connections)},
            "websock_connections_total": {"": stats.connections_total},
            "websock_handshake_failures_total": dict(stats.handshake_failures),
            "websock_closes_total": dict(stats.closes),
            "websock_messages_received_total": {"text": stats.messages_text, "binary": stats.messages_binary},
            "websock_messages_sent_total": {"": stats.messages_sent},
            "websock_bytes_received_total": {"": stats.bytes_received},
            "websock_bytes_sent_total": {"": stats.bytes_sent},
            "websock_dropped_messages_total": dict(stats.dropped),
            "websock_mailbox_bytes": {"": max((c._queued for c in self.connections.values()), default=0)},
        }
        for name, values in self.app.metrics().items():
            if name == "websock_messages_received_total":  # the app knows the types
                snapshot[name] = dict(values)
            else:
                into = snapshot.setdefault(name, {})
                for label, value in values.items():
                    into[label] = into[label] + value if label in into else value
        return snapshot

    def metrics_total(self) -> Snapshot:
        """The figures to expose: this process's, or with `metrics_dir` every worker's summed."""
        snapshot = self.metrics_snapshot()
        if self.metrics_dir is None:
            return snapshot
        write_snapshot(self.metrics_dir, snapshot)
        live, dead = read_worker_snapshots(self.metrics_dir)
        return merge_snapshots(live, dead)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where `metrics_port` serves (its port, when 0 was asked for), once started."""
        if self._metrics_server is None:
            return None
        return str(self._metrics_server.server_host), int(self._metrics_server.server_port)

    def _metrics_wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body, content_type = metrics_response(self.metrics_total())
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def _write_metrics(self) -> None:
        while True:
            self._save_metrics()
            gevent.sleep(1.0)

    def _save_metrics(self) -> None:
        """This worker's snapshot into `metrics_dir`, for whichever worker answers a scrape."""
        assert self.metrics_dir is not None
        try:
            write_snapshot(self.metrics_dir, self.metrics_snapshot())
        except OSError as exc:
            log.warning("cannot write the metrics snapshot: %s", exc)

    def not_ready(self) -> str | None:
        """Why GET /readyz answers 503 (draining, or the application's reason), or None."""
        if self._stopping:
            return "draining: the server is shutting down"
        return self.app.not_ready()

    def _admit(self, conn: Connection) -> Response | None:
        """Called with the validated upgrade request, before the 101: refuse with an HTTP
        answer, or admit (the connection then counts against the capacity)."""
        if self._stopping:
            return error_response(503, "server shutting down")
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            return error_response(503, "too many connections", [("Retry-After", "1")])
        request = conn.request
        assert request is not None
        if self.on_request is not None and (self.status_page is None or conn.app is not self.status_page):
            answer = self.on_request(request)
            if answer is not None:
                return answer
        self.connections[conn.id] = conn
        self.options.stats.connections_total += 1
        if self._per_ip is not None:
            self._per_ip.opened(peer_ip(conn.address))
        return None

    def _forget(self, conn: Connection) -> None:
        self._actors.discard(conn)
        if self.connections.pop(conn.id, None) is not None:
            self.options.stats.closed(conn.close_code)
            if self._per_ip is not None:
                self._per_ip.closed(peer_ip(conn.address))
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


def _compression_options(compression: bool | DeflateOptions) -> DeflateOptions | None:
    if isinstance(compression, DeflateOptions):
        return compression
    if compression is True or compression is False:
        return DeflateOptions() if compression else None
    raise ConfigurationError(f"compression must be a bool or DeflateOptions, not {compression!r}")


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
