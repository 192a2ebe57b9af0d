"""WebSock 1.0.4's callback API as a drop-in, on the actor server.

    from websock_actors import WebSocketServer   # was: from websock import WebSocketServer

Its two errors, WebSocketInvalidHandshake and WebSocketInvalidDataFrame, live in the one
exception tree (`websock_actors.errors`) and are given to `on_error` as WebSock did.

Same constructor, callbacks, methods and attributes as WebSock. What changes is what was
broken there: close codes go out big-endian and a client's close is answered, binary
messages arrive as `bytes`, messages of any size and fragmentation work, a refused
handshake never reaches `on_connection_open`, `DEBUG` only sets this package's log level
(no root logger, no `ws.log`), and `send_all` queues one encoded frame per client instead
of writing to each socket in turn, so one slow client never blocks it.

Each client's callbacks run one at a time in that client's own greenlet (fed by its
connection actor), so a callback that blocks, or calls `recv`, holds up only its client.
Call the methods from greenlets of the server's hub: run legacy threaded code under
`gevent.monkey.patch_all()` (first line of the program) so its threads are greenlets.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import gevent
import gevent.event
import gevent.queue

from ..errors import CloseCode, LocalHandshakeRefusal, WebSocketInvalidDataFrame, WebSocketInvalidHandshake
from ..protocol.frames import Opcode, encode_frame
from ..server.app import Application
from ..server.connection import Connection
from ..server.server import Server

__all__ = [
    "Client",
    "FrameType",
    "WebSocketInvalidDataFrame",
    "WebSocketInvalidHandshake",
    "WebSocketServer",
]

log = logging.getLogger("websock_actors")

Address = tuple[Any, ...]


class FrameType(IntEnum):
    """WebSock's frame types (the RFC 6455 opcodes)."""

    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


_CLOSED = object()  # end of a client's inbox


class Client:
    """What WebSock's callbacks receive for a client; answers `getpeername()` like a socket."""

    def __init__(self, conn: Connection) -> None:
        self.connection = conn
        self.address: Address = tuple(conn.address)
        self._inbox: gevent.queue.Queue[Any] = gevent.queue.Queue(maxsize=64)
        self._recv_waiters: deque[gevent.event.AsyncResult[Any]] = deque()
        self._greenlet: gevent.Greenlet[Any, Any] | None = None

    def getpeername(self) -> Address:
        return self.address

    def __repr__(self) -> str:
        return f"<Client {self.address}>"


def _ignore(*args: Any, **kwargs: Any) -> None:
    """Default for a callback the user did not give."""


class _CallbackApp(Application):
    """Routes connection events to WebSock-style callbacks through per-client greenlets."""

    def __init__(self, owner: WebSocketServer) -> None:
        self.owner = owner

    def handle_refused(self, address: Any, error: LocalHandshakeRefusal) -> None:
        self.owner._report(WebSocketInvalidHandshake(error.reason, address, error.status))

    def handle_connect(self, conn: Connection) -> None:
        client = Client(conn)
        conn.state["client"] = client
        self.owner.clients[client.address] = client
        client._greenlet = gevent.spawn(self.owner._run_client, client)

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        client: Client = conn.state["client"]
        while client._recv_waiters:
            waiter = client._recv_waiters.popleft()
            if not waiter.ready():
                waiter.set(message)
                return
        # Blocks this actor only (backpressure on a slow callback), and gives up once the
        # connection is closing or aborted: an abort must not wait for the callback.
        while conn.open:
            try:
                client._inbox.put(message, timeout=0.25)
                return
            except gevent.queue.Full:
                continue

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        client: Client | None = conn.state.get("client")
        if client is None:
            return
        if code in (CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG):
            self.owner._report(WebSocketInvalidDataFrame(reason or "invalid data frame", client, code))
        while client._recv_waiters:
            client._recv_waiters.popleft().set(None)
        try:
            client._inbox.put_nowait(_CLOSED)
        except gevent.queue.Full:  # the callback is behind: the end goes in after what it has
            gevent.spawn(client._inbox.put, _CLOSED)


