"""A WebSocket client on gevent, built on the same sans-I/O core as the server.

    from websock_actors.client import connect

    with connect("ws://127.0.0.1:8000/") as ws:
        ws.send("hello")                      # text frame; bytes go as a binary frame
        print(ws.recv(timeout=5))
        joined = ws.request({"type": "join", "room": "lobby", "name": "ann"})

Every wait is a gevent wait: connections used from many greenlets of one thread run side by
side, and in a plain script without monkey-patching a wait runs gevent's hub on demand and
blocks its caller as an ordinary socket would. A connection has no greenlet of its own:
whoever waits (`recv`, `request`, `ping`, `close`) reads the socket, one greenlet at a time,
and sorts what arrives. A reply whose `id` belongs to a pending `request` goes to that
request; everything else goes to `on_push`, when given, and into a bounded queue that
`recv` reads. Nothing is read while nobody waits: the kernel buffers what arrives.

A connection belongs to the thread that opened it.
"""

from __future__ import annotations

import _socket
import functools
import itertools
import json
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.socket
import gevent.ssl
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.timeout import Timeout
from greenlet import getcurrent
from pydantic import BaseModel

from .errors import (
    CloseCode,
    ConnectionClosed,
    HandshakeError,
    RequestError,
    RequestTimeout,
    WebSocketError,
)
from .messages import MessageId
from .protocol.connection import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    PongReceived,
    ProtocolFailure,
    Role,
    TextMessage,
    WebSocketConnection,
)
from .protocol.deflate import EXTENSION_NAME, DeflateOptions, PerMessageDeflate, client_accept, client_offer
from .protocol.handshake import (
    DEFAULT_MAX_HEADER_BYTES,
    Response,
    build_request,
    generate_key,
    parse_response,
    validate_response,
)

__all__ = [
    "RECONNECT_CODES",
    "Backoff",
    "ClientConnection",
    "ConnectionClosed",
    "HandshakeError",
    "RequestError",
    "RequestTimeout",
    "connect",
]

log = logging.getLogger("websock_actors.client")

# Close codes after which a connection with `reconnect=` opens again: the transport was lost,
# or the server went away, failed, restarts or is overloaded. Not 1000 (the server meant it),
# nor refusals such as 1008, which another try would only repeat.
RECONNECT_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.ABNORMAL,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.BAD_GATEWAY,
    }
)

_READ_SIZE = 65536
_MAX_LATE_IDS = 4096  # ids of timed-out requests whose late replies are dropped

PushHandler = Callable[[str | bytes], None]
HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts to open a connection.

    The n-th delay is `initial * factor**n`, capped at `max_delay`, then scaled by a random
    factor in [1 - jitter, 1] so that many clients cut off at once do not return at once.
    `max_attempts` bounds the tries after the first failure (None: no bound).
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_attempts: int | None = 8
    jitter: float = 0.5

    def delays(self) -> Iterator[float]:
        delay = self.initial
        attempts: Iterable[int] = itertools.count() if self.max_attempts is None else range(self.max_attempts)
        for _ in attempts:
            yield delay * (1.0 - self.jitter * random.random())
            delay = min(delay * self.factor, self.max_delay)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a ws:// or wss:// URL points."""

    host: str
    port: int
    resource: str  # path and query
    host_header: str
    secure: bool


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r}")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"a WebSocket URL has no fragment (RFC 6455 3): {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    secure = scheme == "wss"
    default_port = 443 if secure else 80
    port = parts.port or default_port
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(host, port, resource, host_header, secure)


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """Addresses for `host`: an IP literal without a resolver round trip, else gevent's resolver."""
    try:
        return _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM, 0, _socket.AI_NUMERICHOST)
    except _socket.gaierror:
        return gevent.socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


def _header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


@dataclass(frozen=True, slots=True)
class _Options:
    subprotocols: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    origin: str | None
    compression: DeflateOptions | None
    open_timeout: float | None
    close_timeout: float
    max_message_size: int | None
    max_header_bytes: int
    reconnect: Backoff | None
    ssl_context: ssl.SSLContext | None


