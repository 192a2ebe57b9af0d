"""The connection actor: one greenlet that alone owns one socket and one protocol object.

Other greenlets never touch the socket: `send`, `send_frame`, `ping`, `close` and `abort`
put an item into the actor's mailbox (a plain list, bounded in bytes) and wake the actor
if it is parked. The actor reads in large chunks, feeds the sans-I/O codec, delivers
whole messages to the application, and writes everything queued in one `send` call,
trying the non-blocking send first and waiting for writability only when it would block.
An idle connection has no extra greenlet, no timer and no queue object.
"""

from __future__ import annotations

import _socket
import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import gevent
from gevent.hub import Waiter, get_hub

from .app import Application
from .errors import CloseCode, ConnectionClosed, HandshakeError
from .protocol.connection import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    ConnectionState,
    Event,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    Role,
    TextMessage,
    WebSocketConnection,
    close_payload,
)
from .protocol.deflate import (
    CompressorPool,
    DeflateOptions,
    DeflateParameters,
    MessageCompressor,
    PerMessageDeflate,
    server_negotiate,
)
from .protocol.frames import Opcode, encode_frame
from .protocol.handshake import (
    DEFAULT_MAX_HEADER_BYTES,
    Request,
    Response,
    build_response,
    error_response,
    header_tokens,
    parse_request,
    render_response,
    validate_request,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BroadcastFrame", "Connection", "ConnectionOptions", "OverflowPolicy", "encode_broadcast"]

log = logging.getLogger("websock_actors")

OverflowPolicy = Literal["close", "drop"]

# Why a parked actor was woken.
_READABLE = 1
_WRITABLE = 2
_MAIL = 3
_TIMEOUT = 4

# What the actor is parked on: nothing, "readable or mail", "writable" (only an abort wakes it).
_NOT_WAITING = 0
_WAIT_READ = 1
_WAIT_WRITE = 2

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Per-connection limits and policies, shared by all connections of one server."""

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_fragments: int | None = None
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    handshake_timeout: float = 10.0
    close_timeout: float = 10.0
    max_queue_bytes: int = 4 * 1024 * 1024
    overflow: OverflowPolicy = "close"
    origins: Sequence[str | None] | None = None
    subprotocols: Sequence[str] = ()
    read_size: int = 65536
    compression: DeflateOptions | None = None  # permessage-deflate, when not None


class _Abort(Exception):
    """Raised inside the actor to drop the connection at once."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _TransportGone(Exception):
    """The socket failed while writing (reset, broken pipe)."""


class _Binary:
    """A binary message queued by another greenlet (plain bytes in the mailbox are frames)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Ping:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


_MailItem = bytes | str | _Binary | _Close | _Ping


class Connection:
    """One WebSocket connection, run as an actor. Applications receive it as `conn`.

    Safe to call from any greenlet of the server's hub: `send`, `send_frame`, `ping`,
    `close`, `abort`. Attributes: `id`, `address`, `request` (the upgrade request, with
    its headers), `subprotocol`, and `state`, a dict for the application.
    """

    def __init__(
        self,
        sock: _socket.socket,
        address: Any,
        app: Application,
        options: ConnectionOptions,
        *,
        on_open: Callable[[Connection], Response | None] | None = None,
        on_finish: Callable[[Connection], None] | None = None,
        recv_buffer: memoryview | None = None,
        compressors: CompressorPool | None = None,
    ) -> None:
        self.id = next(_ids)
        self.address = address
        self.app = app
        self.options = options
        self.request: Request | None = None
        self.subprotocol: str | None = None
        self.state: dict[str, Any] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.dropped = 0  # messages dropped by the "drop" overflow policy
        self._on_open = on_open
        self._on_finish = on_finish
        # A plain non-blocking socket, driven by the actor's own watchers: no gevent
        # socket object (and its two idle watchers) per connection.
        self._raw = sock
        self._raw.setblocking(False)
        self._recv_buffer = recv_buffer
        # permessage-deflate: the server's shared compressors; the one this connection
        # compresses broadcasts with (no context takeover); whether `send` in the actor
        # may encode at once (not when compression keeps context: mailbox order decides).
        self._compressors = compressors
        self._broadcast_compressor: MessageCompressor | None = None
        self._encode_now = True
        self._fd = self._raw.fileno()
        self._hub = get_hub()
        self._greenlet: Any = None  # the actor's greenlet, once it runs
        self._protocol: WebSocketConnection | None = None
        self._outbox: list[_MailItem] = []
        self._queued = 0
        self._closing = False  # a close was requested: no more data is accepted
        self._open = False
        self._finished = False
        self._wait_state = _NOT_WAITING
        self._wake_scheduled = False
        self._waiter: Waiter[int] = Waiter(self._hub)
        self._read_watcher: Any = None
        self._abort_reason: tuple[int, str] | None = None
        self._write_pending = False  # a write is blocked part-way through a frame
        # Keepalive bookkeeping, read by the server's sweeper.
        self.recv_count = 0
        self.keepalive_seen = 0
        self.keepalive_idle_since = 0.0
        self.ping_sent_at: float | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.address}>"

    # -- the mailbox: any greenlet -------------------------------------------------

    @property
    def open(self) -> bool:
        """True from the end of the handshake until a close is requested or happens."""
        return self._open and not self._closing

    @property
    def established(self) -> bool:
        """True once the opening handshake succeeded, closing or not."""
        return self._protocol is not None

    def send(self, message: str | bytes) -> None:
        """Queue a text (`str`) or binary (bytes-like) message; never blocks."""
        if not self.open:
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)
        if gevent.getcurrent() is self._greenlet and self._encode_now:
            assert self._protocol is not None
            self._enqueue(self._protocol.send_message(message))
        elif isinstance(message, str):
            self._enqueue(message, len(message))
        else:
            self._enqueue(_Binary(bytes(message)), len(message))

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded frame (a broadcast encodes once for every member).

        Returns False instead of raising when the connection no longer takes data, so
        a fan-out loop never stops on one member. A `BroadcastFrame` goes out compressed
        to a connection that negotiated permessage-deflate without context takeover
        (compressed once for all such members).
        """
        if not self.open:
            return False
        if type(frame) is BroadcastFrame and self._broadcast_compressor is not None:
            frame = frame.compressed(self._broadcast_compressor)
        return self._enqueue(frame)

    def ping(self, payload: bytes = b"") -> None:
        if len(payload) > 125:
            raise ValueError("ping payload over 125 bytes")
        if self.open:
            self._enqueue(_Ping(payload), 0)

    def close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after everything already queued is sent; waits for the peer's close frame."""
        close_payload(code, reason)  # validate now, in the caller
        if self._finished or self._closing:
            return
        self._closing = True
        self._outbox.append(_Close(code, reason))
        self._wake()

    def abort(self, code: int = CloseCode.ABNORMAL, reason: str = "") -> None:
        """Drop the connection now: a best-effort close frame, then the TCP connection."""
        if self._finished or self._abort_reason is not None:
            return
        self._abort_reason = (code, reason)
        self._closing = True
        self._wake()  # a no-op in the actor itself: it checks the abort flag

    def _enqueue(self, item: _MailItem, size: int | None = None) -> bool:
        size = len(item) if size is None else size  # type: ignore[arg-type]
        if self._queued and self._queued + size > self.options.max_queue_bytes:
            if gevent.getcurrent() is not self._greenlet:
                return self._overflow()
            # The actor's own output (a handler's burst) is written now, waiting for the
            # socket if need be: bounded memory, and backpressure on this connection only.
            self._flush()
        self._outbox.append(item)
        self._queued += size
        if self._wait_state == _WAIT_READ and not self._wake_scheduled:
            self._wake()
        return True

    def _overflow(self) -> bool:
        if self.options.overflow == "drop":
            self.dropped += 1
            return False
        log.info("%r: outgoing queue full, closing", self)
        self.abort(CloseCode.TRY_AGAIN_LATER, "outgoing queue full")
        return False

    def _wake(self) -> None:
        if self._wake_scheduled or gevent.getcurrent() is self._greenlet:
            return
        self._wake_scheduled = True
        self._hub.loop.run_callback(self._do_wake)

    def _do_wake(self) -> None:
        self._wake_scheduled = False
        state = self._wait_state
        if state == _WAIT_READ or (state == _WAIT_WRITE and self._abort_reason is not None):
            self._waiter.switch(_MAIL)

    # -- the actor -----------------------------------------------------------------

    def run(self) -> None:
        """The actor's body: handshake, message loop, close. Runs in its own greenlet."""
        self._greenlet = gevent.getcurrent()
        self._read_watcher = self._hub.loop.io(self._fd, 1)
        code: int = CloseCode.ABNORMAL
        reason = ""
        try:
            rest = self._handshake()
            if rest is None:
                return
            self._open = True
            try:
                self.app.handle_connect(self)
            except Exception:
                log.exception("%r: on_connect failed", self)
                self.abort(CloseCode.INTERNAL_ERROR, "internal error")
            code, reason = self._serve(rest)
        except _Abort as exc:
            code, reason = exc.code, exc.reason
            self._send_last_close(code, reason)
        except _TransportGone:
            code, reason = CloseCode.ABNORMAL, ""
        except Exception:
            log.exception("%r: connection actor failed", self)
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
            self._send_last_close(code, reason)
        finally:
            self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        was_open = self._open
        self._open = False
        self._closing = True
        self._finished = True
        self.close_code, self.close_reason = code, reason
        self._outbox = []
        if self._read_watcher is not None:
            self._read_watcher.close()
        try:
            self._raw.close()
        except OSError:
            pass
        try:
            if was_open:
                try:
                    self.app.handle_close(self, code, reason)
                except Exception:
                    log.exception("%r: on_close failed", self)
        finally:
            if self._on_finish is not None:
                self._on_finish(self)

    def _serve(self, first_data: bytes) -> tuple[int, str]:
        protocol = self._protocol
        assert protocol is not None
        recv = self._recv_nowait
        read_size = self.options.read_size
        receive_data = protocol.receive_data
        close_deadline: float | None = None
        data = first_data
        parked = True
        while True:
            if data:
                self.recv_count += 1
                for event in receive_data(data):
                    if type(event) is PingReceived:
                        # The pong goes out in order with replies to messages around it.
                        self._outbox.extend(protocol.data_to_send())
                        continue
                    result = self._dispatch(event)
                    if result is not None:
                        self._outbox.extend(protocol.data_to_send())
                        self._flush()
                        self._close_transport(drain=not isinstance(event, ConnectionLost))
                        return result
                control = protocol.data_to_send()
                if control:
                    self._outbox.extend(control)
            if self._abort_reason is not None:
                raise _Abort(*self._abort_reason)
            if self._outbox:
                self._flush()
                if close_deadline is None and protocol.state is ConnectionState.CLOSING:
                    close_deadline = self._hub.loop.now() + self.options.close_timeout
            wanted = protocol.bytes_wanted  # read a large frame in few, big reads
            received = recv(wanted if wanted > read_size else read_size)
            if received is None:
                data = b""
                if self._outbox:
                    # Mail queued while a write was blocked woke no one (only a parked
                    # reader is woken): send it before parking.
                    continue
                if self._park(_WAIT_READ, close_deadline) == _TIMEOUT:
                    self._close_transport(drain=False)
                    return CloseCode.ABNORMAL, "close handshake timed out"
                parked = True
                continue
            data = received
            if not parked:
                # Back-to-back batches from a flooding peer: let other actors run in between.
                gevent.sleep(0)
            parked = False
            if not data:
                # End of stream: let the protocol report it as a lost connection.
                for event in receive_data(b""):
                    result = self._dispatch(event)
                    if result is not None:
                        self._close_transport(drain=False)
                        return result
                return CloseCode.ABNORMAL, ""

    def _recv_nowait(self, size: int) -> bytes | None:
        """Bytes received (b"" at end of stream or on error), or None when none are ready.

        With a `recv_buffer` (one per server, shared by its connections: only one greenlet
        of a hub runs at a time), bytes are read into it and copied out at their size, so
        no 64 KiB block is allocated and shrunk per read. Waiting happens outside any
        `except` block: a greenlet parked inside one keeps the exception and its traceback
        alive, which costs memory per idle connection.
        """
        buffer = self._recv_buffer
        try:
            if buffer is None or size > len(buffer):
                data: bytes = self._raw.recv(size)
                return data
            count = self._raw.recv_into(buffer, size)
        except BlockingIOError:
            return None
        except OSError:
            return b""
        return buffer[:count].tobytes()

    def _dispatch(self, event: Event) -> tuple[int, str] | None:
        """Hand one protocol event to the application; a (code, reason) ends the loop."""
        if type(event) is TextMessage or type(event) is BinaryMessage:
            try:
                self.app.handle_message(self, event.data)
            except Exception:
                log.exception("%r: message handler failed", self)
                self.abort(CloseCode.INTERNAL_ERROR, "internal error")
            return None
        if type(event) is PongReceived:
            return None
        if type(event) is CloseReceived:
            return event.code, event.reason
        if type(event) is ProtocolFailure:
            log.info("%r: protocol error: %s", self, event.reason)
            return event.code, event.reason
        if type(event) is ConnectionLost:
            return event.code, event.reason
        return None  # PingReceived: the pong is already queued

    # -- writing ---------------------------------------------------------------------

    def _flush(self) -> None:
        """Encode what the mailbox holds, in order, and write it with one send call."""
        items = self._outbox
        self._outbox = []
        self._queued = 0
        protocol = self._protocol
        assert protocol is not None
        chunks: list[bytes] = []
        for item in items:
            kind = type(item)
            if kind is bytes or kind is BroadcastFrame:
                chunks.append(item)  # type: ignore[arg-type]
            elif kind is str:
                chunks.append(protocol.send_text(item))  # type: ignore[arg-type]
            elif kind is _Binary:
                chunks.append(protocol.send_binary(item.data))  # type: ignore[union-attr]
            elif kind is _Ping:
                if not protocol.close_sent:
                    chunks.append(protocol.send_ping(item.payload))  # type: ignore[union-attr]
            elif kind is _Close:
                frame = protocol.send_close(item.code, item.reason)  # type: ignore[union-attr]
                if frame:
                    chunks.append(frame)
        if chunks:
            self._write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _write(self, data: bytes) -> None:
        try:
            sent = self._raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _TransportGone() from exc
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        watcher = self._hub.loop.io(self._fd, 2)
        self._write_pending = True
        try:
            while view:
                try:
                    view = view[self._raw.send(view) :]
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _TransportGone() from exc
                self._park(_WAIT_WRITE, None, watcher)
                if self._abort_reason is not None:
                    raise _Abort(*self._abort_reason)
            self._write_pending = False
        finally:
            watcher.close()

    def _park(self, state: int, deadline: float | None, watcher: Any = None) -> int:
        """Wait for the socket (readable or writable), mail, or the deadline."""
        waiter = self._waiter
        waiter.clear()
        if watcher is None:
            watcher = self._read_watcher
        watcher.start(waiter.switch, _READABLE if state == _WAIT_READ else _WRITABLE)
        timer = None
        if deadline is not None:
            timer = self._hub.loop.timer(max(0.0, deadline - self._hub.loop.now()))
            timer.start(waiter.switch, _TIMEOUT)
        self._wait_state = state
        try:
            return waiter.get()
        finally:
            self._wait_state = _NOT_WAITING
            watcher.stop()
            if timer is not None:
                timer.close()

    def _send_last_close(self, code: int, reason: str) -> None:
        """Best effort, never blocking: tell the peer why before dropping the connection."""
        protocol = self._protocol
        if protocol is None or protocol.close_sent or code in (CloseCode.ABNORMAL, CloseCode.NO_STATUS):
            return
        if self._write_pending:
            return  # a frame is half sent: a close frame now would land inside it
        try:
            self._raw.send(protocol.send_close(code, reason))
        except OSError:
            pass

    def _close_transport(self, *, drain: bool) -> None:
        """Half-close, then read until the peer closes too (bounded), so no RST eats our last frame."""
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            return
        if not drain:
            return
        deadline = self._hub.loop.now() + min(self.options.close_timeout, 2.0)
        while True:
            received = self._recv_nowait(65536)
            if received is None:
                if self._park(_WAIT_READ, deadline) == _TIMEOUT or self._abort_reason is not None:
                    return
            elif not received:
                return

    # -- the opening handshake ---------------------------------------------------------

    def _handshake(self) -> bytes | None:
        """Read and answer the upgrade request; the bytes after it, or None when refused."""
        options = self.options
        deadline = self._hub.loop.now() + options.handshake_timeout
        buffer = b""
        while True:
            chunk = self._recv_nowait(options.read_size)
            if chunk is None:
                if self._park(_WAIT_READ, deadline) == _TIMEOUT:
                    self._reject(HandshakeError(408, "handshake timed out"))
                    return None
                if self._abort_reason is not None:
                    self._reject(HandshakeError(503, self._abort_reason[1] or "server shutting down"))
                    return None
                continue
            if not chunk:
                return None
            buffer += chunk
            try:
                parsed = parse_request(buffer, options.max_header_bytes)
            except HandshakeError as exc:
                self._reject(exc)
                return None
            if parsed is not None:
                break
        request, rest = parsed
        self.request = request
        try:
            answer = self.app.handle_request(request)
            if answer is None:
                key = validate_request(request)
                self._check_origin(request)
                self.subprotocol = self._choose_subprotocol(request)
                compression = self._negotiate_compression(request)
                # Admission comes last: the server counts an admitted connection against
                # its capacity, so nothing may refuse it after this.
                answer = self._on_open(self) if self._on_open is not None else None
        except HandshakeError as exc:
            self._reject(exc)
            return None
        except Exception:
            # A bug in a request hook: answer 500 rather than drop the connection unanswered.
            log.exception("%r: request hook failed", self)
            answer = error_response(500, "internal server error")
        if answer is not None:
            self._respond(answer)
            return None
        deflate = None
        if compression is not None:
            assert options.compression is not None
            if self._compressors is None:
                self._compressors = CompressorPool(options.compression)
            deflate = PerMessageDeflate(compression, options.compression, server=True, pool=self._compressors)
            self._broadcast_compressor = deflate.shared
            self._encode_now = not deflate.local_context_takeover
        self._protocol = WebSocketConnection(
            Role.SERVER,
            max_message_size=options.max_message_size,
            max_fragments=options.max_fragments,
            deflate=deflate,
        )
        self._write(
            build_response(
                key,
                subprotocol=self.subprotocol,
                extensions=None if compression is None else compression.header(),
            )
        )
        return rest

    @property
    def compression(self) -> DeflateParameters | None:
        """The negotiated permessage-deflate parameters, or None when not compressed."""
        protocol = self._protocol
        if protocol is None or protocol.deflate is None:
            return None
        return protocol.deflate.params

    def _negotiate_compression(self, request: Request) -> DeflateParameters | None:
        """Accept a permessage-deflate offer, if compression is on and one is acceptable."""
        options = self.options.compression
        if options is None:
            return None
        accepted, declined = server_negotiate(request.headers.get("Sec-WebSocket-Extensions"), options)
        for reason in declined:
            log.info("%r: permessage-deflate offer declined: %s", self, reason)
        return accepted

    def _check_origin(self, request: Request) -> None:
        allowed = self.options.origins
        if allowed is None:
            return
        if request.headers.get("Origin") not in allowed:
            raise HandshakeError(403, "origin not allowed")

    def _choose_subprotocol(self, request: Request) -> str | None:
        offered = header_tokens(request.headers.get("Sec-WebSocket-Protocol"))
        for candidate in self.options.subprotocols:
            if candidate.lower() in offered:
                return candidate
        return None

    def _reject(self, error: HandshakeError) -> None:
        log.info("%r: handshake refused: %s", self, error)
        try:
            self.app.handle_refused(self.address, error)
        except Exception:
            log.exception("%r: on_refused failed", self)
        self._respond(error_response(error.status, error.reason, error.headers))

    def _respond(self, response: Response) -> None:
        """Answer a plain HTTP request (an error or a page) and close the connection."""
        try:
            self._write(render_response(response))
        except _TransportGone:
            return
        self._close_transport(drain=True)


class BroadcastFrame(bytes):
    """An uncompressed server frame, encoded once to go into many mailboxes.

    For connections that compress with a shared `MessageCompressor` (permessage-deflate
    without context takeover), `compressed` makes the compressed frame once per compressor
    and keeps it, so every such member gets the same bytes too.
    """

    _opcode: int
    _payload_at: int
    _compressed: dict[MessageCompressor, bytes]

    def compressed(self, compressor: MessageCompressor) -> bytes:
        """This frame compressed by `compressor` (itself when under its threshold or when
        compression does not make it smaller)."""
        if len(self) - self._payload_at < compressor.threshold:
            return self
        frame = self._compressed.get(compressor)
        if frame is None:
            payload = compressor.compress(memoryview(self)[self._payload_at :])
            frame = self if payload is None else encode_frame(self._opcode, payload, rsv1=True)
            self._compressed[compressor] = frame
        return frame


def encode_broadcast(message: str | bytes) -> BroadcastFrame:
    """Encode a server frame once, to put the same bytes into many mailboxes (`send_frame`)."""
    if isinstance(message, str):
        opcode, payload = Opcode.TEXT, message.encode("utf-8")
    else:
        opcode, payload = Opcode.BINARY, bytes(message)
    frame = BroadcastFrame(encode_frame(opcode, payload))
    frame._opcode = opcode
    frame._payload_at = len(frame) - len(payload)
    frame._compressed = {}
    return frame