class WebSocketServer:
    """WebSock's server API, served by connection actors on gevent."""

    def __init__(
        self,
        ip: str = "",
        port: int = 80,
        on_data_receive: Callable[[Client, str | bytes], Any] | None = None,
        on_connection_open: Callable[[Client], Any] | None = None,
        on_connection_close: Callable[[Client], Any] | None = None,
        on_server_destruct: Callable[[], Any] | None = None,
        on_error: Callable[[Exception], Any] | None = None,
        DEBUG: bool = False,
    ) -> None:
        self.ip = ip
        self.port = port
        self.alive = True
        self.clients: dict[Address, Client] = {}
        self.on_data_receive = on_data_receive or _ignore
        self.on_connection_open = on_connection_open or _ignore
        self.on_connection_close = on_connection_close or _ignore
        self.on_server_destruct = on_server_destruct or _ignore
        self.on_error = on_error or _ignore
        self.DEBUG = DEBUG
        if DEBUG:
            log.setLevel(logging.DEBUG)
        self.server: Server | None = None
        self._finished_clients = gevent.event.Event()

    # -- serving ---------------------------------------------------------------------

    def _ensure_started(self) -> Server:
        if self.server is None:
            self.server = Server(_CallbackApp(self), self.ip or "0.0.0.0", self.port)
            self.server.start()
            self.port = self.server.address[1]
        return self.server

    def serve_forever(self) -> None:
        """Serve until `close_server` is called."""
        self._ensure_started().serve_forever()

    def serve_once(self) -> None:
        """Serve until one client has connected and gone again."""
        self._ensure_started()
        self._finished_clients.clear()
        self._finished_clients.wait()

    def _run_client(self, client: Client) -> None:
        """One client's callbacks, one at a time, in this greenlet."""
        try:
            self._call(self.on_connection_open, client)
            while True:
                message = client._inbox.get()
                if message is _CLOSED:
                    break
                self._call(self.on_data_receive, client, message)
        finally:
            if self.clients.get(client.address) is client:
                del self.clients[client.address]
            self._call(self.on_connection_close, client)
            self._finished_clients.set()

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self._report(exc)

    def _report(self, exc: Exception) -> None:
        """Hand an error to `on_error`; an error raised there is logged, never fatal."""
        try:
            self.on_error(exc)
        except Exception:
            log.exception("on_error raised while handling %r", exc)

    # -- talking to clients --------------------------------------------------------

    def _client(self, client: Client | Address) -> Client:
        if isinstance(client, Client):
            return client
        return self.clients[tuple(client)]

    def send(self, client: Client, data: str | bytes | None, data_type: FrameType | None = None) -> None:
        """Send one message (or a ping/pong/close) to one client.

        Without `data_type`, `str` goes as a text frame and `bytes` as a binary one (WebSock
        sent bytes as text, so non-UTF-8 bytes failed); `data_type=FrameType.TEXT` keeps that.
        """
        conn = self._client(client).connection
        payload = data if data is not None else b""
        if data_type is None:
            data_type = FrameType.TEXT if isinstance(payload, str) else FrameType.BINARY
        if data_type == FrameType.TEXT:
            conn.send(payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload)
        elif data_type == FrameType.BINARY:
            conn.send(payload.encode("utf-8") if isinstance(payload, str) else bytes(payload))
        elif data_type == FrameType.PING:
            conn.ping(payload.encode("utf-8") if isinstance(payload, str) else bytes(payload))
        elif data_type == FrameType.PONG:
            raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
            conn.send_frame(encode_frame(Opcode.PONG, raw))
        elif data_type == FrameType.CLOSE:
            self.close_client(client)
        else:
            raise ValueError(f"cannot send a {data_type!r} frame by itself")

    def send_all(self, client: Client | None, data: str | bytes, echo: bool = False) -> None:
        """Send to every client but `client` (to all of them with `echo`); never blocks."""
        server = self._ensure_started()
        targets = [c.connection for c in list(self.clients.values()) if echo or c is not client]
        server.broadcast(data, targets)

    def recv(self, client: Client) -> str | bytes | None:
        """Wait for the client's next message and return it instead of calling on_data_receive.

        Returns None when the connection closes first.
        """
        client = self._client(client)
        if gevent.getcurrent() is client._greenlet:
            message = client._inbox.get()
            if message is _CLOSED:
                client._inbox.put(_CLOSED)  # let the callback loop see the end too
                return None
            return message  # type: ignore[no-any-return]
        if not client.connection.open:
            return None
        waiter: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()
        client._recv_waiters.append(waiter)
        reply: str | bytes | None = waiter.get()
        return reply

    def ping(self, client: Client) -> None:
        self._client(client).connection.ping()

    def close_client(
        self,
        address: Client | Address,
        status_code: int | None = None,
        app_data: str | None = None,
        hard_close: bool = False,
    ) -> None:
        """Close one client (by address or client object); `hard_close` drops TCP without a close frame."""
        client = self._client(address)
        self.clients.pop(client.address, None)
        conn = client.connection
        if hard_close:
            conn.abort()
        else:
            code = status_code if status_code is not None else (CloseCode.NORMAL if app_data else None)
            conn.close(code, app_data or "")

    def close_server(self, status_code: int | None = None, app_data: str | None = None) -> None:
        """Close every client, call `on_server_destruct`, stop listening; `serve_forever` returns."""
        for client in list(self.clients.values()):
            self.close_client(client, status_code=status_code, app_data=app_data)
        self._call(self.on_server_destruct)
        self.alive = False
        if self.server is not None:
            self.server.stop()
        self._finished_clients.set()