class ClientConnection:
    """One client connection: raw messages (`send`, `recv`, iteration), `ping`, `close`, and
    typed request-reply (`request`). Make one with `connect`.

    Attributes: `url`, `response` (the server's 101 answer, with its headers), `subprotocol`,
    `close_code` and `close_reason` (once closed; 1006 when the transport was lost),
    `dropped` (unsolicited messages pushed out of the full queue), `reconnects`, and
    `on_push`, the optional callback that sees each unsolicited message as it is read.
    """

    __slots__ = (
        "_generation",
        "_inbox",
        "_late",
        "_opts",
        "_parked",
        "_pings",
        "_protocol",
        "_reader",
        "_replies",
        "_request_ids",
        "_sock",
        "_target",
        "_user_closed",
        "_write_broken",
        "_write_lock",
        "close_code",
        "close_reason",
        "closed",
        "dropped",
        "on_push",
        "on_reconnect",
        "reconnects",
        "response",
        "subprotocol",
        "url",
    )

    def __init__(
        self,
        url: str,
        opts: _Options,
        *,
        max_queue: int,
        on_push: PushHandler | None,
        on_reconnect: Callable[[ClientConnection], None] | None,
    ) -> None:
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.url = url
        self._target = _parse_url(url)
        if self._target.secure and opts.ssl_context is None:
            opts = _replace_ssl(opts, _default_ssl_context())
        self._opts = opts
        self.on_push = on_push
        self.on_reconnect = on_reconnect
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = True  # until the opening handshake succeeds
        self.dropped = 0
        self.reconnects = 0
        self._sock: Any = None
        self._protocol = WebSocketConnection(Role.CLIENT)
        self._inbox: deque[str | bytes] = deque(maxlen=max_queue)
        self._replies: dict[MessageId, dict[str, Any] | None] = {}  # None: no reply yet
        self._late: set[MessageId] = set()
        self._pings: dict[bytes, bool] = {}
        self._request_ids = itertools.count(1)
        self._reader: Any = None  # the greenlet reading the socket, if any
        self._parked: Event | None = None  # set when the reader is done with a read
        self._write_lock = Semaphore()
        self._write_broken = False  # a write was cut short: the stream may end mid-frame
        self._generation = 0  # counts transports, so waits on a lost one end
        self._user_closed = False

    # -- opening -----------------------------------------------------------------------

    def _open_with_retries(self) -> None:
        backoff = self._opts.reconnect
        delays = backoff.delays() if backoff is not None else iter(())
        while True:
            try:
                self._open()
                return
            except (OSError, HandshakeError) as exc:
                if isinstance(exc, HandshakeError) and exc.status < 500 and exc.status != 429:
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise
                log.info("connecting to %s failed (%s); next try in %.2f s", self.url, exc, delay)
                gevent.sleep(delay)

    def _open(self) -> None:
        """Open the TCP connection and do the opening handshake, within `open_timeout`."""
        opts, target = self._opts, self._target
        timer = Timeout(opts.open_timeout) if opts.open_timeout is not None else None
        sock: Any = None
        if timer is not None:
            timer.start()
        try:
            sock = self._connect_tcp()
            key = generate_key()
            offer = client_offer(opts.compression) if opts.compression is not None else None
            sock.sendall(
                build_request(
                    target.host_header,
                    target.resource,
                    key,
                    subprotocols=opts.subprotocols,
                    extensions=offer,
                    origin=opts.origin,
                    extra_headers=opts.headers,
                )
            )
            buffer = b""
            parsed = None
            while parsed is None:
                chunk = sock.recv(4096)
                if not chunk:
                    raise HandshakeError(502, "the server closed the connection during the handshake")
                buffer += chunk
                parsed = parse_response(buffer, opts.max_header_bytes)
            response, rest = parsed
            offered = (EXTENSION_NAME,) if offer is not None else ()
            subprotocol = validate_response(response, key, opts.subprotocols, extensions=offered)
            deflate = None
            if opts.compression is not None:
                params = client_accept(response.headers.get("Sec-WebSocket-Extensions"), opts.compression)
                if params is not None:
                    deflate = PerMessageDeflate(params, opts.compression, server=False)
        except Timeout as exc:
            if sock is not None:
                sock.close()
            if exc is not timer:
                raise
            raise TimeoutError(f"opening {self.url} took over {opts.open_timeout:g} s") from None
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            if timer is not None:
                timer.close()
        self._sock = sock
        self._protocol = WebSocketConnection(
            Role.CLIENT, max_message_size=opts.max_message_size, deflate=deflate
        )
        self.response = response
        self.subprotocol = subprotocol
        self.closed = False
        self.close_code = None
        self.close_reason = ""
        self._write_broken = False
        self._late.clear()
        self._generation += 1
        if rest:  # frames the server sent right behind its answer
            self._receive(rest)

    def _connect_tcp(self) -> Any:
        target = self._target
        error: OSError | None = None
        for family, kind, proto, _, address in _resolve(target.host, target.port):
            sock = gevent.socket.socket(family, kind, proto)
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.secure:
                assert self._opts.ssl_context is not None
                try:
                    # gevent's SSL socket (cooperative) with the caller's context, of any class.
                    return gevent.ssl.SSLSocket(
                        sock=sock, server_hostname=target.host, _context=self._opts.ssl_context
                    )
                except BaseException:
                    sock.close()
                    raise
            return sock
        raise error or OSError(f"no address for {target.host!r}")

    # -- state -------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        """Return when data may be sent: open, reopened (`reconnect=`), or raise ConnectionClosed."""
        if not self.closed:
            if self._protocol.close_sent:
                raise ConnectionClosed(CloseCode.NORMAL, "closing")
            return
        if self._opts.reconnect is None or self._user_closed or self.close_code not in RECONNECT_CODES:
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)
        self._open_with_retries()
        self.reconnects += 1
        self._wake()
        if self.on_reconnect is not None:
            self.on_reconnect(self)

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)

    def _finish(self, code: int, reason: str, *, drain: bool = False) -> None:
        """The connection is over: after a close handshake (then `drain` waits, within
        close_timeout, for the server to end TCP first, as RFC 6455 7.1.1 asks), a failure,
        or a lost transport."""
        if self.closed:
            return
        if drain:
            deadline = monotonic() + self._opts.close_timeout
            while (remaining := deadline - monotonic()) > 0 and self._recv(remaining):
                pass
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- reading -----------------------------------------------------------------------

    def _recv(self, timeout: float | None) -> bytes | None:
        """One read: the bytes, b"" at the end of the stream (or a socket error), None on timeout."""
        sock = self._sock
        if sock is None:
            return b""
        timer = Timeout(timeout) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            data: bytes = sock.recv(_READ_SIZE)
            return data
        except OSError:
            return b""
        except Timeout as exc:
            if exc is not timer:
                raise
            return None
        finally:
            if timer is not None:
                timer.close()

    def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Read and sort what arrives until `ready()`: False if `timeout` ran out first.

        Raises ConnectionClosed when the connection ends before. One greenlet reads at a
        time; the others park until it has sorted what it read.
        """
        deadline = None if timeout is None else monotonic() + timeout
        remaining = timeout
        generation = self._generation
        while not ready():
            if self.closed or self._generation != generation:
                raise self._closed_error()
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
            if self._reader is None:
                self._reader = getcurrent()
                try:
                    data = self._recv(remaining)
                    if data is not None:
                        self._receive(data)
                finally:
                    self._reader = None
                    self._wake()
            else:
                parked = self._parked
                if parked is None:
                    parked = self._parked = Event()
                parked.wait(remaining)
        return True

    def _wake(self) -> None:
        parked = self._parked
        if parked is not None:
            self._parked = None
            parked.set()

    def _receive(self, data: bytes) -> None:
        """Feed received bytes to the protocol; sort the messages; answer what it owes."""
        if self.closed:
            return
        protocol = self._protocol
        end: tuple[int, str] | None = None
        drain = False
        for event in protocol.receive_data(data):
            if isinstance(event, TextMessage):
                self._on_text(event.data)
            elif isinstance(event, BinaryMessage):
                self._deliver(event.data)
            elif isinstance(event, PongReceived):
                self._on_pong(event.payload)
            elif isinstance(event, (CloseReceived, ProtocolFailure, ConnectionLost)):
                end = (event.code, event.reason)
                drain = isinstance(event, CloseReceived)
        owed = protocol.data_to_send()  # pongs, the close reply, the close of a failure
        if owed:
            try:
                self._write(b"".join(owed))
            except ConnectionClosed:
                return
        if end is not None:
            self._finish(*end, drain=drain)

    def _on_text(self, text: str) -> None:
        # Only a text that may carry an "id" is parsed here: pushes pass through untouched.
        if (self._replies or self._late) and ('"id"' in text or "\\u" in text):
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            if type(message) is dict:
                message_id = message.get("id")
                if type(message_id) is int or type(message_id) is str:
                    replies = self._replies
                    if message_id in replies and replies[message_id] is None:
                        replies[message_id] = message
                        return
                    if message_id in self._late:
                        self._late.discard(message_id)
                        return
        self._deliver(text)

    def _deliver(self, message: str | bytes) -> None:
        """An unsolicited message: to `on_push`, then into the queue (the oldest out when full)."""
        if self.on_push is not None:
            try:
                self.on_push(message)
            except Exception:
                log.exception("on_push failed on a message from %s", self.url)
        inbox = self._inbox
        if inbox.maxlen:
            if len(inbox) == inbox.maxlen:
                self.dropped += 1
            inbox.append(message)

    def _on_pong(self, payload: bytes) -> None:
        pings = self._pings
        if payload in pings:
            # A pong may answer only the latest of several pings (RFC 6455 5.5.3).
            for key in pings:
                pings[key] = True
                if key == payload:
                    break

    # -- writing -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            sock = self._sock
            if sock is None or self._write_broken:
                raise self._closed_error()
            try:
                # One plain send is enough for a small frame; sendall only for what is left
                # (gevent's sendall asks the kernel for the buffer size on every call).
                sent = sock.send(data)
                if sent < len(data):
                    sock.sendall(memoryview(data)[sent:])
            except OSError as exc:
                self._write_broken = True
                self._finish(CloseCode.ABNORMAL, f"write failed: {exc}")
                raise self._closed_error() from None
            except BaseException:  # killed or timed out mid-write: the frame may be cut
                self._write_broken = True
                raise

    # -- the API -----------------------------------------------------------------------

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text message (`str`) or a binary message (bytes-like)."""
        self._ensure_open()
        protocol = self._protocol
        if isinstance(message, str):
            self._write(protocol.send_text(message))
        else:
            self._write(protocol.send_binary(bytes(message)))

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next unsolicited message (`str` for text, `bytes` for binary).

        Raises TimeoutError after `timeout` seconds, ConnectionClosed once the connection is
        closed and every message received before is read.
        """
        inbox = self._inbox
        if not inbox.maxlen:
            raise WebSocketError("recv() needs a queue: this connection was opened with max_queue=0")
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if inbox:
                return inbox.popleft()
            if self.closed:
                self._ensure_open()  # raises, or reopens with reconnect=
            remaining = None if deadline is None else deadline - monotonic()
            if not self._wait_until(lambda: bool(inbox), remaining):
                raise TimeoutError(f"no message within {timeout:g} s")

    def __iter__(self) -> Iterator[str | bytes]:
        """The messages, until the connection closes normally (1000, 1001, or closed by us);
        another close raises ConnectionClosed."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.code in (CloseCode.NORMAL, CloseCode.GOING_AWAY) or self._user_closed:
                    return
                raise

    def request(
        self, message: Mapping[str, Any] | BaseModel, *, timeout: float | None = 10.0
    ) -> dict[str, Any]:
        """Send `message` (a dict or a pydantic model with a `type`) with a fresh `id`; return
        the reply that carries that `id`.

        Raises RequestError for an `error` reply, RequestTimeout when no reply came within
        `timeout` seconds (a late one is dropped), ConnectionClosed when the connection ended
        first. Unsolicited messages that arrive meanwhile stay readable with `recv`.
        """
        payload = message.model_dump(mode="json") if isinstance(message, BaseModel) else dict(message)
        if "type" not in payload:
            raise ValueError("a request needs a 'type'")
        message_id = next(self._request_ids)
        payload["id"] = message_id
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        self._ensure_open()
        replies = self._replies
        replies[message_id] = None
        try:
            self._write(self._protocol.send_text(text))
            if not self._wait_until(lambda: replies[message_id] is not None, timeout):
                raise RequestTimeout(message_id, timeout or 0.0)
        finally:
            reply = replies.pop(message_id)
            if reply is None:  # timed out, or the waiting greenlet was killed: drop a late reply
                if len(self._late) >= _MAX_LATE_IDS:
                    self._late.clear()
                self._late.add(message_id)
        assert reply is not None
        if reply.get("type") == "error":
            errors = reply.get("errors")
            raise RequestError(
                str(reply.get("code", "error")),
                str(reply.get("detail", "")),
                message_id,
                errors if isinstance(errors, list) else None,
                reply,
            )
        return reply

    def ping(self, data: bytes | None = None, *, timeout: float | None = 10.0) -> float:
        """Send a ping and wait for its pong; return the round trip in seconds."""
        payload = data if data is not None else b"p%d" % next(self._request_ids)
        self._ensure_open()
        pings = self._pings
        pings[payload] = False
        start = monotonic()
        try:
            self._write(self._protocol.send_ping(payload))
            if not self._wait_until(lambda: pings.get(payload, True), timeout):
                raise TimeoutError(f"no pong within {timeout:g} s")
        finally:
            pings.pop(payload, None)
        return monotonic() - start

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", *, timeout: float | None = None) -> None:
        """The closing handshake: send a close frame, wait (up to `timeout`, else the
        connection's close_timeout) for the server's and for it to end TCP, then let go.
        Messages that arrive meanwhile stay readable with `recv`. Idempotent."""
        self._user_closed = True
        if self.closed:
            return
        frame = self._protocol.send_close(code, reason)  # ValueError for a code one may not send
        if self._write_broken:
            self._finish(CloseCode.ABNORMAL, "a write was cut short")
            return
        try:
            if frame:
                self._write(frame)
            self._wait_until(lambda: False, self._opts.close_timeout if timeout is None else timeout)
        except ConnectionClosed:
            return
        self._finish(CloseCode.ABNORMAL, "no close frame from the server in time")

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        self._user_closed = True
        self._finish(CloseCode.ABNORMAL, "aborted")
        self._wake()

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"closed {self.close_code}" if self.closed else "open"
        return f"<ClientConnection {self.url} {state}>"


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """One verifying context for every wss:// connection that brings none (loading the CA
    certificates for each would cost milliseconds per connection)."""
    return ssl.create_default_context()


def _replace_ssl(opts: _Options, context: ssl.SSLContext) -> _Options:
    fields = {name: getattr(opts, name) for name in _Options.__slots__}
    fields["ssl_context"] = context
    return _Options(**fields)


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] | None = None,
    headers: HeadersLike | None = None,
    origin: str | None = None,
    compression: bool | DeflateOptions = False,
    open_timeout: float | None = 10.0,
    close_timeout: float = 10.0,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_queue: int = 1024,
    on_push: PushHandler | None = None,
    reconnect: Backoff | bool | None = None,
    on_reconnect: Callable[[ClientConnection], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to `url` (ws:// or wss://) and return it.

    - `subprotocols`: offered in order; the server's choice is `conn.subprotocol`.
    - `headers`: extra request headers; `origin`: the Origin header.
    - `compression`: offer permessage-deflate (True for the defaults, or DeflateOptions).
    - `open_timeout` bounds the TCP connection and the opening handshake (TimeoutError);
      `close_timeout` the closing handshake.
    - `max_message_size`: a larger message fails the connection with 1009.
    - `max_queue`: unsolicited messages kept for `recv` (the oldest are dropped past it and
      counted in `conn.dropped`); 0 keeps none: `on_push` alone sees them.
    - `on_push(message)`: called with each unsolicited message as it is read, in the reading
      greenlet: it must not block.
    - `reconnect`: a Backoff (True: the default one). Opening retries with backoff on
      network errors and HTTP 5xx/429; a connection lost with a code in RECONNECT_CODES
      opens again at the next `send`, `recv`, `request` or `ping` (what was in flight fails
      with ConnectionClosed), then calls `on_reconnect(conn)`, e.g. to join rooms again.
    - `ssl_context`: for wss:// (default: `ssl.create_default_context()`, which verifies the
      server's certificate and name).

    Raises HandshakeError (its `status` is the server's HTTP status, or 502 for an invalid
    answer), TimeoutError, or OSError.
    """
    if reconnect is True:
        reconnect = Backoff()
    opts = _Options(
        subprotocols=tuple(subprotocols or ()),
        headers=tuple(_header_items(headers)),
        origin=origin,
        compression=DeflateOptions() if compression is True else (compression or None),
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        max_message_size=max_message_size,
        max_header_bytes=max_header_bytes,
        reconnect=reconnect or None,
        ssl_context=ssl_context,
    )
    conn = ClientConnection(url, opts, max_queue=max_queue, on_push=on_push, on_reconnect=on_reconnect)
    conn._open_with_retries()
    return conn
